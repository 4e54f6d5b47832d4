//! Cluster-scale simulation bench: `cargo bench --bench cluster [-- N...]` (default 100 1000,
//! or `MESHD_BENCH_N=100,1000`). Each cluster starts converged ([`Sim::add_converged`]), then
//! the bench measures steady traffic, crashes, leaves, a join batch, a cut into halves and its
//! healing (merge time), and false DOWNs under loss
//! (each loss rate on a fresh cluster), with the simulator's speed per phase and its memory.
//! Progress goes to stderr, the table to stdout. Every run is seeded and reproducible.
//!
//! Knobs (environment): `MESHD_BENCH_N` sizes; `MESHD_BENCH_LOSS` loss rates in % (default
//! 0,5,10); `MESHD_BENCH_LOSS_SECS` virtual seconds per loss run (default 600);
//! `MESHD_BENCH_LOSS_WALL_SECS` wall-clock cap per loss run (default 200 from N = 5,000, none
//! below; the virtual time it covered is printed); `MESHD_BENCH_CRASHES` crashes per size (default 20, 10 from N = 5,000);
//! `MESHD_BENCH_MAX_RSS_MB` aborts a phase cleanly when VmRSS goes above it (default 20000).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use meshd::sim::{NetConfig, Sim};
use meshd::swim::{push_pull_scale, Config, Event, MemberState};

/// Seed of the main cluster (steady, joins, crashes, leaves).
const SEED: u64 = 42;
/// Seed of the loss runs' clusters.
const LOSS_SEED: u64 = 7;
/// Crashes per size below `BIG_N` (p50/p99 over these); `MESHD_BENCH_CRASHES` overrides.
const CRASHES: usize = 20;
/// Crashes per size from `BIG_N` on: each costs ~10 virtual s of a 10,000-node cluster.
const CRASHES_BIG: usize = 10;
/// Graceful leaves per size.
const LEAVES: usize = 5;
/// From this N on, fewer crashes are made by default.
const BIG_N: usize = 5000;
/// Virtual time of each loss run (10 virtual minutes; `MESHD_BENCH_LOSS_SECS` overrides).
const LOSS_RUN: Duration = Duration::from_secs(600);
/// Wall-clock cap of one loss run from `BIG_N` on (`MESHD_BENCH_LOSS_WALL_SECS`, which also
/// applies below `BIG_N` when set): three runs at N = 10,000 plus the rest of the bench fit in
/// ~20-25 minutes on the 2-core dev machine. Smaller sizes run the full virtual time.
const LOSS_WALL: Duration = Duration::from_secs(200);
/// Virtual time of the steady-state traffic window.
const STEADY: Duration = Duration::from_secs(60);
/// How often conditions are sampled: a measured time is late by up to one step.
const STEP: Duration = Duration::from_millis(500);
/// Sampling step of the leave phase (leaves spread in well under a second).
const LEAVE_STEP: Duration = Duration::from_millis(100);
/// Longest wait for a join batch to converge, a crash to be DOWN everywhere or a leave.
const PHASE_LIMIT: Duration = Duration::from_secs(300);
/// Step of a loss run between wall-clock and RSS checks: at N = 10,000 under loss one virtual
/// second can take a minute of CPU, so a longer step overshoots the wall-clock cap.
const LOSS_CHUNK: Duration = Duration::from_secs(1);
/// Default of `MESHD_BENCH_MAX_RSS_MB`.
const MAX_RSS_MB: u64 = 20_000;

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

/// User plus system CPU time of this process (the simulator is single-threaded).
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given; a zeroed rusage is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer; on failure the struct stays zero.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn env_parse<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

fn loss_secs() -> Duration {
    env_parse("MESHD_BENCH_LOSS_SECS").map_or(LOSS_RUN, Duration::from_secs)
}

fn loss_wall(n: usize) -> Option<Duration> {
    match env_parse("MESHD_BENCH_LOSS_WALL_SECS") {
        Some(s) => Some(Duration::from_secs(s)),
        None => (n >= BIG_N).then_some(LOSS_WALL),
    }
}

fn max_rss_kb() -> u64 {
    env_parse::<u64>("MESHD_BENCH_MAX_RSS_MB").unwrap_or(MAX_RSS_MB) * 1024
}

fn crash_count(n: usize) -> usize {
    env_parse("MESHD_BENCH_CRASHES").unwrap_or(if n >= BIG_N { CRASHES_BIG } else { CRASHES })
}

