//! Joining through seeds and refreshing them, as plain data: the join phase, the seed-refresh
//! bookkeeping, the join backoff and the choice of addresses to contact. Nothing here schedules
//! itself or reads a clock: [`Swim`](super::Swim) arms `Timer::Join` and `Timer::SeedRefresh`
//! and passes `now` and its RNG in.
//!
//! The driver owns what needs I/O: it resolves the seed names (DNS) when the core asks
//! ([`Swim::poll_seed_lookup`](super::Swim::poll_seed_lookup)) and runs the push-pull exchanges
//! the core asks for ([`PushPullRequest`]), reporting each one's [`ExchangeOutcome`].
//!
//! A join round tries every resolved address in turn until one answers; a failed round backs off
//! (200 ms doubling to 5 s, jittered) and the next starts, until this node is in a cluster. Once
//! it is, every `seed_refresh_interval` the seeds are resolved again and the few addresses that
//! belong to no live member get a push-pull: two clusters that formed apart (two pods whose DNS
//! answer at start held only themselves), or the halves of a healed partition, find each other.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

/// First wait between join rounds when no seed answered.
pub const JOIN_BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest wait between join rounds; a joiner keeps trying at this pace forever.
pub const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Most addresses contacted per seed refresh. Each is one push-pull (bounded by the seed
/// attempt timeout), so a DNS name listing many stale addresses costs at most this many per
/// interval; the rest get their turn in later refreshes (see [`choose`]'s `cursor`).
pub const MAX_CONTACTS_PER_REFRESH: usize = 3;

/// Why the core asks for a push-pull exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The periodic full-state exchange with one member.
    AntiEntropy,
    /// A join attempt with one resolved seed address.
    Join,
    /// A seed refresh contacting an address no live member has.
    SeedRefresh,
}

/// A push-pull exchange the driver must run: send our `push_pull_payload` to `peer`, then
/// report how it ended with [`Swim::handle_push_pull_reply`](super::Swim::handle_push_pull_reply),
/// exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushPullRequest {
    /// Tells this exchange from every other one the core asked for.
    pub id: u64,
    /// Whom to exchange with.
    pub peer: SocketAddr,
    /// What the exchange is for.
    pub purpose: Purpose,
}

/// How a push-pull exchange the core asked for ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeOutcome<'a> {
    /// The peer answered with its `PushPull` message.
    Answered(&'a [u8]),
    /// No answer in time (nobody there, a lost connection, a timeout, a rejected request).
    Unanswered,
    /// The peer answered but refused to authenticate us (no common key, another cluster
    /// label), or we refused it.
    Refused,
}

/// Something about joining worth one log line, drained with
/// [`Swim::poll_notice`](super::Swim::poll_notice). Membership changes themselves come as
/// events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A seed answered a join attempt and its table was merged.
    Joined {
        /// The seed address that answered.
        seed: SocketAddr,
    },
    /// A peer's push-pull reached this node before any seed answered: it is in a cluster.
    JoinedByPeer,
    /// No resolved seed address answered in this round; the next starts after `retry_in`.
    JoinRoundFailed {
        /// Every address tried, in order (empty when no seed resolved).
        tried: Vec<SocketAddr>,
        /// The backoff before the next round.
        retry_in: Duration,
    },
    /// Seeds answered but refused our keys (or we theirs): likely a key or label mismatch.
    /// Given once per run.
    SeedsRefusedOurKeys {
        /// The addresses that refused in the round that first saw a refusal.
        refused: Vec<SocketAddr>,
    },
    /// The seeds resolve only to this node: it starts as a cluster of one.
    OnlySelf,
    /// A seed answered with a message that does not decode or breaks a limit.
    SeedAnswerUnusable {
        /// The seed address.
        seed: SocketAddr,
    },
    /// A seed refresh merged the table of an address no live member had.
    RefreshMerged {
        /// The address contacted.
        peer: SocketAddr,
        /// Membership changes the merge made here.
        changed: usize,
    },
}

/// Where joining stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum JoinPhase {
    /// Not joining: no seeds, already in a cluster, or leaving.
    #[default]
    Off,
    /// Waiting for `Timer::Join` to start the next round.
    Waiting,
    /// The seeds are being resolved for a round.
    Resolving,
    /// Trying the resolved addresses in turn; `Timer::Join` gives up on the current one.
    Trying(Round),
}

/// One join round in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    /// The resolved seed addresses, this node's own left out.
    pub addrs: Vec<SocketAddr>,
    /// Index in `addrs` of the address being tried.
    pub next: usize,
    /// The exchange id of the current attempt: a late answer to an earlier one does not
    /// advance the round.
    pub attempt: u64,
    /// Addresses that refused our keys so far.
    pub refused: Vec<SocketAddr>,
}

/// Seed lookups: at most one runs at a time, for the join or for a refresh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lookup {
    /// None asked for.
    #[default]
    Idle,
    /// Asked for; not yet taken by the driver.
    Wanted,
    /// The driver is resolving.
    Running,
}

/// An exchange a seed refresh is waiting on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Its exchange id.
    pub id: u64,
    /// The address contacted.
    pub peer: SocketAddr,
    /// After this, the address may be contacted again even if no outcome was reported.
    pub expires: Instant,
}

