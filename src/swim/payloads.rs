//! Payloads of other cores (the replicated stores' deltas) that SWIM carries without reading
//! them: a queue that fills what room membership updates leave in a datagram, least-sent first,
//! each up to the retransmit limit, like memberlist's delegate broadcasts.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

/// Most payloads waiting. Beyond it the one sent most often (then the oldest) is dropped: the
/// stores' anti-entropy repairs what gossip gave up on, and memory stays bounded however fast
/// the writes come.
pub const MAX_QUEUED_PAYLOADS: usize = 256;

/// Largest payload SWIM carries, in bytes: it must fit a datagram beside a probe.
pub const MAX_PAYLOAD_BYTES: usize = 1100;

/// Most payloads accepted in one datagram.
pub const MAX_PAYLOADS_PER_DATAGRAM: usize = 32;

/// Bytes a payload of `len` bytes adds to an envelope (field 9: tag, length prefix, bytes).
pub fn payload_field_len(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

#[derive(Clone, Debug)]
struct Entry {
    bytes: Vec<u8>,
    transmits: u32,
}

/// Sort key: fewest transmits first, then the newest.
type Key = (u32, Reverse<u64>);

/// Payloads waiting to ride along. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct PayloadQueue {
    entries: HashMap<u64, Entry>,
    order: BTreeSet<Key>,
    next_id: u64,
    dropped: u64,
}

impl PayloadQueue {
    /// Queues `bytes`; drops the most-sent payload if the queue is full.
    pub fn push(&mut self, bytes: Vec<u8>) {
        if self.entries.len() >= MAX_QUEUED_PAYLOADS {
            if let Some(last) = self.order.pop_last() {
                self.entries.remove(&last.1 .0);
                self.dropped += 1;
            }
        }
        self.next_id += 1;
        self.order.insert((0, Reverse(self.next_id)));
        self.entries.insert(
            self.next_id,
            Entry {
                bytes,
                transmits: 0,
            },
        );
    }

    /// Payloads waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Payloads dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes payloads whose fields fit in `budget` bytes, least-sent first; each counts one
    /// transmission and leaves the queue once sent `limit` times.
    pub fn fill(&mut self, budget: usize, limit: u32) -> Vec<Vec<u8>> {
        let mut left = budget;
        let mut picked = Vec::new();
        for key in &self.order {
            if picked.len() >= MAX_PAYLOADS_PER_DATAGRAM || left < payload_field_len(1) {
                break;
            }
            let Some(entry) = self.entries.get(&key.1 .0) else {
                continue;
            };
            let len = payload_field_len(entry.bytes.len());
            if len <= left {
                left -= len;
                picked.push(*key);
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for key in picked {
            self.order.remove(&key);
            let id = key.1 .0;
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            entry.transmits += 1;
            out.push(entry.bytes.clone());
            if entry.transmits >= limit {
                self.entries.remove(&id);
            } else {
                self.order.insert((entry.transmits, key.1));
            }
        }
        if self.entries.is_empty() && self.entries.capacity() > MAX_QUEUED_PAYLOADS {
            self.entries = HashMap::new();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_sent_first_up_to_the_limit_within_the_budget() {
        let mut q = PayloadQueue::default();
        q.push(vec![1; 500]);
        q.push(vec![2; 500]);
        q.push(vec![3; 500]);
        // Newest first among the unsent; the budget takes two.
        let first: Vec<u8> = q.fill(1100, 2).iter().map(|p| p[0]).collect();
        assert_eq!(first, [3, 2]);
        // The unsent one now leads, then the least sent.
        let second: Vec<u8> = q.fill(1100, 2).iter().map(|p| p[0]).collect();
        assert_eq!(second, [1, 3]);
        let third: Vec<u8> = q.fill(1100, 2).iter().map(|p| p[0]).collect();
        assert_eq!(third, [2, 1]);
        assert!(q.is_empty(), "each sent twice: gone");
        assert!(q.fill(1100, 2).is_empty());
        q.push(vec![4; 10]);
        assert_eq!(q.fill(100, 1).len(), 1);
        assert!(q.is_empty(), "a limit of one: sent once");
    }

    #[test]
    fn a_full_queue_drops_the_most_sent() {
        let mut q = PayloadQueue::default();
        q.push(vec![0]);
        q.fill(100, 10);
        for i in 1..=MAX_QUEUED_PAYLOADS {
            q.push(i.to_le_bytes().to_vec());
        }
        assert_eq!(q.len(), MAX_QUEUED_PAYLOADS);
        assert_eq!(q.dropped(), 1);
        let all: Vec<Vec<u8>> = (0..MAX_QUEUED_PAYLOADS)
            .flat_map(|_| q.fill(100, 1))
            .collect();
        assert!(!all.contains(&vec![0]), "the one already sent was dropped");
    }
}
