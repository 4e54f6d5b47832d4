//! How long a crash waits for its first suspicion: `cargo bench --bench first_suspicion [-- N]`
//! (default N = 100; `MESHD_BENCH_SEEDS` crashes per start, default 200). Each crash gets a
//! fresh simulated cluster of N with its own seed, so the crashes are independent: one that
//! formed by a mass join through one seed (as `scripts/realbench.py` starts its agents) and
//! one that starts converged, each run for 30 virtual seconds before a random non-seed member
//! crashes. The wait is for the first survivor that probes the dead member, so its tail is the
//! probe schedule's: each way of starting runs with the shuffled schedule (the default) and
//! the aligned one (`--probe-schedule aligned`, every clock in step as in the simulator). The
//! table gives the median, p90 and p99, and how many waited past 3 and 4 s. Progress goes to
//! stderr, the table to stdout.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use meshd::sim::{NetConfig, Sim};
use meshd::swim::{Config, Event, MemberState, ProbeSchedule};

/// Cluster size when none is given.
const DEFAULT_N: usize = 100;
/// Crashes per way of starting when `MESHD_BENCH_SEEDS` is not set.
const DEFAULT_SEEDS: u64 = 200;
/// Virtual time between the start and the crash (the real-process bench's quiet window).
const BEFORE_CRASH: Duration = Duration::from_secs(30);
/// Longest wait for the first suspicion; a crash not suspected by then counts as this long.
const LIMIT: Duration = Duration::from_secs(60);
/// Sampling step while waiting (events carry their own time, so this only bounds the loop).
const STEP: Duration = Duration::from_millis(100);

/// How the cluster came to be before the crash.
#[derive(Clone, Copy)]
enum Start {
    /// Every member joins through member 0 at once.
    MassJoin,
    /// Every member starts holding every other ALIVE, timers at random phases.
    Converged,
}

impl Start {
    fn label(self) -> &'static str {
        match self {
            Start::MassJoin => "mass join",
            Start::Converged => "converged",
        }
    }
}

fn main() {
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(DEFAULT_N)
        .max(3);
    let seeds = std::env::var("MESHD_BENCH_SEEDS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_SEEDS)
        .max(1);
    println!("| N = {n}, {seeds} crashes each | median | p90 | p99 | > 3 s | > 4 s |");
    println!("|---|---|---|---|---|---|");
    let aligned = ProbeSchedule::Aligned {
        at: Instant::now(),
        unix: Duration::ZERO,
    };
    let runs = [
        (Start::MassJoin, ProbeSchedule::Shuffled),
        (Start::Converged, ProbeSchedule::Shuffled),
        (Start::MassJoin, aligned),
        (Start::Converged, aligned),
    ];
    for (start, schedule) in runs {
        let label = format!("{}, {}", start.label(), schedule_label(schedule));
        let mut waits: Vec<f64> = (1..=seeds)
            .map(|seed| {
                let wait = first_suspicion(n, seed, start, schedule);
                if seed % 50 == 0 {
                    eprintln!("{label}: {seed}/{seeds} crashes");
                }
                wait.as_secs_f64()
            })
            .collect();
        waits.sort_by(f64::total_cmp);
        let over = |s: f64| waits.iter().filter(|&&w| w > s).count();
        println!(
            "| first suspicion, {label} | {:.2} s | {:.2} s | {:.2} s | {} | {} |",
            quantile(&waits, 0.5),
            quantile(&waits, 0.9),
            quantile(&waits, 0.99),
            over(3.0),
            over(4.0)
        );
    }
}

fn schedule_label(schedule: ProbeSchedule) -> &'static str {
    match schedule {
        ProbeSchedule::Shuffled => "shuffled",
        ProbeSchedule::Aligned { .. } => "aligned",
    }
}

/// One fresh cluster of `n` started as `start` probing on `schedule`, one crash: the wait for
/// its first suspicion.
fn first_suspicion(n: usize, seed: u64, start: Start, probe_schedule: ProbeSchedule) -> Duration {
    let config = Config {
        probe_schedule,
        ..Config::default()
    };
    let mut sim = Sim::new(seed, config, NetConfig::default());
    match start {
        Start::MassJoin => {
            let first = sim.add_alone("n0");
            for i in 1..n {
                sim.add_joining(&format!("n{i}"), first);
            }
        }
        Start::Converged => {
            let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
            sim.add_converged(&names);
        }
    }
    sim.run_for(BEFORE_CRASH, |_| {});
    let victim = StdRng::seed_from_u64(seed).random_range(1..n);
    let victim_name = sim.name(victim).to_owned();
    sim.crash(victim);
    let crashed_at = sim.now();
    let mut suspected = None;
    while suspected.is_none() && sim.now() - crashed_at < LIMIT {
        sim.run_for(STEP, |e| {
            if let Event::Changed { member, .. } = &e.event {
                if member.name == victim_name && member.state == MemberState::Suspected {
                    suspected.get_or_insert(e.at);
                }
            }
        });
    }
    suspected.map_or(LIMIT, |at| at - crashed_at)
}

/// The `q` quantile of sorted `values` (nearest rank).
fn quantile(values: &[f64], q: f64) -> f64 {
    let last = values.len().saturating_sub(1);
    let rank = ((values.len() as f64 * q).ceil() as usize).saturating_sub(1);
    values.get(rank.min(last)).copied().unwrap_or(0.0)
}
