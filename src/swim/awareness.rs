//! Lifeguard local health: a score that rises when this node itself seems slow or cut off, and
//! stretches its own probe interval and timeout so it stops accusing healthy members.
//!
//! Pure data: callers apply deltas; nothing here schedules anything.

use std::time::Duration;

/// This node's local health score, `0..max`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Awareness {
    score: u32,
    max: u32,
}

impl Awareness {
    /// A healthy score (0) capped below `max_multiplier` (at least 1, meaning "never scale").
    pub fn new(max_multiplier: u32) -> Self {
        Awareness {
            score: 0,
            max: max_multiplier.max(1),
        }
    }

    /// Current score, 0 (healthy) up to `max_multiplier - 1`.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// Adds `delta` (negative = healthier), clamped to the valid range.
    pub fn apply(&mut self, delta: i64) {
        let next = (i64::from(self.score) + delta).clamp(0, i64::from(self.max - 1));
        self.score = u32::try_from(next).unwrap_or(0);
    }

    /// Scales a probe interval or timeout by `score + 1`.
    pub fn scale(&self, d: Duration) -> Duration {
        d.saturating_mul(self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_clamped_table() {
        // (max multiplier, deltas applied in order, expected score)
        let cases: [(u32, &[i64], u32); 6] = [
            (8, &[1, 1, 1], 3),
            (8, &[1, -1, -1], 0),
            (8, &[100], 7),
            (8, &[5, -2], 3),
            (1, &[3], 0),
            (0, &[3], 0),
        ];
        for (max, deltas, want) in cases {
            let mut a = Awareness::new(max);
            for d in deltas {
                a.apply(*d);
            }
            assert_eq!(a.score(), want, "max {max} deltas {deltas:?}");
        }
    }

    #[test]
    fn scale_multiplies_by_score_plus_one() {
        let mut a = Awareness::new(8);
        assert_eq!(
            a.scale(Duration::from_millis(500)),
            Duration::from_millis(500)
        );
        a.apply(2);
        assert_eq!(
            a.scale(Duration::from_millis(500)),
            Duration::from_millis(1500)
        );
    }
}
