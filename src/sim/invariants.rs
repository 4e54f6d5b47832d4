//! Cheap invariants checked on every membership event of a run.

use std::collections::HashMap;
use std::time::Duration;

use crate::swim::{Event, MemberState};

/// Watches events and panics (failing the test) when one breaks an invariant:
/// a running node never believes itself DOWN, and no node sees a member's incarnation decrease.
#[derive(Debug, Default)]
pub(super) struct Invariants {
    check_incarnations: bool,
    /// Last incarnation each node saw for each member (only while checking incarnations).
    incarnations: HashMap<(usize, String), u64>,
}

impl Invariants {
    pub(super) fn new() -> Self {
        Invariants {
            check_incarnations: true,
            incarnations: HashMap::new(),
        }
    }

    /// The incarnation check costs memory O(N²); large runs turn it off.
    pub(super) fn set_check_incarnations(&mut self, on: bool) {
        self.check_incarnations = on;
        self.incarnations.clear();
    }

    /// A restarted process starts with no memory: forget what its previous life saw.
    pub(super) fn forget_node(&mut self, node: usize) {
        self.incarnations.retain(|(n, _), _| *n != node);
    }

    /// Checks one event observed by `node` at virtual time `now`.
    pub(super) fn observe(&mut self, now: Duration, node: usize, event: &Event) {
        match event {
            Event::Changed { member, .. } => {
                assert!(
                    !(member.is_local && member.state == MemberState::Down),
                    "t={now:?}: running node {} believes itself DOWN",
                    member.name
                );
                if self.check_incarnations {
                    let key = (node, member.name.clone());
                    let last = self
                        .incarnations
                        .insert(key, member.incarnation)
                        .unwrap_or(0);
                    assert!(
                        member.incarnation >= last,
                        "t={now:?}: node #{node} saw {}'s incarnation drop {last} → {}",
                        member.name,
                        member.incarnation
                    );
                }
            }
            Event::Reaped { name } => {
                self.incarnations.remove(&(node, name.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::{ChangeReason, MemberView, NodeMeta};
    use std::time::Instant;

    fn changed(name: &str, state: MemberState, incarnation: u64, is_local: bool) -> Event {
        Event::Changed {
            member: MemberView {
                name: name.into(),
                addr: "10.0.0.1:1".parse().unwrap(),
                state,
                incarnation,
                meta: NodeMeta::default(),
                since: Instant::now(),
                is_local,
            },
            previous: None,
            reason: ChangeReason::PushPull,
        }
    }

    #[test]
    fn accepts_rising_incarnations_and_reaps() {
        let mut inv = Invariants::new();
        inv.observe(
            Duration::ZERO,
            0,
            &changed("b", MemberState::Alive, 2, false),
        );
        inv.observe(
            Duration::ZERO,
            0,
            &changed("b", MemberState::Down, 2, false),
        );
        inv.observe(Duration::ZERO, 0, &Event::Reaped { name: "b".into() });
        // After a reap the member may come back at any incarnation.
        inv.observe(
            Duration::ZERO,
            0,
            &changed("b", MemberState::Alive, 1, false),
        );
    }

    #[test]
    #[should_panic(expected = "incarnation drop")]
    fn catches_incarnation_drop() {
        let mut inv = Invariants::new();
        inv.observe(
            Duration::ZERO,
            0,
            &changed("b", MemberState::Alive, 2, false),
        );
        inv.observe(
            Duration::ZERO,
            0,
            &changed("b", MemberState::Alive, 1, false),
        );
    }

    #[test]
    #[should_panic(expected = "believes itself DOWN")]
    fn catches_self_down() {
        let mut inv = Invariants::new();
        inv.observe(Duration::ZERO, 0, &changed("a", MemberState::Down, 1, true));
    }
}