fn loss_rates() -> Vec<f64> {
    match std::env::var("MESHD_BENCH_LOSS") {
        Ok(v) => v
            .split(',')
            .filter_map(|s| s.trim().parse::<f64>().ok())
            .map(|p| p / 100.0)
            .collect(),
        Err(_) => vec![0.0, 0.05, 0.10],
    }
}

fn name(i: usize) -> String {
    format!("node-{i:05}")
}

/// Virtual time, CPU time and wall time spent in one phase.
#[derive(Clone, Copy, Default)]
struct Speed {
    virt: Duration,
    cpu: Duration,
    wall: Duration,
}

impl Speed {
    fn add(&mut self, other: Speed) {
        self.virt += other.virt;
        self.cpu += other.cpu;
        self.wall += other.wall;
    }

    fn show(&self) -> String {
        let per = |d: Duration| self.virt.as_secs_f64() / d.as_secs_f64().max(1e-9);
        format!(
            "{:.1}x per CPU s, {:.1}x per wall s ({:.0} virtual s, {:.1} CPU s)",
            per(self.cpu),
            per(self.wall),
            self.virt.as_secs_f64(),
            self.cpu.as_secs_f64()
        )
    }
}

/// Times a phase: virtual time advanced, CPU and wall time spent.
struct Stopwatch {
    virt: Duration,
    cpu: Duration,
    wall: Instant,
}

impl Stopwatch {
    fn start(sim: &Sim) -> Self {
        Stopwatch {
            virt: sim.now(),
            cpu: cpu_time(),
            wall: Instant::now(),
        }
    }

    fn stop(&self, sim: &Sim) -> Speed {
        Speed {
            virt: sim.now() - self.virt,
            cpu: cpu_time().saturating_sub(self.cpu),
            wall: self.wall.elapsed(),
        }
    }
}

/// VmRSS over the limit: the phase stops and says so.
fn rss_over(n: usize, phase: &str) -> bool {
    let rss = proc_status_kb("VmRSS:");
    let over = rss > max_rss_kb();
    if over {
        eprintln!(
            "N={n}: {phase} aborted: VmRSS {} MB above MESHD_BENCH_MAX_RSS_MB {}",
            rss / 1024,
            max_rss_kb() / 1024
        );
    }
    over
}

fn running(sim: &Sim) -> Vec<usize> {
    (0..sim.len()).filter(|&i| sim.is_running(i)).collect()
}

