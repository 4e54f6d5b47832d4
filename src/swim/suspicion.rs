//! Lifeguard suspicion: a suspect's timeout starts long and shrinks toward a floor as distinct
//! members independently confirm the suspicion.
//!
//! Pure data: a [`Suspicion`] knows its deadline but does not schedule itself; the node puts the
//! deadline in its timer queue and checks it when the queue fires.

use std::time::{Duration, Instant};

use super::Config;

/// Floor and ceiling of the suspicion timeout for a cluster of `n` live members.
///
/// min = suspicion_mult × max(1, log10 n) × probe_interval; max = suspicion_max_timeout_mult × min.
pub fn bounds(config: &Config, n: usize) -> (Duration, Duration) {
    let scale = (n.max(1) as f64).log10().max(1.0);
    let min = config
        .probe_interval
        .mul_f64(f64::from(config.suspicion_mult) * scale);
    let max = min.saturating_mul(config.suspicion_max_timeout_mult.max(1));
    (min, max)
}

/// Confirmations expected before the timeout reaches its floor: min(indirect_checks, n - 2)
/// (memberlist's choice: the members that could have probed it besides us and the suspect).
pub fn expected_confirmations(indirect_checks: usize, n: usize) -> u32 {
    let k = indirect_checks.min(n.saturating_sub(2));
    u32::try_from(k).unwrap_or(u32::MAX)
}

/// Timeout after `c` confirmations out of `k` expected:
/// max − (max − min) × log(c + 1) / log(k + 1), floored at min.
pub fn timeout(min: Duration, max: Duration, k: u32, c: u32) -> Duration {
    if k == 0 {
        // Nobody else can confirm, so waiting longer gains nothing.
        return min;
    }
    let frac = (f64::from(c) + 1.0).ln() / (f64::from(k) + 1.0).ln();
    let span = max.saturating_sub(min).as_secs_f64();
    let raw = max.as_secs_f64() - frac * span;
    Duration::try_from_secs_f64(raw).unwrap_or(min).max(min)
}

/// What a new accusation did to a running suspicion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// A new independent accuser: the deadline moved to this instant.
    Accepted(Instant),
    /// A repeat accuser, or enough confirmations already: nothing changed.
    Ignored,
}

/// One running suspicion of one member.
#[derive(Clone, Debug, PartialEq)]
pub struct Suspicion {
    start: Instant,
    min: Duration,
    max: Duration,
    k: u32,
    /// Distinct accusers; the first one raised it, the rest are confirmations.
    accusers: Vec<String>,
    deadline: Instant,
    /// When the next direct check of the suspect is due.
    check_at: Option<Instant>,
}

/// Whether a direct check of the suspect is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Send it now; the following one is due at `next` (if before the deadline).
    Due {
        /// When the following check is due.
        next: Option<Instant>,
    },
    /// Not yet (a stale timer entry).
    NotDue,
}

impl Suspicion {
    /// Starts a suspicion raised by `accuser` at `now`.
    pub fn new(now: Instant, accuser: &str, min: Duration, max: Duration, k: u32) -> Self {
        let mut s = Suspicion {
            start: now,
            min,
            max,
            k,
            accusers: vec![accuser.to_owned()],
            deadline: now + timeout(min, max, k, 0),
            check_at: None,
        };
        s.check_at = s.next_check(now);
        s
    }

    /// When the first direct check is due, if any.
    pub fn check_at(&self) -> Option<Instant> {
        self.check_at
    }

    /// Takes the check due at `now`, if any, and schedules the following one.
    pub fn poll_check(&mut self, now: Instant) -> Check {
        match self.check_at {
            Some(at) if at <= now && now < self.deadline => {
                self.check_at = self.next_check(now);
                Check::Due {
                    next: self.check_at,
                }
            }
            _ => Check::NotDue,
        }
    }

    /// When the suspect becomes DOWN unless it refutes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The next time to ask the suspect directly after `now`: every `min` since the start,
    /// while before the deadline. A node that missed the suspect's refutation learns it this way
    /// (the suspect answers an outdated accusation with its newer incarnation).
    pub fn next_check(&self, now: Instant) -> Option<Instant> {
        if self.min.is_zero() {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.start);
        let steps = elapsed.as_nanos() / self.min.as_nanos() + 1;
        let at = self.start + self.min.saturating_mul(u32::try_from(steps).ok()?);
        (at < self.deadline).then_some(at)
    }

    /// Who raised the suspicion.
    pub fn first_accuser(&self) -> &str {
        self.accusers.first().map(String::as_str).unwrap_or("")
    }

