//! When this node last heard from each member: directly (a datagram from the member's
//! address) or by gossip (the member's vitals in the replicated store `nodes`, aged by how long
//! ago the member wrote them). Published to the API as a map copied at most once a second, so
//! `last_heartbeat_ms` costs nothing per datagram beyond one lookup.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::swim::MemberView;

/// How often the published copy is refreshed: `last_heartbeat_ms` is late by up to this.
pub const COPY_EVERY: Duration = Duration::from_secs(1);

/// The tracker the driver feeds.
#[derive(Debug, Default)]
pub struct Heartbeats {
    /// Member names by their address, rebuilt when membership changes.
    by_addr: HashMap<SocketAddr, Arc<str>>,
    /// The same names, to look up by name.
    names: HashSet<Arc<str>>,
    heard: HashMap<Arc<str>, Instant>,
    published: Arc<HashMap<String, Instant>>,
    copied_at: Option<Instant>,
}

impl Heartbeats {
    /// Follows a new member list: learns addresses, forgets members no longer listed.
    pub fn members_changed(&mut self, members: &[MemberView]) {
        self.by_addr = members
            .iter()
            .filter(|m| !m.is_local)
            .map(|m| (m.addr, Arc::from(m.name.as_str())))
            .collect();
        self.names = self.by_addr.values().cloned().collect();
        let names = &self.names;
        self.heard.retain(|name, _| names.contains(name));
    }

    /// A datagram came from `from` at `now`.
    pub fn datagram_from(&mut self, from: SocketAddr, now: Instant) {
        if let Some(name) = self.by_addr.get(&from) {
            self.note(name.clone(), now);
        }
    }

    /// Vitals that `name` wrote at wall-clock `written_ms` arrived at `now` (wall `wall_now_ms`):
    /// heard from it then, or later if they travelled a while (clocks skewed ahead count as
    /// now).
    pub fn vitals_from(&mut self, name: &str, written_ms: u64, wall_now_ms: u64, now: Instant) {
        let Some(name) = self.names.get(name).cloned() else {
            return;
        };
        let travelled = Duration::from_millis(wall_now_ms.saturating_sub(written_ms));
        self.note(name, now.checked_sub(travelled).unwrap_or(now));
    }

    fn note(&mut self, name: Arc<str>, at: Instant) {
        let entry = self.heard.entry(name).or_insert(at);
        *entry = (*entry).max(at);
    }

    /// The published map, recopied when older than [`COPY_EVERY`].
    pub fn view(&mut self, now: Instant) -> Arc<HashMap<String, Instant>> {
        let stale = self
            .copied_at
            .is_none_or(|at| now.saturating_duration_since(at) >= COPY_EVERY);
        if stale {
            let copy = self.heard.iter().map(|(n, at)| (n.to_string(), *at));
            self.published = Arc::new(copy.collect());
            self.copied_at = Some(now);
        }
        self.published.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::{MemberState, NodeMeta};

    fn member(name: &str, port: u16, local: bool) -> MemberView {
        MemberView {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            state: MemberState::Alive,
            incarnation: 1,
            meta: NodeMeta::default(),
            since: Instant::now(),
            is_local: local,
        }
    }

    #[test]
    fn datagrams_and_vitals_count_as_heard_and_forgotten_members_drop_out() {
        let t0 = Instant::now();
        let mut beats = Heartbeats::default();
        beats.members_changed(&[
            member("me", 1, true),
            member("a", 2, false),
            member("b", 3, false),
        ]);
        beats.datagram_from(SocketAddr::from(([127, 0, 0, 1], 2)), t0);
        beats.datagram_from(SocketAddr::from(([127, 0, 0, 1], 9)), t0);
        // b's vitals were written 300 ms before they arrived 1 s after t0.
        let arrived = t0 + Duration::from_secs(1);
        beats.vitals_from("b", 10_000, 10_300, arrived);
        beats.vitals_from("stranger", 10_000, 10_000, arrived);
        let view = beats.view(arrived);
        assert_eq!(view.get("a"), Some(&t0));
        assert_eq!(view.get("b"), Some(&(arrived - Duration::from_millis(300))));
        assert_eq!(view.len(), 2, "{view:?}");
        // An older sighting never moves the time back; the copy waits a second.
        beats.datagram_from(
            SocketAddr::from(([127, 0, 0, 1], 2)),
            t0 + Duration::from_secs(2),
        );
        beats.vitals_from("a", 0, 10_000, t0 + Duration::from_secs(2));
        assert_eq!(
            beats.view(arrived).get("a"),
            Some(&t0),
            "copied at most once a second"
        );
        let later = beats.view(t0 + Duration::from_secs(2));
        assert_eq!(later.get("a"), Some(&(t0 + Duration::from_secs(2))));
        beats.members_changed(&[member("me", 1, true), member("b", 3, false)]);
        assert!(!beats.view(t0 + Duration::from_secs(4)).contains_key("a"));
    }
}