/// A converged cluster of `n`; returns it with the RSS growth per member entry (bytes).
fn converged(seed: u64, n: usize, net: NetConfig) -> (Sim, f64, Speed) {
    let rss_before = proc_status_kb("VmRSS:");
    let mut sim = Sim::new(seed, Config::default(), net);
    // The incarnation check keeps a map of N² entries: too big here.
    sim.set_check_incarnations(false);
    let watch = Stopwatch::start(&sim);
    let names: Vec<String> = (0..n).map(name).collect();
    sim.add_converged(&names);
    let build = watch.stop(&sim);
    let grown = proc_status_kb("VmRSS:").saturating_sub(rss_before) * 1024;
    (sim, grown as f64 / (n * n) as f64, build)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// Datagrams and bytes per node per second over a quiet window.
fn steady(sim: &mut Sim) -> (f64, f64, Speed) {
    let before = sim.stats().clone();
    let watch = Stopwatch::start(sim);
    sim.run_for(STEADY, |_| {});
    let speed = watch.stop(sim);
    let after = sim.stats();
    let d = STEADY.as_secs_f64() * running(sim).len() as f64;
    (
        (after.datagrams_sent - before.datagrams_sent) as f64 / d,
        (after.bytes_sent - before.bytes_sent) as f64 / d,
        speed,
    )
}

/// 1 % of N (at least one) join at once, each through a random running member; seconds until
/// every running node lists every one ALIVE (None if not within the limit or aborted).
fn join_batch(sim: &mut Sim, rng: &mut StdRng, n: usize) -> (usize, Option<f64>, Speed) {
    let k = (n / 100).max(1);
    let members = running(sim);
    let first = sim.len();
    for j in 0..k {
        let seed = members[rng.random_range(0..members.len())];
        sim.add_joining(&name(first + j), seed);
    }
    let expect = running(sim).len();
    let watch = Stopwatch::start(sim);
    let t0 = sim.now();
    let all_alive = |sim: &Sim| {
        running(sim).into_iter().all(|i| {
            sim.core(i)
                .is_some_and(|c| c.count_in_state(MemberState::Alive) == expect)
        })
    };
    let mut converged = None;
    while sim.now() - t0 < PHASE_LIMIT && !rss_over(n, "join batch") {
        if all_alive(sim) {
            converged = Some((sim.now() - t0).as_secs_f64());
            break;
        }
        sim.run_for(STEP, |_| {});
    }
    (k, converged, watch.stop(sim))
}

/// Crashes `count` running nodes one after another; returns (first suspicion, DOWN at every
/// survivor) in seconds, and how many were DOWN everywhere within the limit.
fn crashes(sim: &mut Sim, rng: &mut StdRng, n: usize, count: usize) -> (Vec<f64>, Vec<f64>, Speed) {
    let (mut first, mut all) = (Vec::new(), Vec::new());
    let watch = Stopwatch::start(sim);
    for k in 0..count {
        let alive = running(sim);
        let victim = alive[rng.random_range(0..alive.len())];
        let victim_name = sim.name(victim).to_owned();
        sim.crash(victim);
        let t0 = sim.now();
        let mut down = vec![false; sim.len()];
        let mut missing = alive.len() - 1;
        let mut suspected = None;
        while sim.now() - t0 < PHASE_LIMIT && missing > 0 && !rss_over(n, "crashes") {
            sim.run_for(STEP, |e| {
                let Event::Changed { member, .. } = &e.event else {
                    return;
                };
                if member.name != victim_name {
                    return;
                }
                if member.state == MemberState::Suspected {
                    suspected.get_or_insert(e.at);
                }
                if member.state == MemberState::Down && !down[e.node] {
                    down[e.node] = true;
                    missing -= 1;
                }
            });
        }
        if let Some(s) = suspected {
            first.push((s - t0).as_secs_f64());
        }
        if missing == 0 {
            all.push((sim.now() - t0).as_secs_f64());
        }
        eprintln!(
            "N={n}: crash {}/{count}: suspected after {:?}, DOWN everywhere: {}",
            k + 1,
            suspected.map(|s| s - t0),
            if missing == 0 { "yes" } else { "no" }
        );
    }
    (first, all, watch.stop(sim))
}

/// `LEAVES` running nodes leave one after another; seconds until every other running node
/// lists each LEAVING.
fn leaves(sim: &mut Sim, rng: &mut StdRng, n: usize) -> (Vec<f64>, Speed) {
    let mut out = Vec::new();
    let watch = Stopwatch::start(sim);
    for _ in 0..LEAVES {
        let alive = running(sim);
        let leaver = alive[rng.random_range(0..alive.len())];
        let leaver_name = sim.name(leaver).to_owned();
        let mut missing = alive.len() - 1;
        let mut seen = vec![false; sim.len()];
        sim.leave(leaver);
        let t0 = sim.now();
        while sim.now() - t0 < PHASE_LIMIT && missing > 0 && !rss_over(n, "leaves") {
            sim.run_for(LEAVE_STEP, |e| {
                let Event::Changed { member, .. } = &e.event else {
                    return;
                };
                if member.name == leaver_name
                    && member.state == MemberState::Leaving
                    && !member.is_local
                    && !seen[e.node]
                {
                    seen[e.node] = true;
                    missing -= 1;
                }
            });
        }
        if missing == 0 {
            out.push((sim.now() - t0).as_secs_f64());
        }
        // Like a process that exits once its announcement is out.
        sim.crash(leaver);
    }
    (out, watch.stop(sim))
}

/// What a cut into two halves and its healing showed, on a fresh converged cluster.
struct HealRow {
    /// Seconds from the cut until each half held every member of the other DOWN.
    split: Option<f64>,
    /// Seconds from healing until every node held every node ALIVE again.
    merged: Option<f64>,
    speed: Speed,
}

/// Runs in `STEP`s until `done` holds (seconds it took) or `limit` passed (`None`).
fn time_until(
    sim: &mut Sim,
    n: usize,
    limit: Duration,
    done: impl Fn(&Sim) -> bool,
) -> Option<f64> {
    let t0 = sim.now();
    while sim.now() - t0 < limit && !rss_over(n, "partition") {
        if done(sim) {
            return Some((sim.now() - t0).as_secs_f64());
        }
        sim.run_for(STEP, |_| {});
    }
    None
}

/// Cuts a fresh converged cluster, every member of which has node 0 as its seed (the first
/// pod of a StatefulSet), into halves until each marks the other DOWN, heals the cut and times
/// the merge: no restart, only what the cores do by themselves (the seed refresh of the half
/// without node 0, push-pulls with DOWN members, refutations spread by gossip).
fn partition_heal(n: usize) -> HealRow {
    let (mut sim, _, _) = converged(SEED, n, NetConfig::default());
    for i in 0..n {
        sim.join(i, &[0]);
    }
    let watch = Stopwatch::start(&sim);
    let a: Vec<usize> = (0..n / 2).collect();
    let b: Vec<usize> = (n / 2..n).collect();
    sim.partition(&[&a, &b]);
    let split = time_until(&mut sim, n, PHASE_LIMIT, |s| {
        s.all_hold(&a, &b, MemberState::Down) && s.all_hold(&b, &a, MemberState::Down)
    });
    sim.heal();
    let everyone: Vec<usize> = (0..n).collect();
    // The cap: even without the seed refresh, a push-pull across the former cut comes within
    // 4 N-scaled push-pull intervals (every 4th tick picks a DOWN member).
    let interval = Config::default().push_pull_interval;
    let limit = push_pull_scale(interval, n) * 4 + Duration::from_secs(30);
    let merged = split.and_then(|_| {
        time_until(&mut sim, n, limit, |s| {
            s.all_hold(&everyone, &everyone, MemberState::Alive)
        })
    });
    HealRow {
        split,
        merged,
        speed: watch.stop(&sim),
    }
}

/// One loss run on a fresh converged cluster.
struct LossRow {
    loss: f64,
    false_downs: usize,
    suspicions: usize,
    /// Full-state exchanges completed: what costs the simulator most at large N.
    push_pulls: u64,
    datagrams: u64,
    covered: Duration,
    cut: Option<&'static str>,
    speed: Speed,
}

/// DOWN (and SUSPECTED) events about live nodes over `run` at `loss`, from a converged
/// cluster, cut short by the wall-clock cap or the RSS guard.
fn loss_run(n: usize, loss: f64, run: Duration, wall: Option<Duration>) -> LossRow {
    let (mut sim, _, _) = converged(LOSS_SEED, n, NetConfig::default());
    eprintln!(
        "N={n}: converged (VmRSS {} MB), running {} virtual s (wall cap {:?}) at {:.0}% loss",
        proc_status_kb("VmRSS:") / 1024,
        run.as_secs(),
        wall,
        loss * 100.0
    );
    sim.set_net(NetConfig {
        loss,
        ..NetConfig::default()
    });
    let (mut downs, mut suspicions) = (0, 0);
    let before = sim.stats().clone();
    let watch = Stopwatch::start(&sim);
    let t0 = sim.now();
    let mut cut = None;
    while sim.now() - t0 < run {
        if wall.is_some_and(|w| watch.wall.elapsed() >= w) {
            cut = Some("wall-clock cap");
            break;
        }
        if rss_over(n, "loss run") {
            cut = Some("RSS guard");
            break;
        }
        let chunk = LOSS_CHUNK.min(run - (sim.now() - t0));
        sim.run_for(chunk, |e| {
            if let Event::Changed { member, .. } = &e.event {
                match member.state {
                    MemberState::Down => downs += 1,
                    MemberState::Suspected => suspicions += 1,
                    _ => {}
                }
            }
        });
    }
    let after = sim.stats();
    eprintln!(
        "N={n}: loss run ends with VmRSS {} MB (peak so far {} MB)",
        proc_status_kb("VmRSS:") / 1024,
        proc_status_kb("VmHWM:") / 1024
    );
    LossRow {
        loss,
        false_downs: downs,
        suspicions,
        push_pulls: after.push_pulls - before.push_pulls,
        datagrams: after.datagrams_sent - before.datagrams_sent,
        covered: sim.now() - t0,
        cut,
        speed: watch.stop(&sim),
    }
}

fn run(n: usize) {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut total = Speed::default();
    eprintln!("N={n}: converged bootstrap");
    let (mut sim, per_entry, build) = converged(SEED, n, NetConfig::default());
    total.add(build);
    eprintln!(
        "N={n}: built in {:.1} wall s; RSS {} MB; steady state",
        build.wall.as_secs_f64(),
        proc_status_kb("VmRSS:") / 1024
    );
    let (msgs, bytes, steady_speed) = steady(&mut sim);
    total.add(steady_speed);
    eprintln!("N={n}: steady {}; crashes", steady_speed.show());
    // Crashes and leaves come before the join batch: a batch of joins fills every broadcast
    // queue past saturation, which brings each node's next push-pull forward (to within an
    // eighth of the interval), and that burst of N full-state exchanges would otherwise land
    // in the crash phase and swamp its simulator speed.
    let count = crash_count(n);
    let (mut first, mut all, crash_speed) = crashes(&mut sim, &mut rng, n, count);
    total.add(crash_speed);
    eprintln!("N={n}: crashes {}; leaves", crash_speed.show());
    let (mut left, leave_speed) = leaves(&mut sim, &mut rng, n);
    total.add(leave_speed);
    eprintln!("N={n}: leaves {}; join batch", leave_speed.show());
    let (joiners, joined, join_speed) = join_batch(&mut sim, &mut rng, n);
    total.add(join_speed);
    eprintln!(
        "N={n}: join batch of {joiners}: {joined:?} s; {}",
        join_speed.show()
    );
    // Free the cluster before building the next one.
    drop(sim);
    eprintln!("N={n}: partition into halves and heal");
    let heal = partition_heal(n);
    total.add(heal.speed);
    eprintln!(
        "N={n}: split {:?} s, merged {:?} s after healing; {}",
        heal.split,
        heal.merged,
        heal.speed.show()
    );
    let run = loss_secs();
    let wall = loss_wall(n);
    let mut loss_rows = Vec::new();
    for loss in loss_rates() {
        let row = loss_run(n, loss, run, wall);
        eprintln!(
            "N={n}: {:.0}% loss: {} false DOWN over {:.0} virtual s; {}",
            loss * 100.0,
            row.false_downs,
            row.covered.as_secs_f64(),
            row.speed.show()
        );
        total.add(row.speed);
        loss_rows.push(row);
    }
    let fmt = |x: Option<f64>| x.map_or("n/a".to_owned(), |v| format!("{v:.2} s"));
    let pct = |v: &mut Vec<f64>| {
        format!(
            "p50 {:.2} s  p99 {:.2} s",
            percentile(v, 0.5),
            percentile(v, 0.99)
        )
    };
    println!("\n== N = {n} ==");
    println!(
        "{:<46} {} ({joiners} joining at once through random members)",
        "join batch → ALIVE everywhere",
        fmt(joined)
    );
    println!(
        "{:<46} {}  ({} of {count} suspected)",
        "crash → first suspicion",
        pct(&mut first),
        first.len()
    );
    println!(
        "{:<46} {}  ({} of {count} DOWN everywhere)",
        "crash → DOWN at every survivor",
        pct(&mut all),
        all.len()
    );
    println!(
        "{:<46} {}  ({} of {LEAVES} seen everywhere)",
        "leave → LEAVING at every member",
        pct(&mut left),
        left.len()
    );
    println!(
        "{:<46} {msgs:.2} datagrams, {bytes:.1} bytes",
        "steady traffic per node per second"
    );
    println!(
        "{:<46} {} (each half held the other DOWN after {})",
        "cut in halves, healed → ALIVE everywhere",
        fmt(heal.merged),
        fmt(heal.split)
    );
    for row in &loss_rows {
        let cut = row
            .cut
            .map_or(String::new(), |c| format!(", cut by the {c}"));
        println!(
            "{:<46} {} ({} suspicions, {} push-pulls, {} datagrams; {:.0} virtual s{cut})",
            format!("false DOWN events, {:.0}% loss", row.loss * 100.0),
            row.false_downs,
            row.suspicions,
            row.push_pulls,
            row.datagrams,
            row.covered.as_secs_f64()
        );
    }
    println!(
        "{:<46} {:.0} B (RSS growth over the bootstrap / N²)",
        "memory per member entry", per_entry
    );
    println!(
        "{:<46} {} MB (VmHWM)",
        "peak RSS of the bench process",
        proc_status_kb("VmHWM:") / 1024
    );
    println!(
        "{:<46} {:.1} wall s",
        "converged bootstrap",
        build.wall.as_secs_f64()
    );
    println!("{:<46} {}", "simulator speed, steady", steady_speed.show());
    println!(
        "{:<46} {}",
        "simulator speed, join batch",
        join_speed.show()
    );
    println!("{:<46} {}", "simulator speed, crashes", crash_speed.show());
    println!("{:<46} {}", "simulator speed, leaves", leave_speed.show());
    println!(
        "{:<46} {}",
        "simulator speed, cut and heal",
        heal.speed.show()
    );
    for row in &loss_rows {
        println!(
            "{:<46} {}",
            format!("simulator speed, {:.0}% loss run", row.loss * 100.0),
            row.speed.show()
        );
    }
    println!(
        "{:<46} {}",
        "simulator speed, whole size (bootstraps too)",
        total.show()
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