    /// Independent confirmations so far (accusers beyond the first).
    pub fn confirmations(&self) -> u32 {
        u32::try_from(self.accusers.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Records an accusation; only a new accuser (up to k of them) shortens the deadline.
    pub fn confirm(&mut self, accuser: &str) -> Confirmation {
        if self.confirmations() >= self.k || self.accusers.iter().any(|a| a == accuser) {
            return Confirmation::Ignored;
        }
        self.accusers.push(accuser.to_owned());
        self.deadline = self.start + timeout(self.min, self.max, self.k, self.confirmations());
        Confirmation::Accepted(self.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bounds_table() {
        let config = Config::default(); // 1 s probe interval, mult 4, max mult 6
        let cases = [
            (1, ms(4000), ms(24000)),
            (10, ms(4000), ms(24000)),
            (100, ms(8000), ms(48000)),
            (1000, ms(12000), ms(72000)),
        ];
        for (n, min, max) in cases {
            let (got_min, got_max) = bounds(&config, n);
            assert!(got_min.abs_diff(min) < ms(1), "n {n}: min {got_min:?}");
            assert!(got_max.abs_diff(max) < ms(1), "n {n}: max {got_max:?}");
        }
    }

    #[test]
    fn expected_confirmations_table() {
        let cases = [
            (3, 1, 0),
            (3, 2, 0),
            (3, 3, 1),
            (3, 4, 2),
            (3, 5, 3),
            (3, 50, 3),
            (0, 50, 0),
        ];
        for (checks, n, want) in cases {
            assert_eq!(
                expected_confirmations(checks, n),
                want,
                "checks {checks} n {n}"
            );
        }
    }

    #[test]
    fn timeout_table() {
        let (min, max) = (ms(4000), ms(24000));
        // log(c+1)/log(4): c=1 → 0.5, c=2 → 0.792, c=3 → 1.
        let cases = [
            (3, 0, ms(24000)),
            (3, 1, ms(14000)),
            (3, 2, ms(8150)),
            (3, 3, ms(4000)),
            (3, 9, ms(4000)),
            (0, 0, ms(4000)),
            (1, 1, ms(4000)),
        ];
        for (k, c, want) in cases {
            let got = timeout(min, max, k, c);
            assert!(got.abs_diff(want) < ms(5), "k {k} c {c}: {got:?}");
        }
    }

    #[test]
    fn checks_every_min_until_deadline() {
        let t0 = Instant::now();
        let s = Suspicion::new(t0, "a", ms(4000), ms(14000), 0);
        assert_eq!(
            s.deadline(),
            t0 + ms(4000),
            "k = 0: deadline at min, no check"
        );
        assert_eq!(s.next_check(t0), None);
        let s = Suspicion::new(t0, "a", ms(4000), ms(14000), 3);
        let cases = [
            (t0, Some(t0 + ms(4000))),
            (t0 + ms(3999), Some(t0 + ms(4000))),
            (t0 + ms(4000), Some(t0 + ms(8000))),
            (t0 + ms(9000), Some(t0 + ms(12000))),
            (t0 + ms(12000), None),
        ];
        for (now, want) in cases {
            assert_eq!(s.next_check(now), want, "{:?}", now - t0);
        }
    }

    #[test]
    fn poll_check_fires_once_per_slot() {
        let t0 = Instant::now();
        let mut s = Suspicion::new(t0, "a", ms(4000), ms(14000), 3);
        assert_eq!(s.check_at(), Some(t0 + ms(4000)));
        let cases = [
            (t0 + ms(3999), Check::NotDue),
            (
                t0 + ms(4000),
                Check::Due {
                    next: Some(t0 + ms(8000)),
                },
            ),
            (t0 + ms(4000), Check::NotDue),
            (
                t0 + ms(8100),
                Check::Due {
                    next: Some(t0 + ms(12000)),
                },
            ),
            (t0 + ms(12000), Check::Due { next: None }),
            (t0 + ms(13000), Check::NotDue),
        ];
        for (now, want) in cases {
            assert_eq!(s.poll_check(now), want, "{:?}", now - t0);
        }
    }

    #[test]
    fn confirmations_shrink_deadline_once_per_accuser() {
        let t0 = Instant::now();
        let mut s = Suspicion::new(t0, "a", ms(4000), ms(24000), 3);
        assert_eq!(s.deadline(), t0 + ms(24000));
        let steps = [
            ("a", false),
            ("b", true),
            ("b", false),
            ("c", true),
            ("d", true),
            ("e", false),
        ];
        for (accuser, accepted) in steps {
            let got = s.confirm(accuser);
            assert_eq!(
                matches!(got, Confirmation::Accepted(_)),
                accepted,
                "{accuser}"
            );
        }
        assert_eq!(s.confirmations(), 3);
        assert_eq!(s.deadline(), t0 + ms(4000));
        assert_eq!(s.first_accuser(), "a");
    }
}
