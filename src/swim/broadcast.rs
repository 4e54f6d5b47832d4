//! Dissemination queue: at most one pending update per member, sent least-transmitted first
//! (newest first among equals), each up to a retransmit limit, packed into a byte budget.
//!
//! Updates wait encoded: after a partition every node queues one update per member on the
//! other side, and a 10,000-node simulation holds 10^8 of them at once, so an entry is its
//! wire bytes and one shared name rather than a decoded message with five strings.
//!
//! The queue is bounded ([`MAX_PENDING_UPDATES`]): when updates arrive faster than gossip can
//! send them (a 10,000-node cluster at 10 % loss raises false suspicions and refutations faster
//! than ~20 a second), the most-sent, oldest ones give way, as memberlist's queue prune does.
//! They have already gone out the most; the full-state exchange repairs whatever they missed.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use prost::Message;

use super::codec::update_field_len;
use crate::wire;

/// Stop scanning for a smaller update once this many did not fit (keeps a fill O(budget)).
const MAX_SKIPPED: usize = 32;

/// Most updates waiting at once (Serf's default queue depth); past it the most-sent, oldest
/// update is dropped. ~200 bytes each, so at most ~0.8 MB per node.
pub const MAX_PENDING_UPDATES: usize = 4096;

#[derive(Clone, Debug)]
struct Entry {
    /// The update as it goes on the wire (a `MemberUpdate` message).
    encoded: Box<[u8]>,
    transmits: u32,
    id: u64,
}

impl Entry {
    /// Bytes the update adds to an envelope (tag and length prefix included).
    fn field_len(&self) -> usize {
        update_field_len(self.encoded.len())
    }

    fn decode(&self) -> Option<wire::MemberUpdate> {
        wire::MemberUpdate::decode(&*self.encoded).ok()
    }
}

/// Sort key: fewest transmits first, then the newest.
type Key = (u32, Reverse<u64>, Arc<str>);

/// Pending updates, keyed by member name.
#[derive(Clone, Debug, Default)]
pub struct BroadcastQueue {
    entries: HashMap<Arc<str>, Entry>,
    order: BTreeSet<Key>,
    next_id: u64,
}

impl BroadcastQueue {
    /// Queues `update` about the member `name` (the member table's own handle, shared rather
    /// than copied), replacing any pending update about the same member. Returns true when
    /// the queue was full and the most-sent, oldest other update was dropped to make room.
    pub fn push(&mut self, name: Arc<str>, update: wire::MemberUpdate) -> bool {
        debug_assert_eq!(*name, *update.name, "queued under another member's name");
        self.remove(&name);
        self.next_id += 1;
        let entry = Entry {
            encoded: update.encode_to_vec().into_boxed_slice(),
            transmits: 0,
            id: self.next_id,
        };
        let dropped = self.entries.len() >= MAX_PENDING_UPDATES && self.drop_most_sent();
        self.order.insert((0, Reverse(entry.id), name.clone()));
        self.entries.insert(name, entry);
        dropped
    }

    /// Drops the update sent the most times (the oldest among those); true if there was one.
    fn drop_most_sent(&mut self) -> bool {
        let Some((_, _, name)) = self.order.pop_last() else {
            return false;
        };
        self.entries.remove(&name);
        true
    }

    /// Drops the pending update about `name`, if any.
    pub fn remove(&mut self, name: &str) {
        if let Some((name, old)) = self.entries.remove_entry(name) {
            self.order.remove(&(old.transmits, Reverse(old.id), name));
            self.shrink();
        }
    }

    /// Pending updates.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when an update about `name` is pending.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The pending update about `name`, if any.
    pub fn get(&self, name: &str) -> Option<wire::MemberUpdate> {
        self.entries.get(name).and_then(Entry::decode)
    }