/// Seeding state of one node; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Seeding {
    /// Seeds were given: join through them and refresh them once joined.
    pub has_seeds: bool,
    /// The join phase.
    pub join: JoinPhase,
    /// The join backoff (reset never: a node joins once).
    pub backoff: Backoff,
    /// The seed lookup.
    pub lookup: Lookup,
    /// Refreshes started so far: the rotation cursor for [`choose`].
    pub refreshes: usize,
    /// Refresh exchanges still running, not contacted again until they end.
    pub contacting: Vec<Contact>,
    /// [`Notice::SeedsRefusedOurKeys`] was given.
    pub refusal_noticed: bool,
    /// Id of the next exchange the core asks for.
    pub next_exchange_id: u64,
}

impl Seeding {
    /// A fresh exchange id.
    pub fn exchange_id(&mut self) -> u64 {
        self.next_exchange_id = self.next_exchange_id.wrapping_add(1);
        self.next_exchange_id
    }

    /// Drops the contacts past their expiry and returns whether `addr` is still being contacted.
    pub fn is_contacting(&mut self, now: Instant, addr: SocketAddr) -> bool {
        self.contacting.retain(|c| c.expires > now);
        self.contacting.iter().any(|c| c.peer == addr)
    }

    /// The refresh exchange `id` ended; true if it was one.
    pub fn contact_ended(&mut self, id: u64) -> bool {
        let before = self.contacting.len();
        self.contacting.retain(|c| c.id != id);
        self.contacting.len() != before
    }
}

/// Doubling backoff between join rounds, capped at [`JOIN_BACKOFF_MAX`], each wait drawn from
/// the upper half of its step. The jitter matters when many nodes start at once: a seed serves
/// a bounded number of exchanges at a time and refuses the rest, and refused joiners that all
/// retried after the same delay would arrive together again, round after round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            step: JOIN_BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The wait before the next round, in `[step / 2, step]`; each call doubles the step up
    /// to the cap.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(JOIN_BACKOFF_MAX);
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

/// Resolved seed addresses without `own` and without duplicates, in order.
pub fn others(resolved: &[SocketAddr], own: SocketAddr) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        if *addr != own && !out.contains(addr) {
            out.push(*addr);
        }
    }
    out
}

/// Picks which resolved seed addresses a refresh contacts: the `candidates` (already without
/// this node's own address, duplicates and addresses of live members) capped at `limit`. When
/// there are more, the window starts at `cursor × limit` (wrapping), so successive refreshes
/// (cursor 0, 1, 2, …) rotate through all of them instead of trying the same first few forever.
pub fn choose(candidates: &[SocketAddr], limit: usize, cursor: usize) -> Vec<SocketAddr> {
    if candidates.len() <= limit {
        return candidates.to_vec();
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 39527))
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let steps = [200, 400, 800, 1600, 3200, 5000, 5000].map(Duration::from_millis);
        let mut seen = Vec::new();
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut backoff = Backoff::default();
            let delays: Vec<Duration> =
                steps.iter().map(|_| backoff.next_delay(&mut rng)).collect();
            for (delay, step) in delays.iter().zip(steps) {
                assert!(
                    *delay >= step / 2 && *delay <= step,
                    "{delay:?} outside [{:?}, {step:?}]",
                    step / 2
                );
            }
            seen.push(delays[0]);
        }
        // Joiners refused together do not all come back together.
        seen.sort();
        seen.dedup();
        assert!(seen.len() > 10, "first delays {seen:?}");
    }

    #[test]
    fn others_drops_own_address_and_duplicates_in_order() {
        let resolved = [addr(2), addr(1), addr(3), addr(2), addr(1)];
        assert_eq!(others(&resolved, addr(1)), [addr(2), addr(3)]);
        assert!(others(&[addr(1)], addr(1)).is_empty());
    }

    #[test]
    fn many_candidates_are_capped_and_rotate() {
        let candidates: Vec<SocketAddr> = (2..=8).map(addr).collect(); // 7 candidates
        let windows: Vec<Vec<SocketAddr>> = (0..4)
            .map(|cursor| choose(&candidates, 3, cursor))
            .collect();
        assert_eq!(windows[0], [addr(2), addr(3), addr(4)]);
        assert_eq!(windows[1], [addr(5), addr(6), addr(7)]);
        assert_eq!(windows[2], [addr(8), addr(2), addr(3)]);
        assert_eq!(windows[3], [addr(4), addr(5), addr(6)]);
        // Every candidate gets a turn within ceil(7 / 3) refreshes.
        for a in &candidates {
            assert!(
                windows[..3].iter().any(|w| w.contains(a)),
                "{a} never tried"
            );
        }
        assert_eq!(choose(&candidates, 3, usize::MAX).len(), 3);
        assert!(choose(&candidates, 0, 5).is_empty());
        assert_eq!(choose(&candidates[..2], 3, 7), candidates[..2]);
    }

    #[test]
    fn contacts_expire_and_end_by_id() {
        let t0 = Instant::now();
        let mut seeding = Seeding::default();
        let id = seeding.exchange_id();
        seeding.contacting.push(Contact {
            id,
            peer: addr(2),
            expires: t0 + Duration::from_secs(2),
        });
        assert!(seeding.is_contacting(t0, addr(2)));
        assert!(!seeding.is_contacting(t0, addr(3)));
        assert!(!seeding.is_contacting(t0 + Duration::from_secs(2), addr(2)));
        assert!(
            seeding.contacting.is_empty(),
            "expired contacts are dropped"
        );
        seeding.contacting.push(Contact {
            id,
            peer: addr(2),
            expires: t0 + Duration::from_secs(2),
        });
        assert!(!seeding.contact_ended(id + 1));
        assert!(seeding.contact_ended(id));
        assert!(!seeding.is_contacting(t0, addr(2)));
    }
}
