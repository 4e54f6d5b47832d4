//! Leader and owner views: the two coordination answers gateways ask a membership layer for,
//! as pure functions of one member list, so every node holding the same view gives the same
//! answer without talking to anyone.
//!
//! - The leader is the ALIVE member with the lowest `(priority, name)`; the priority is the tag
//!   [`PRIORITY_TAG`] (set by `--leader-priority`, 0 when absent). It is a view for
//!   active-passive failover, not a lock: for as long as views differ (a crash not yet detected
//!   everywhere, a partition) two nodes may name different leaders. [`LeaderView::has_quorum`]
//!   says whether this node sees more than half of the cluster ALIVE, so at most one side of a
//!   partition can claim it once the sides have noticed each other's absence.
//! - The owner of a key is the ALIVE member with the highest rendezvous weight
//!   `hash(key, name)` (highest-random-weight hashing): when a member goes DOWN only the keys
//!   it owned move, each to one survivor, and no lock service is needed to pick it.

use crate::store::hash::hash;
use crate::swim::{MemberState, MemberView, NodeMeta};

/// The tag carrying a member's leader priority (lower leads first).
pub const PRIORITY_TAG: &str = "leader-priority";

/// Priority of a member whose [`PRIORITY_TAG`] is not an integer: it leads only when no member
/// with a valid priority is ALIVE.
pub const UNPARSABLE_PRIORITY: i64 = i64::MAX;

/// Who leads in one node's view, and whether that node sees a quorum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderView {
    /// The leader's name; `None` when no member is ALIVE (e.g. before this node joined).
    pub leader: Option<String>,
    /// True when `alive * 2 > expected`.
    pub has_quorum: bool,
    /// Members ALIVE in this view, this node included.
    pub alive: usize,
    /// The cluster size the quorum is counted against: `--expect-nodes`, or else the members
    /// ALIVE, SUSPECTED or DOWN and not yet reaped (LEAVING ones left on purpose).
    pub expected: usize,
}

/// A member's leader priority: its [`PRIORITY_TAG`] as an integer, 0 when absent.
pub fn priority(meta: &NodeMeta) -> i64 {
    match meta.tags.get(PRIORITY_TAG) {
        None => 0,
        Some(text) => text.trim().parse().unwrap_or(UNPARSABLE_PRIORITY),
    }
}

/// The leader view of `members`; `expect_nodes` overrides the size the quorum counts against.
pub fn leader<'a>(
    members: impl IntoIterator<Item = &'a MemberView>,
    expect_nodes: Option<usize>,
) -> LeaderView {
    let mut alive = 0;
    let mut known = 0;
    let mut best: Option<(i64, &str)> = None;
    for member in members {
        match member.state {
            MemberState::Alive => {
                alive += 1;
                known += 1;
                let candidate = (priority(&member.meta), member.name.as_str());
                if best.is_none_or(|b| candidate < b) {
                    best = Some(candidate);
                }
            }
            MemberState::Suspected | MemberState::Down => known += 1,
            MemberState::Init | MemberState::Leaving => {}
        }
    }
    let expected = expect_nodes.unwrap_or(known);
    LeaderView {
        leader: best.map(|(_, name)| name.to_string()),
        has_quorum: alive * 2 > expected,
        alive,
        expected,
    }
}

/// The rendezvous weight of `name` for `key`: stable across builds and platforms.
pub fn weight(key: &str, name: &str) -> u64 {
    hash(&[key.as_bytes(), name.as_bytes()])
}