    /// Takes updates whose fields fit in `budget` bytes: the one about `first` (buddy system)
    /// if pending, then least-transmitted first. Each taken update counts one transmission and
    /// leaves the queue once sent `limit` times.
    pub fn fill(
        &mut self,
        budget: usize,
        first: Option<&str>,
        limit: u32,
    ) -> Vec<wire::MemberUpdate> {
        let mut picked: Vec<Key> = Vec::new();
        let mut left = budget;
        if let Some((name, entry)) = first.and_then(|name| self.entries.get_key_value(name)) {
            if entry.field_len() <= left {
                left -= entry.field_len();
                picked.push((entry.transmits, Reverse(entry.id), name.clone()));
            }
        }
        let mut skipped = 0;
        for key in &self.order {
            if skipped >= MAX_SKIPPED || left == 0 {
                break;
            }
            if Some(&*key.2) == first {
                continue;
            }
            let Some(entry) = self.entries.get(&key.2) else {
                continue;
            };
            if entry.field_len() <= left {
                left -= entry.field_len();
                picked.push(key.clone());
            } else {
                skipped += 1;
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for key in picked {
            self.order.remove(&key);
            let Some(entry) = self.entries.get_mut(&key.2) else {
                continue;
            };
            entry.transmits += 1;
            // Always decodes: the bytes are our own encoding.
            out.extend(entry.decode());
            if entry.transmits >= limit {
                self.entries.remove(&key.2);
            } else {
                self.order.insert((entry.transmits, key.1, key.2));
            }
        }
        self.shrink();
        out
    }

    /// Gives memory back once the queue has drained: a join wave queues one update per member
    /// at every node, and a table that kept that capacity would cost O(N) per node forever.
    fn shrink(&mut self) {
        let cap = self.entries.capacity();
        if cap > SHRINK_ABOVE && self.entries.len() * 4 < cap {
            self.entries.shrink_to(self.entries.len() * 2);
        }
    }
}

/// Capacity of the pending-update table kept however empty it gets.
const SHRINK_ABOVE: usize = 64;

/// Times each update is sent in a cluster of `n`: retransmit_mult × ceil(log10(n + 1)).
pub fn retransmit_limit(retransmit_mult: u32, n: usize) -> u32 {
    let scale = ((n as f64) + 1.0).log10().ceil().max(1.0);
    retransmit_mult.saturating_mul(scale as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(name: &str, inc: u64) -> wire::MemberUpdate {
        wire::MemberUpdate {
            name: name.into(),
            address: "10.0.0.1:39527".into(),
            incarnation: inc,
            state: wire::MemberState::Alive as i32,
            meta: None,
            accuser: String::new(),
        }
    }

    fn names(v: &[wire::MemberUpdate]) -> Vec<&str> {
        v.iter().map(|u| u.name.as_str()).collect()
    }

    fn field(name: &str) -> usize {
        update_field_len(update(name, 1).encoded_len())
    }

    #[test]
    fn retransmit_limit_table() {
        let cases = [
            (4, 0, 4),
            (4, 1, 4),
            (4, 9, 4),
            (4, 10, 8),
            (4, 99, 8),
            (4, 100, 12),
            (4, 10_000, 20),
            (0, 5, 1),
        ];
        for (mult, n, want) in cases {
            assert_eq!(retransmit_limit(mult, n), want, "mult {mult} n {n}");
        }
    }

    #[test]
    fn newer_update_replaces_pending_one() {
        let mut q = BroadcastQueue::default();
        q.push("a".into(), update("a", 1));
        q.push("a".into(), update("a", 2));
        assert_eq!(q.len(), 1);
        assert_eq!(q.get("a").map(|u| u.incarnation), Some(2));
    }

    #[test]
    fn least_sent_then_newest_first() {
        let mut q = BroadcastQueue::default();
        q.push("a".into(), update("a", 1));
        q.push("b".into(), update("b", 1));
        // One slot: newest ("b") goes first, then "a" (fewer transmits), then "b" again.
        let one = field("a");
        let sent: Vec<_> = (0..3)
            .map(|_| names(&q.fill(one, None, 10)).join(","))
            .collect();
        assert_eq!(sent, ["b", "a", "b"]);
    }

    #[test]
    fn dropped_after_limit() {
        let mut q = BroadcastQueue::default();
        q.push("a".into(), update("a", 1));
        for round in 0..3 {
            assert_eq!(names(&q.fill(1000, None, 3)), ["a"], "round {round}");
        }
        assert!(q.is_empty());
        assert!(q.fill(1000, None, 3).is_empty());
    }

    #[test]
    fn full_queue_drops_the_most_sent_oldest_update() {
        let mut q = BroadcastQueue::default();
        let name = |i: usize| format!("m{i}");
        for i in 0..MAX_PENDING_UPDATES {
            assert!(
                !q.push(name(i).into(), update(&name(i), 1)),
                "dropped at {i}"
            );
        }
        // m0 and m1 go out once each; m0 is the older of the two.
        let budget = field("m0");
        assert_eq!(q.fill(budget, Some("m0"), 10).len(), 1);
        assert_eq!(q.fill(budget, Some("m1"), 10).len(), 1);
        // A newer update about a queued member replaces it: nothing dropped.
        assert!(!q.push(name(5).into(), update(&name(5), 2)));
        assert!(q.push("new".into(), update("new", 1)));
        assert_eq!(q.len(), MAX_PENDING_UPDATES);
        assert!(!q.contains("m0"), "the most-sent, oldest update goes first");
        assert!(q.contains("m1") && q.contains("new"));
    }

    #[test]
    fn fill_respects_budget_table() {
        let f = field("a");
        // (budget, expected count out of 5 queued)
        let cases = [(0, 0), (f - 1, 0), (f, 1), (3 * f + 1, 3), (100 * f, 5)];
        for (budget, want) in cases {
            let mut q = BroadcastQueue::default();
            for name in ["a", "b", "c", "d", "e"] {
                q.push(name.into(), update(name, 1));
            }
            assert_eq!(q.fill(budget, None, 10).len(), want, "budget {budget}");
        }
    }

    #[test]
    fn buddy_goes_first() {
        let mut q = BroadcastQueue::default();
        q.push("x".into(), update("x", 1));
        q.fill(1000, None, 10); // x now has one transmit more than the others
        q.push("y".into(), update("y", 1));
        q.push("z".into(), update("z", 1));
        let got = q.fill(field("x"), Some("x"), 10);
        assert_eq!(names(&got), ["x"]);
        let got = q.fill(1000, Some("x"), 10);
        assert_eq!(names(&got), ["x", "z", "y"]);
    }
}
