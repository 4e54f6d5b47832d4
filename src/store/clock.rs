//! A hybrid logical clock (Kulkarni et al., 2014): physical milliseconds passed in by the
//! caller, a logical counter for events within one millisecond or while the wall clock lags a
//! stamp already seen, and the node name as the final tie-break. Every write of the cluster
//! gets a distinct [`Stamp`], and the order of stamps respects causality: a write made after
//! seeing another is stamped later, whatever the two hosts' clocks say.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Furthest ahead of our own wall clock a stamp we observe may pull the clock. A peer whose
/// clock runs further ahead still has its writes merged (they win last-writer-wins until our
/// clock catches up), but cannot drag every later write of ours into its future.
pub const MAX_DRIFT_MS: u64 = 60_000;

/// One point of hybrid logical time: which write came last, cluster-wide.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Milliseconds since the Unix epoch (the larger of the writer's clock and the stamps it had
    /// seen).
    pub wall_ms: u64,
    /// Tells apart stamps of the same millisecond.
    pub counter: u32,
    /// The writing node: the last tie-break, so two nodes never make equal stamps.
    pub node: Arc<str>,
}

impl Stamp {
    /// A stamp of `node` at `wall_ms`, counter 0 (for tests and for the smallest stamp).
    pub fn new(wall_ms: u64, counter: u32, node: &str) -> Self {
        Stamp {
            wall_ms,
            counter,
            node: node.into(),
        }
    }
}

impl Ord for Stamp {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.wall_ms, self.counter, &*self.node).cmp(&(other.wall_ms, other.counter, &*other.node))
    }
}

impl PartialOrd for Stamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Stamp {
    /// `wall_ms.counter@node`: what the API shows as an entry's version.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.wall_ms, self.counter, self.node)
    }
}

/// This node's hybrid logical clock.
#[derive(Clone, Debug)]
pub struct Clock {
    node: Arc<str>,
    wall_ms: u64,
    counter: u32,
}

impl Clock {
    /// A clock for `node` that has seen nothing yet.
    pub fn new(node: &str) -> Self {
        Clock {
            node: node.into(),
            wall_ms: 0,
            counter: 0,
        }
    }

    /// The stamp of a new local write at wall time `now_ms`: later than every stamp this clock
    /// made or observed.
    pub fn tick(&mut self, now_ms: u64) -> Stamp {
        if now_ms > self.wall_ms {
            self.wall_ms = now_ms;
            self.counter = 0;
        } else if self.counter == u32::MAX {
            // 4 billion writes in one millisecond: borrow the next one.
            self.wall_ms += 1;
            self.counter = 0;
        } else {
            self.counter += 1;
        }
        Stamp {
            wall_ms: self.wall_ms,
            counter: self.counter,
            node: self.node.clone(),
        }
    }

    /// Takes note of a stamp from another node, so our next write is stamped after it; a stamp
    /// more than [`MAX_DRIFT_MS`] ahead of `now_ms` moves the clock only that far.
    pub fn observe(&mut self, stamp: &Stamp, now_ms: u64) {
        let ceiling = now_ms.saturating_add(MAX_DRIFT_MS);
        let (wall, counter) = if stamp.wall_ms > ceiling {
            (ceiling, 0)
        } else {
            (stamp.wall_ms, stamp.counter)
        };
        if (wall, counter) > (self.wall_ms, self.counter) {
            self.wall_ms = wall;
            self.counter = counter;
        }
    }

    /// The node this clock stamps for.
    pub fn node(&self) -> &Arc<str> {
        &self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_order_by_time_then_counter_then_node() {
        let mut sorted = [
            Stamp::new(2, 0, "a"),
            Stamp::new(1, 1, "a"),
            Stamp::new(1, 0, "b"),
            Stamp::new(1, 0, "a"),
        ];
        sorted.sort();
        let shown: Vec<String> = sorted.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["1.0@a", "1.0@b", "1.1@a", "2.0@a"]);
    }

    #[test]
    fn ticks_are_strictly_increasing_even_when_the_wall_clock_stalls_or_steps_back() {
        let mut clock = Clock::new("a");
        let walls = [100, 100, 100, 99, 50, 101, 101];
        let stamps: Vec<Stamp> = walls.iter().map(|w| clock.tick(*w)).collect();
        for pair in stamps.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
        assert_eq!(
            stamps[4].to_string(),
            "100.4@a",
            "a step back keeps counting"
        );
        assert_eq!(stamps[5].to_string(), "101.0@a");
    }

    #[test]
    fn a_write_after_seeing_one_is_stamped_after_it_whatever_the_local_clock() {
        let mut slow = Clock::new("slow");
        let remote = Stamp::new(5_000, 7, "fast");
        slow.observe(&remote, 1_000);
        let mine = slow.tick(1_000);
        assert!(mine > remote, "{mine} after {remote}");
        assert_eq!(mine.to_string(), "5000.8@slow");
    }

    #[test]
    fn a_stamp_far_in_the_future_moves_the_clock_only_by_the_drift_bound() {
        let mut clock = Clock::new("a");
        clock.observe(&Stamp::new(u64::MAX, 0, "liar"), 1_000);
        let next = clock.tick(1_000);
        assert_eq!(next.wall_ms, 1_000 + MAX_DRIFT_MS);
        assert_eq!(next.counter, 1);
    }
}
