//! Probing: the current probe round of this node, the indirect probes it serves for others,
//! and the rule that turns a round's outcome into a health delta.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    /// Indirect probers that nacked so far (each a witness that the target is unreachable).
    pub nackers: Vec<String>,
    /// How the round was answered, once it was.
    pub acked: Option<AckKind>,
    /// When our direct ping was handed out (a direct ack's round trip is measured from it).
    pub sent_at: Instant,
}

/// How a probe round was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    /// The target answered our ping.
    Direct,
    /// An indirect prober relayed the target's answer.
    Indirect,
}

/// Upper bounds of the round-trip histogram's buckets (a count above the last is only in
/// [`RttHistogram::count`]). From 1 ms on one LAN to the 500 ms default probe timeout and past
/// it (a stretched timeout under a poor local health score).
pub const RTT_BUCKETS: [Duration; 10] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

/// Round trips of direct probes (ping sent → its ack received), in fixed buckets: plain counters,
/// so a snapshot can carry them and an exporter can render a Prometheus histogram.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RttHistogram {
    /// `buckets[i]` counts round trips of at most `RTT_BUCKETS[i]` that did not fit a smaller
    /// bucket (not cumulative).
    pub buckets: [u64; RTT_BUCKETS.len()],
    /// Round trips recorded, including those above the last bound.
    pub count: u64,
    /// Sum of all recorded round trips, in microseconds.
    pub sum_micros: u64,
}

impl RttHistogram {
    /// Records one round trip.
    pub fn record(&mut self, rtt: Duration) {
        if let Some(i) = RTT_BUCKETS.iter().position(|bound| rtt <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Round trips of at most each bound, in the order of [`RTT_BUCKETS`] (cumulative, as
    /// Prometheus' `le` buckets are).
    pub fn cumulative(&self) -> [u64; RTT_BUCKETS.len()] {
        let mut total = 0;
        self.buckets.map(|n| {
            total += n;
            total
        })
    }
}

/// Nacks still expected from a failed round, counted a little after it ended because indirect
/// probers answer only when their own timeout passes (usually just after the round ends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NackWatch {
    /// The failed round's sequence number.
    pub seq: u32,
    /// Nacks expected (ping-reqs sent).
    pub expected: usize,
    /// The member the round probed: each nack confirms our suspicion of it.
    pub target: String,
    /// Its incarnation in that round (a nack says nothing about a later one).
    pub incarnation: u64,
    /// Indirect probers that nacked.
    pub nackers: Vec<String>,
}

/// Adds `nacker` to `nackers` unless already there (a duplicated datagram is not a second
/// witness); true when it was new.
pub fn record_nacker(nackers: &mut Vec<String>, nacker: &str) -> bool {
    if nackers.iter().any(|n| n == nacker) {
        return false;
    }
    nackers.push(nacker.to_owned());
    true
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
    fn a_nacker_is_recorded_once() {
        let mut nackers = Vec::new();
        let steps = [("b", true), ("c", true), ("b", false), ("d", true)];
        for (name, new) in steps {
            assert_eq!(record_nacker(&mut nackers, name), new, "{name}");
        }
        assert_eq!(nackers, ["b", "c", "d"]);
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
    fn rtt_histogram_buckets_by_upper_bound() {
        let mut h = RttHistogram::default();
        for micros in [500, 1_000, 1_001, 30_000, 2_000_000] {
            h.record(Duration::from_micros(micros));
        }
        // 0.5 ms and exactly 1 ms in `le 1ms`; 1.001 ms in `le 2ms`; 30 ms in `le 50ms`;
        // 2 s above every bound (only in the count).
        assert_eq!(h.buckets, [2, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(h.cumulative(), [2, 3, 3, 3, 3, 4, 4, 4, 4, 4]);
        assert_eq!(h.count, 5);
        assert_eq!(h.sum_micros, 2_032_501);
    }

    #[test]
    fn seq_wraps() {
        let mut s = SeqGen::new(u32::MAX - 1);
        assert_eq!([s.next_seq(), s.next_seq(), s.next_seq()], [u32::MAX, 0, 1]);
    }
}
