//! Probing: the current probe round of this node, the indirect probes it serves for others,
//! and the rule that turns a round's outcome into a health delta.

use std::collections::HashMap;
use std::net::SocketAddr;

/// The probe round in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRound {
    /// Sequence number of our direct ping (indirect probers answer with it too).
    pub seq: u32,
    /// Name of the member probed.
    pub target: String,
    /// Its address when the round started.
    pub target_addr: SocketAddr,
    /// Its incarnation when the round started (a refutation since then means it is fine).
    pub incarnation: u64,
    /// Ping-reqs sent, so nacks expected.
    pub indirect_sent: usize,
    /// Nacks received so far.
    pub nacks: usize,
    /// How the round was answered, once it was.
    pub acked: Option<AckKind>,
}

/// How a probe round was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    /// The target answered our ping.
    Direct,
    /// An indirect prober relayed the target's answer.
    Indirect,
}

/// Nacks still expected from a failed round, counted a little after it ended because indirect
/// probers answer only when their own timeout passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NackWatch {
    /// The failed round's sequence number.
    pub seq: u32,
    /// Nacks expected (ping-reqs sent).
    pub expected: usize,
    /// Nacks received.
    pub received: usize,
}

/// Health change after a round: -1 when answered, +1 when not (missing nacks are counted
/// separately by [`missing_nacks_delta`]).
pub fn round_delta(acked: bool) -> i64 {
    if acked {
        -1
    } else {
        1
    }
}

/// Health change for nacks that never came: +1 each (memberlist's rule: if the indirect probers
/// could not even answer, this node may be the slow or cut-off one).
pub fn missing_nacks_delta(expected: usize, received: usize) -> i64 {
    i64::try_from(expected.saturating_sub(received)).unwrap_or(i64::MAX)
}

/// An indirect probe this node runs for a requester.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// Where to send the ack or nack.
    pub requester: SocketAddr,
    /// The requester's sequence number to answer with.
    pub requester_seq: u32,
}

/// Indirect probes in progress, keyed by the sequence number of our own ping.
#[derive(Clone, Debug, Default)]
pub struct IndirectProbes {
    served: HashMap<u32, Served>,
}

impl IndirectProbes {
    /// Records a probe we sent with `seq` on behalf of a requester.
    pub fn insert(&mut self, seq: u32, served: Served) {
        self.served.insert(seq, served);
    }

    /// Takes the probe our `seq` belongs to (on ack or timeout), if still open.
    pub fn take(&mut self, seq: u32) -> Option<Served> {
        self.served.remove(&seq)
    }

    /// Open indirect probes.
    pub fn len(&self) -> usize {
        self.served.len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.served.is_empty()
    }
}

/// Hands out probe sequence numbers (wrapping; a stale match after 2^32 probes is harmless).
#[derive(Clone, Debug, Default)]
pub struct SeqGen(u32);

impl SeqGen {
    /// Starts at `start` (random, so restarts do not reuse recent numbers).
    pub fn new(start: u32) -> Self {
        SeqGen(start)
    }

    /// The next sequence number.
    pub fn next_seq(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(1);
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_delta_table() {
        // (acked, nacks expected, nacks received, total delta)
        let cases = [
            (true, 0, 0, -1),
            (false, 0, 0, 1),
            (false, 3, 3, 1),
            (false, 3, 1, 3),
            (false, 3, 0, 4),
            (false, 2, 5, 1),
        ];
        for (acked, expected, received, want) in cases {
            let got = round_delta(acked)
                + if acked {
                    0
                } else {
                    missing_nacks_delta(expected, received)
                };
            assert_eq!(got, want, "acked {acked} {received}/{expected}");
        }
    }

    #[test]
    fn indirect_probes_answer_once() {
        let mut p = IndirectProbes::default();
        let requester: SocketAddr = "10.0.0.1:1".parse().unwrap();
        p.insert(
            5,
            Served {
                requester,
                requester_seq: 9,
            },
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p.take(6), None);
        assert_eq!(
            p.take(5),
            Some(Served {
                requester,
                requester_seq: 9
            })
        );
        assert_eq!(p.take(5), None);
        assert!(p.is_empty());
    }

    #[test]
    fn seq_wraps() {
        let mut s = SeqGen::new(u32::MAX - 1);
        assert_eq!([s.next_seq(), s.next_seq(), s.next_seq()], [u32::MAX, 0, 1]);
    }
}