/// The ALIVE member that owns `key`: the highest [`weight`], ties to the lower name; `None`
/// when no member is ALIVE.
pub fn owner<'a>(key: &str, members: impl IntoIterator<Item = &'a MemberView>) -> Option<&'a str> {
    members
        .into_iter()
        .filter(|m| m.state == MemberState::Alive)
        .map(|m| (weight(key, &m.name), std::cmp::Reverse(m.name.as_str())))
        .max()
        .map(|(_, std::cmp::Reverse(name))| name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::*;

    fn member(name: &str, state: MemberState, priority: Option<&str>) -> MemberView {
        let mut tags = BTreeMap::new();
        if let Some(p) = priority {
            tags.insert(PRIORITY_TAG.to_string(), p.to_string());
        }
        MemberView {
            name: name.into(),
            addr: "127.0.0.1:1".parse().expect("literal address"),
            state,
            incarnation: 1,
            meta: NodeMeta {
                tags,
                ..NodeMeta::default()
            },
            since: Instant::now(),
            is_local: false,
        }
    }

    use MemberState::{Alive, Down, Init, Leaving, Suspected};

    /// A member list as (name, state, priority tag) and the leader it must give.
    type LeaderCase<'a> = (
        &'a [(&'a str, MemberState, Option<&'a str>)],
        Option<&'a str>,
    );

    #[test]
    fn leader_is_the_alive_member_with_the_lowest_priority_then_name() {
        let cases: &[LeaderCase] = &[
            (&[("b", Alive, None), ("a", Alive, None)], Some("a")),
            (&[("a", Suspected, None), ("b", Alive, None)], Some("b")),
            (&[("a", Down, None), ("b", Leaving, None)], None),
            (
                &[("a", Alive, Some("5")), ("z", Alive, Some("-1"))],
                Some("z"),
            ),
            (&[("a", Alive, Some("1")), ("b", Alive, None)], Some("b")),
            (
                &[("a", Alive, Some("high")), ("b", Alive, Some("9"))],
                Some("b"),
            ),
            (&[("a", Alive, Some("high"))], Some("a")),
            (&[("a", Init, None)], None),
        ];
        for (members, want) in cases {
            let members: Vec<_> = members.iter().map(|(n, s, p)| member(n, *s, *p)).collect();
            assert_eq!(
                leader(&members, None).leader.as_deref(),
                *want,
                "{members:?}"
            );
        }
    }

    #[test]
    fn quorum_needs_more_than_half_of_the_expected_members_alive() {
        // (alive, suspected, down, leaving, expect_nodes) → (expected, has_quorum)
        let cases = [
            (1, 0, 0, 0, None, 1, true),
            (2, 1, 1, 0, None, 4, false),
            (3, 1, 1, 0, None, 5, true),
            (2, 0, 0, 5, None, 2, true),
            (3, 0, 0, 0, Some(5), 5, true),
            (2, 0, 0, 0, Some(5), 5, false),
            (0, 0, 0, 0, None, 0, false),
        ];
        for (alive, suspected, down, leaving, expect, expected, quorum) in cases {
            let mut members = Vec::new();
            for (count, state) in [
                (alive, Alive),
                (suspected, Suspected),
                (down, Down),
                (leaving, Leaving),
            ] {
                for i in 0..count {
                    members.push(member(&format!("{state:?}{i}"), state, None));
                }
            }
            let view = leader(&members, expect);
            assert_eq!((view.alive, view.expected), (alive, expected));
            assert_eq!(view.has_quorum, quorum, "{alive} alive of {expected}");
        }
    }

    #[test]
    fn owner_skips_members_that_are_not_alive() {
        let members = [member("a", Alive, None), member("b", Down, None)];
        for key in ["k1", "k2", "k3", "k4"] {
            assert_eq!(owner(key, &members), Some("a"));
        }
        assert_eq!(owner("k", &[member("a", Suspected, None)]), None);
    }

    #[test]
    fn only_the_dead_members_keys_move_and_they_spread_over_the_survivors() {
        let names: Vec<String> = (0..20).map(|i| format!("node-{i}")).collect();
        let mut members: Vec<_> = names.iter().map(|n| member(n, Alive, None)).collect();
        let keys: Vec<String> = (0..4000).map(|i| format!("job-{i}")).collect();
        let before: Vec<String> = keys
            .iter()
            .map(|k| owner(k, &members).expect("alive members").to_string())
            .collect();
        members[7].state = Down;
        let mut receivers = BTreeMap::new();
        for (key, was) in keys.iter().zip(&before) {
            let now = owner(key, &members).expect("alive members");
            if was == "node-7" {
                *receivers.entry(now.to_string()).or_insert(0) += 1;
            } else {
                assert_eq!(now, was, "{key} moved though its owner lives");
            }
        }
        let moved: usize = receivers.values().sum();
        // ~200 keys (1/20), and no survivor takes more than a fair share several times over.
        assert!((120..=280).contains(&moved), "{moved} keys moved");
        assert!(receivers.len() >= 15, "moved keys went to {receivers:?}");
        assert!(receivers.values().all(|&n| n <= 40), "{receivers:?}");
    }

    #[test]
    fn the_weight_is_stable_across_builds() {
        // A changed hash would move every key in a rolling update: pinned here (values from an
        // independent implementation of FNV-1a over length-prefixed parts + SplitMix64).
        assert_eq!(weight("job-1", "node-a"), 0xe136_303d_e9b8_05c7);
        assert_eq!(weight("job-1", "node-b"), 0xd639_0ff5_5920_d4cd);
        assert_ne!(weight("ab", "c"), weight("a", "bc"));
    }
}
