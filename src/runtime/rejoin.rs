//! Periodic seed re-resolution: once this node is in a cluster, every `--seed-refresh-interval`
//! it resolves its seeds again and runs a push-pull with the few resolved addresses that belong
//! to no member it lists as ALIVE or SUSPECTED.
//!
//! Join rounds stop once a node is in a cluster, so without this two clusters that each formed
//! alone (two StatefulSet pods whose DNS answer at start held only themselves) would never meet,
//! and a cluster whose members all came back at new IPs would not find them again unless gossip
//! happened to reach them. The addresses to contact are chosen by the pure [`choose`]; the driver
//! keeps a [`SeedRefresh`] for the timer and runs the DNS lookup and exchanges as tasks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::swim::{MemberState, MemberView};

/// Most addresses contacted per refresh. Each is one QUIC push-pull (bounded by the join attempt
/// timeout), so a DNS name listing many stale addresses costs at most this many per interval;
/// the rest get their turn in later refreshes (see [`choose`]'s `cursor`).
pub const MAX_CONTACTS_PER_REFRESH: usize = 3;

/// Default `--seed-refresh-interval`: as often as the base push-pull interval, so a split heals
/// about as fast as anti-entropy repairs a missed update, at a cost of one DNS lookup.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Picks which resolved seed addresses to contact: those that are not `own` and not the address
/// of a member listed ALIVE or SUSPECTED (those we already talk to), without duplicates, at most
/// `limit` of them. DOWN and LEAVING members' addresses stay candidates: something answering
/// there has come back, or is a new node that took the address.
///
/// When there are more candidates than `limit`, the window starts at `cursor × limit` (wrapping),
/// so successive refreshes (cursor 0, 1, 2, …) rotate through all of them instead of trying the
/// same first few forever.
pub fn choose(
    resolved: &[SocketAddr],
    own: SocketAddr,
    members: &[MemberView],
    limit: usize,
    cursor: usize,
) -> Vec<SocketAddr> {
    let mut candidates: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        let known_live = members.iter().any(|m| {
            m.addr == *addr && matches!(m.state, MemberState::Alive | MemberState::Suspected)
        });
        if *addr != own && !known_live && !candidates.contains(addr) {
            candidates.push(*addr);
        }
    }
    if candidates.len() <= limit {
        return candidates;
    }
    let start = cursor.wrapping_mul(limit) % candidates.len();
    candidates
        .iter()
        .cycle()
        .skip(start)
        .take(limit)
        .copied()
        .collect()
}

/// The refresh timer as the driver sees it. Plain data: it does not schedule itself; `now` is
/// passed in.
#[derive(Debug)]
pub struct SeedRefresh {
    /// Zero disables refreshing.
    interval: Duration,
    /// The next refresh, while armed.
    next_at: Option<Instant>,
    /// A DNS lookup is running; no second one starts meanwhile.
    resolving: bool,
    /// Refreshes started so far: the rotation cursor for [`choose`].
    rounds: usize,
    /// Addresses with an exchange still running, not contacted again until it ends (matters
    /// when the interval is shorter than an exchange's timeout).
    contacting: Vec<SocketAddr>,
}

impl SeedRefresh {
    /// A disarmed timer refreshing every `interval` (zero: never).
    pub fn new(interval: Duration) -> Self {
        SeedRefresh {
            interval,
            next_at: None,
            resolving: false,
            rounds: 0,
            contacting: Vec::new(),
        }
    }

    /// When the driver must wake for the next refresh, if one is armed.
    pub fn wake_at(&self) -> Option<Instant> {
        self.next_at
    }

    /// Called on every timer wake. `active` says whether refreshing applies now (seeds given,
    /// this node in a cluster, not leaving). Arms the timer one interval ahead when it becomes
    /// active, disarms it when not, and returns true when a refresh is due: the caller then
    /// starts the DNS lookup and reports back with [`SeedRefresh::resolved`].
    pub fn poll(&mut self, now: Instant, active: bool) -> bool {
        if !active || self.interval.is_zero() {
            self.next_at = None;
            return false;
        }
        match self.next_at {
            None => {
                self.next_at = Some(now + self.interval);
                false
            }
            Some(at) if at <= now && !self.resolving => {
                self.next_at = Some(now + self.interval);
                self.resolving = true;
                true
            }
            Some(_) => false,
        }
    }

    /// The lookup finished: returns the rotation cursor for [`choose`] and counts the round.
    pub fn resolved(&mut self) -> usize {
        self.resolving = false;
        let cursor = self.rounds;
        self.rounds = self.rounds.wrapping_add(1);
        cursor
    }

    /// Drops from `resolved` the addresses whose exchange is still running.
    pub fn not_in_flight(&self, resolved: &[SocketAddr]) -> Vec<SocketAddr> {
        resolved
            .iter()
            .filter(|a| !self.contacting.contains(a))
            .copied()
            .collect()
    }

    /// An exchange with `addr` starts.
    pub fn contact_started(&mut self, addr: SocketAddr) {
        self.contacting.push(addr);
    }

