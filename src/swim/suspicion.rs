//! Lifeguard suspicion: a suspect's timeout starts long and shrinks toward a floor as distinct
//! members independently confirm the suspicion.
//!
//! Pure data: a [`Suspicion`] knows its deadline but does not schedule itself; the node puts the
//! deadline in its timer queue and checks it when the queue fires.

use std::time::{Duration, Instant};

use super::Config;

/// Floor and ceiling of the suspicion timeout for a cluster of `n` live members.
///
/// With scale = max(1, log10 n): floor = suspicion_confirmed_mult × scale × probe_interval (the
/// timeout once every expected witness agrees); ceiling = suspicion_max_timeout_mult ×
/// suspicion_mult × scale × probe_interval (nobody confirms). Both grow with log N, as the time
/// a refutation needs to spread does; the floor never exceeds the ceiling.
pub fn bounds(config: &Config, n: usize) -> (Duration, Duration) {
    let scale = (n.max(1) as f64).log10().max(1.0);
    let base = config
        .probe_interval
        .mul_f64(f64::from(config.suspicion_mult) * scale);
    let max = base.saturating_mul(config.suspicion_max_timeout_mult.max(1));
    let confirmed = config.suspicion_confirmed_mult.max(0.0) * scale;
    let min = Duration::try_from_secs_f64(config.probe_interval.as_secs_f64() * confirmed)
        .unwrap_or(max)
        .min(max);
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

/// Direct checks of the suspect spread over one suspicion timeout: a node asks the suspect this
/// often before its timer runs out, so a refutation lost once (or a suspect that missed the
/// accusation) does not make a live member DOWN.
pub const CHECKS_PER_TIMEOUT: u32 = 8;

/// One running suspicion of one member.
#[derive(Clone, Debug, PartialEq)]
pub struct Suspicion {
    start: Instant,
    min: Duration,
    max: Duration,
    k: u32,
    /// Distinct witnesses; the first one raised it, the rest are confirmations.
    accusers: Vec<String>,
    deadline: Instant,
    /// When the next direct check of the suspect is due.
    check_at: Option<Instant>,
    /// Checks come no more often than this.
    min_check_step: Duration,
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
    /// Starts a suspicion raised by `accuser` at `now`; checks come at most every
    /// `min_check_step`.
    pub fn new(
        now: Instant,
        accuser: &str,
        (min, max): (Duration, Duration),
        k: u32,
        min_check_step: Duration,
    ) -> Self {
        let mut s = Suspicion {
            start: now,
            min,
            max,
            k,
            accusers: vec![accuser.to_owned()],
            deadline: now + timeout(min, max, k, 0),
            check_at: None,
            min_check_step,
        };
        s.check_at = s.next_check(now);
        s
    }

    /// When the next direct check is due, if any.
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

    /// The next time to ask the suspect directly after `now`: [`CHECKS_PER_TIMEOUT`] times per
    /// timeout (at most every `min_check_step`) since the start, while before the deadline. A
    /// node that missed the suspect's refutation learns it this way (the suspect answers an
    /// outdated accusation with its newer incarnation), and a suspect that missed the
    /// accusation hears it and refutes.
    pub fn next_check(&self, now: Instant) -> Option<Instant> {
        let span = self.deadline.saturating_duration_since(self.start);
        let step = (span / CHECKS_PER_TIMEOUT).max(self.min_check_step);
        if step.is_zero() {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.start);
        let steps = elapsed.as_nanos() / step.as_nanos() + 1;
        let at = self.start + step.saturating_mul(u32::try_from(steps).ok()?);
        (at < self.deadline).then_some(at)
    }

    /// Who raised the suspicion.
    pub fn first_accuser(&self) -> &str {
        self.accusers.first().map(String::as_str).unwrap_or("")
    }

    /// Independent confirmations so far (witnesses beyond the first).
    pub fn confirmations(&self) -> u32 {
        u32::try_from(self.accusers.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Records a witness at `now` (another accuser, or an indirect prober that could not reach
    /// the suspect either); only a new one (up to k of them) shortens the deadline, and the
    /// checks are re-spread over what is left.
    pub fn confirm(&mut self, now: Instant, accuser: &str) -> Confirmation {
        if self.confirmations() >= self.k || self.accusers.iter().any(|a| a == accuser) {
            return Confirmation::Ignored;
        }
        self.accusers.push(accuser.to_owned());
        self.deadline = self.start + timeout(self.min, self.max, self.k, self.confirmations());
        self.check_at = self.next_check(now);
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
        let default = Config::default(); // 1 s probe interval, mult 4, max mult 6, confirmed 0.75
        let slow = Config {
            suspicion_confirmed_mult: 2.5,
            probe_interval: ms(500),
            ..Config::default()
        };
        let absurd = Config {
            suspicion_confirmed_mult: 100.0,
            ..Config::default()
        };
        let cases = [
            (&default, 1, ms(750), ms(24000)),
            (&default, 10, ms(750), ms(24000)),
            (&default, 100, ms(1500), ms(48000)),
            (&default, 1000, ms(2250), ms(72000)),
            (&slow, 100, ms(2500), ms(24000)),
            // The floor never exceeds the ceiling.
            (&absurd, 100, ms(48000), ms(48000)),
        ];
        for (config, n, min, max) in cases {
            let (got_min, got_max) = bounds(config, n);
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
        let (min, max) = (ms(2000), ms(48000));
        // log(c+1)/log(4): c=1 → 0.5, c=2 → 0.792, c=3 → 1.
        let cases = [
            (3, 0, ms(48000)),
            (3, 1, ms(25000)),
            (3, 2, ms(11546)),
            (3, 3, ms(2000)),
            (3, 9, ms(2000)),
            (0, 0, ms(2000)),
            (1, 1, ms(2000)),
        ];
        for (k, c, want) in cases {
            let got = timeout(min, max, k, c);
            assert!(got.abs_diff(want) < ms(10), "k {k} c {c}: {got:?}");
        }
    }

    #[test]
    fn checks_spread_over_the_timeout() {
        let t0 = Instant::now();
        let s = Suspicion::new(t0, "a", (ms(4000), ms(16000)), 0, ms(200));
        // k = 0: deadline at min, 8 checks over 4 s = every 500 ms.
        assert_eq!(s.deadline(), t0 + ms(4000));
        let cases = [
            (t0, Some(t0 + ms(500))),
            (t0 + ms(499), Some(t0 + ms(500))),
            (t0 + ms(500), Some(t0 + ms(1000))),
            (t0 + ms(3400), Some(t0 + ms(3500))),
            (t0 + ms(3500), None),
        ];
        for (now, want) in cases {
            assert_eq!(s.next_check(now), want, "{:?}", now - t0);
        }
        // A short timeout: the step is held at the minimum.
        let s = Suspicion::new(t0, "a", (ms(1000), ms(16000)), 0, ms(200));
        assert_eq!(s.next_check(t0 + ms(900)), None);
        assert_eq!(s.next_check(t0 + ms(500)), Some(t0 + ms(600)));
        // No minimum and a zero timeout: no checks at all.
        let s = Suspicion::new(t0, "a", (ms(0), ms(0)), 0, ms(0));
        assert_eq!(s.next_check(t0), None);
    }

    #[test]
    fn poll_check_fires_once_per_slot() {
        let t0 = Instant::now();
        // k = 3, no confirmation: deadline at max (16 s), a check every 2 s.
        let mut s = Suspicion::new(t0, "a", (ms(4000), ms(16000)), 3, ms(200));
        assert_eq!(s.check_at(), Some(t0 + ms(2000)));
        let cases = [
            (t0 + ms(1999), Check::NotDue),
            (
                t0 + ms(2000),
                Check::Due {
                    next: Some(t0 + ms(4000)),
                },
            ),
            (t0 + ms(2000), Check::NotDue),
            (
                t0 + ms(4100),
                Check::Due {
                    next: Some(t0 + ms(6000)),
                },
            ),
            (t0 + ms(14000), Check::Due { next: None }),
            (t0 + ms(15000), Check::NotDue),
        ];
        for (now, want) in cases {
            assert_eq!(s.poll_check(now), want, "{:?}", now - t0);
        }
    }

    #[test]
    fn confirmations_shrink_deadline_once_per_witness() {
        let t0 = Instant::now();
        let mut s = Suspicion::new(t0, "a", (ms(2000), ms(48000)), 3, ms(200));
        assert_eq!(s.deadline(), t0 + ms(48000));
        assert_eq!(s.check_at(), Some(t0 + ms(6000)));
        let steps = [
            ("a", false),
            ("b", true),
            ("b", false),
            ("c", true),
            ("d", true),
            ("e", false),
        ];
        for (accuser, accepted) in steps {
            let got = s.confirm(t0 + ms(10), accuser);
            assert_eq!(
                matches!(got, Confirmation::Accepted(_)),
                accepted,
                "{accuser}"
            );
        }
        assert_eq!(s.confirmations(), 3);
        assert_eq!(s.deadline(), t0 + ms(2000));
        // The checks are re-spread over the shorter timeout: every 250 ms.
        assert_eq!(s.check_at(), Some(t0 + ms(250)));
        assert_eq!(s.first_accuser(), "a");
    }
}
