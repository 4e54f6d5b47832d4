//! Cluster-scale simulation bench: `cargo bench --bench cluster [-- N...]` (default 100 1000,
//! or `MESHD_BENCH_N=100,1000`). Prints join convergence, crash detection, leave propagation,
//! traffic per node, false DOWNs under loss and simulator speed. Every run is seeded.

use std::time::{Duration, Instant};

use meshd::sim::{NetConfig, Sim, SimEvent};
use meshd::swim::{Config, Event, MemberState};

/// Crashes measured per cluster size (p50/p99 over these).
const CRASHES: usize = 5;
/// Virtual time of each loss run (10 virtual minutes; `MESHD_BENCH_LOSS_SECS` overrides).
const LOSS_RUN: Duration = Duration::from_secs(600);
/// From this N on, only the 10 % loss run is made by default (each loss run is a fresh join
/// plus 10 virtual minutes); `MESHD_BENCH_LOSS=0,5,10` overrides.
const BIG_N: usize = 5000;
/// Virtual time of the steady-state traffic window.
const STEADY: Duration = Duration::from_secs(60);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A field of /proc/self/status in kB (VmHWM = peak RSS, VmRSS = current), 0 if unreadable.
fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn loss_secs() -> Duration {
    std::env::var("MESHD_BENCH_LOSS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(LOSS_RUN, Duration::from_secs)
}

fn loss_rates(n: usize) -> Vec<f64> {
    if let Ok(v) = std::env::var("MESHD_BENCH_LOSS") {
        return v
            .split(',')
            .filter_map(|s| s.trim().parse::<f64>().ok())
            .map(|p| p / 100.0)
            .collect();
    }
    if n >= BIG_N {
        vec![0.10]
    } else {
        vec![0.0, 0.05, 0.10]
    }
}

fn name(i: usize) -> String {
    format!("node-{i:05}")
}

struct Bench {
    sim: Sim,
    n: usize,
    virtual_run: Duration,
}

impl Bench {
    fn run_for(&mut self, d: Duration, on_event: impl FnMut(&SimEvent)) {
        self.sim.run_for(d, on_event);
        self.virtual_run += d;
    }

    /// Every running node sees `expect` members ALIVE.
    fn all_alive(&self, expect: usize) -> bool {
        (0..self.sim.len())
            .filter(|&i| self.sim.is_running(i))
            .all(|i| {
                self.sim
                    .core(i)
                    .is_some_and(|c| c.count_in_state(MemberState::Alive) == expect)
            })
    }

    fn running(&self) -> Vec<usize> {
        (0..self.sim.len())
            .filter(|&i| self.sim.is_running(i))
            .collect()
    }
}

/// Starts node 0 alone, then N−1 joiners through it over ~5 s; returns seconds to converge
/// after the last join.
fn join(seed: u64, n: usize, net: NetConfig) -> (Bench, Option<f64>) {
    let mut sim = Sim::new(seed, Config::default(), net);
    sim.set_check_incarnations(false);
    let mut b = Bench {
        sim,
        n,
        virtual_run: Duration::ZERO,
    };
    b.sim.add_alone(&name(0));
    let stagger = secs(5.0 / n as f64);
    for i in 1..n {
        b.run_for(stagger, |_| {});
        b.sim.add_joining(&name(i), 0);
    }
    let start = b.sim.now();
    let mut converged = None;
    for _ in 0..600 {
        if b.all_alive(n) {
            converged = Some((b.sim.now() - start).as_secs_f64());
            break;
        }
        b.run_for(secs(0.5), |_| {});
    }
    (b, converged)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// Crashes CRASHES nodes one after another; returns (first suspicion, DOWN everywhere) seconds.
fn crashes(b: &mut Bench) -> (Vec<f64>, Vec<f64>) {
    let (mut first, mut all) = (Vec::new(), Vec::new());
    for k in 0..CRASHES {
        let victim = 1 + (k * 7919) % (b.n - 1);
        let victim_name = name(victim);
        b.sim.crash(victim);
        let t0 = b.sim.now();
        let survivors = b.running().len();
        let (mut suspected, mut downs) = (None, 0usize);
        for _ in 0..400 {
            b.run_for(secs(0.5), |e| {
                if let Event::Changed { member, .. } = &e.event {
                    if member.name == victim_name {
                        if member.state == MemberState::Suspected && suspected.is_none() {
                            suspected = Some(e.at);
                        }
                        if member.state == MemberState::Down {
                            downs += 1;
                        }
                    }
                }
            });
            if downs >= survivors {
                break;
            }
        }
        if let Some(s) = suspected {
            first.push((s - t0).as_secs_f64());
        }
        if downs >= survivors {
            all.push((b.sim.now() - t0).as_secs_f64());
        }
    }
    (first, all)
}

/// One node leaves; seconds until every other running node lists it LEAVING.
fn leave(b: &mut Bench) -> Option<f64> {
    let leaver = b.running().into_iter().last()?;
    let leaver_name = name(leaver);
    let others = b.running().len() - 1;
    b.sim.leave(leaver);
    let t0 = b.sim.now();
    let mut seen = 0usize;
    for _ in 0..200 {
        b.run_for(secs(0.1), |e| {
            if let Event::Changed { member, .. } = &e.event {
                if member.name == leaver_name
                    && member.state == MemberState::Leaving
                    && !member.is_local
                {
                    seen += 1;
                }
            }
        });
        if seen >= others {
            b.sim.crash(leaver);
            return Some((b.sim.now() - t0).as_secs_f64());
        }
    }
    b.sim.crash(leaver);
    None
}

/// Datagrams and bytes per node per second over a quiet window, and the simulator's speed
/// there (virtual seconds per wall second).
fn steady_traffic(b: &mut Bench) -> (f64, f64, f64) {
    let before = b.sim.stats().clone();
    let wall = Instant::now();
    b.run_for(STEADY, |_| {});
    let speed = STEADY.as_secs_f64() / wall.elapsed().as_secs_f64();
    let after = b.sim.stats();
    let nodes = b.running().len() as f64;
    let d = STEADY.as_secs_f64() * nodes;
    (
        (after.datagrams_sent - before.datagrams_sent) as f64 / d,
        (after.bytes_sent - before.bytes_sent) as f64 / d,
        speed,
    )
}

/// DOWN events about live nodes over LOSS_RUN at `loss`, starting from a converged cluster.
fn false_downs(seed: u64, n: usize, loss: f64, run: Duration) -> (usize, Duration) {
    let (mut b, _) = join(seed, n, NetConfig::default());
    eprintln!(
        "  N={n}: joined, running {} s at {:.0}% loss",
        run.as_secs(),
        loss * 100.0
    );
    b.sim.set_net(NetConfig {
        loss,
        ..NetConfig::default()
    });
    let mut downs = 0;
    b.run_for(run, |e| {
        if let Event::Changed { member, .. } = &e.event {
            if member.state == MemberState::Down {
                downs += 1;
            }
        }
    });
    (downs, b.virtual_run)
}

fn run(n: usize) {
    let wall = Instant::now();
    let mut virtual_total = Duration::ZERO;
    let rss_before = proc_status_kb("VmRSS:");
    eprintln!("N={n}: joining");
    let (mut b, converged) = join(42, n, NetConfig::default());
    let rss_after = proc_status_kb("VmRSS:");
    let per_entry = (rss_after.saturating_sub(rss_before) * 1024) as f64 / (n * n) as f64;
    eprintln!(
        "N={n}: joined in {:.1} wall s (converged: {converged:?}); RSS {} MB; steady state",
        wall.elapsed().as_secs_f64(),
        rss_after / 1024
    );
    let (msgs, bytes, steady_speed) = steady_traffic(&mut b);
    eprintln!("N={n}: steady {steady_speed:.1}x real time; crashes");
    let (mut first, mut all) = crashes(&mut b);
    eprintln!("N={n}: leave");
    let left = leave(&mut b);
    virtual_total += b.virtual_run;
    drop(b);
    let run = loss_secs();
    let rates = loss_rates(n);
    let mut loss_rows = Vec::new();
    for &loss in &rates {
        eprintln!("N={n}: loss run {:.0}%", loss * 100.0);
        let (downs, v) = false_downs(7, n, loss, run);
        virtual_total += v;
        loss_rows.push((loss, downs));
    }
    let wall = wall.elapsed().as_secs_f64();
    let fmt = |x: Option<f64>| x.map_or("n/a".to_owned(), |v| format!("{v:.2} s"));
    println!("\n== N = {n} ==");
    println!(
        "{:<46} {}",
        "join convergence after last join",
        fmt(converged)
    );
    println!(
        "{:<46} p50 {:.2} s  p99 {:.2} s  ({} crashes)",
        "crash → first suspicion",
        percentile(&mut first, 0.5),
        percentile(&mut first, 0.99),
        CRASHES
    );
    println!(
        "{:<46} p50 {:.2} s  p99 {:.2} s  ({} of {} detected)",
        "crash → DOWN at every survivor",
        percentile(&mut all, 0.5),
        percentile(&mut all, 0.99),
        all.len(),
        CRASHES
    );
    println!("{:<46} {}", "leave → LEAVING at every member", fmt(left));
    println!(
        "{:<46} {msgs:.1} datagrams, {bytes:.0} bytes",
        "steady traffic per node per second"
    );
    for (loss, downs) in loss_rows {
        println!(
            "{:<46} {downs}",
            format!(
                "false DOWN events, {:.0}% loss, {} s",
                loss * 100.0,
                run.as_secs()
            )
        );
    }
    if rates.len() < 3 {
        println!(
            "  note: only {:?} % loss run at N = {n} (each run is a fresh join plus {} virtual s; \
             MESHD_BENCH_LOSS=0,5,10 runs all)",
            rates.iter().map(|p| p * 100.0).collect::<Vec<_>>(),
            run.as_secs()
        );
    }
    println!(
        "{:<46} {:.0} B (RSS growth over the join / N²)",
        "memory per member entry", per_entry
    );
    println!(
        "{:<46} {} MB (VmHWM)",
        "peak RSS of the bench process",
        proc_status_kb("VmHWM:") / 1024
    );
    println!(
        "{:<46} {steady_speed:.1}x real time",
        "simulator speed, steady state"
    );
    println!(
        "{:<46} {:.1}x real time ({:.0} virtual s in {:.1} wall s)",
        "simulator speed, whole bench (joins included)",
        virtual_total.as_secs_f64() / wall,
        virtual_total.as_secs_f64(),
        wall
    );
}

fn main() {
    let from_args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let from_env: Vec<usize> = std::env::var("MESHD_BENCH_N")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_default();
    let sizes = if !from_args.is_empty() {
        from_args
    } else if !from_env.is_empty() {
        from_env
    } else {
        vec![100, 1000]
    };
    for n in sizes {
        run(n.max(2));
    }
}