    /// The exchange with `addr` ended (answered or not).
    pub fn contact_ended(&mut self, addr: SocketAddr) {
        self.contacting.retain(|a| *a != addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::NodeMeta;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 39527))
    }

    fn member(last: u8, state: MemberState) -> MemberView {
        MemberView {
            name: format!("n{last}"),
            addr: addr(last),
            state,
            incarnation: 1,
            meta: NodeMeta::default(),
            since: Instant::now(),
            is_local: false,
        }
    }

    #[test]
    fn skips_own_and_live_members_keeps_dead_and_unknown() {
        let own = addr(1);
        let members = [
            member(1, MemberState::Alive),
            member(2, MemberState::Alive),
            member(3, MemberState::Suspected),
            member(4, MemberState::Down),
            member(5, MemberState::Leaving),
        ];
        let resolved: Vec<SocketAddr> = (1..=7).map(addr).collect();
        assert_eq!(
            choose(&resolved, own, &members, 10, 0),
            [addr(4), addr(5), addr(6), addr(7)]
        );
    }

    #[test]
    fn steady_state_contacts_nobody() {
        let members = [member(1, MemberState::Alive), member(2, MemberState::Alive)];
        assert!(choose(&[addr(1), addr(2)], addr(1), &members, 3, 0).is_empty());
        assert!(choose(&[], addr(1), &members, 3, 0).is_empty());
        // Only ourselves resolves: nothing to do either.
        assert!(choose(&[addr(1)], addr(1), &[], 3, 0).is_empty());
    }

    #[test]
    fn split_cluster_contacts_the_other_half() {
        // We formed alone (two pods that each saw only themselves); DNS now lists both.
        let members = [member(1, MemberState::Alive)];
        assert_eq!(
            choose(&[addr(2), addr(1)], addr(1), &members, 3, 0),
            [addr(2)]
        );
    }

    #[test]
    fn restarted_members_at_new_ips_are_candidates() {
        // n2 and n3 restarted at .12 and .13; we still list them DOWN at .2 and .3.
        let members = [
            member(1, MemberState::Alive),
            member(2, MemberState::Down),
            member(3, MemberState::Down),
        ];
        let resolved = [addr(1), addr(12), addr(13)];
        assert_eq!(
            choose(&resolved, addr(1), &members, 3, 0),
            [addr(12), addr(13)]
        );
    }

    #[test]
    fn duplicates_are_contacted_once() {
        let resolved = [addr(2), addr(2), addr(3), addr(2)];
        assert_eq!(choose(&resolved, addr(1), &[], 3, 0), [addr(2), addr(3)]);
    }

    #[test]
    fn many_candidates_are_capped_and_rotate() {
        let resolved: Vec<SocketAddr> = (2..=8).map(addr).collect(); // 7 candidates
        let windows: Vec<Vec<SocketAddr>> = (0..4)
            .map(|cursor| choose(&resolved, addr(1), &[], 3, cursor))
            .collect();
        assert_eq!(windows[0], [addr(2), addr(3), addr(4)]);
        assert_eq!(windows[1], [addr(5), addr(6), addr(7)]);
        assert_eq!(windows[2], [addr(8), addr(2), addr(3)]);
        assert_eq!(windows[3], [addr(4), addr(5), addr(6)]);
        // Every candidate gets a turn within ceil(7 / 3) refreshes.
        for a in &resolved {
            assert!(
                windows[..3].iter().any(|w| w.contains(a)),
                "{a} never tried"
            );
        }
        assert!(choose(&resolved, addr(1), &[], 3, usize::MAX).len() == 3);
        assert!(choose(&resolved, addr(1), &[], 0, 5).is_empty());
    }

    #[test]
    fn timer_arms_when_active_fires_each_interval_and_disarms() {
        let t0 = Instant::now();
        let every = Duration::from_secs(30);
        let mut refresh = SeedRefresh::new(every);
        assert!(!refresh.poll(t0, false), "inactive: never due");
        assert_eq!(refresh.wake_at(), None);
        assert!(!refresh.poll(t0, true), "first poll only arms");
        assert_eq!(refresh.wake_at(), Some(t0 + every));
        assert!(!refresh.poll(t0 + every / 2, true));
        assert!(refresh.poll(t0 + every, true), "due after one interval");
        assert_eq!(refresh.wake_at(), Some(t0 + every * 2));
        // While the lookup runs, a second refresh does not start.
        assert!(!refresh.poll(t0 + every * 2, true));
        assert_eq!(refresh.resolved(), 0);
        assert!(refresh.poll(t0 + every * 2, true));
        assert_eq!(refresh.resolved(), 1, "cursor advances per refresh");
        // An address being contacted is left out until its exchange ends.
        let (a, b) = (addr(2), addr(3));
        refresh.contact_started(a);
        assert_eq!(refresh.not_in_flight(&[a, b]), [b]);
        refresh.contact_ended(a);
        assert_eq!(refresh.not_in_flight(&[a, b]), [a, b]);
        // Leaving (inactive) disarms.
        assert!(!refresh.poll(t0 + every * 3, false));
        assert_eq!(refresh.wake_at(), None);
    }

    #[test]
    fn zero_interval_disables() {
        let mut refresh = SeedRefresh::new(Duration::ZERO);
        let t0 = Instant::now();
        assert!(!refresh.poll(t0, true));
        assert!(!refresh.poll(t0 + Duration::from_secs(3600), true));
        assert_eq!(refresh.wake_at(), None);
    }
}
