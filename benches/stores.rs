//! Replicated stores in the simulator: `cargo bench --bench stores [-- N...]` (default 100
//! 1000; `MESHD_BENCH_N=100,1000,10000` for the largest). For each size and loss rate (0, 5,
//! 10 %; `MESHD_BENCH_LOSS`), on a fresh converged cluster whose members all have node 0 as
//! their seed:
//!
//! - writes: `MESHD_BENCH_WRITES` (200; 40 from N = 5,000) writes of fresh `lww` keys at
//!   random nodes, 50 a second; for each, how long until every running node holds it (p50,
//!   p99, and how many were everywhere within 1 s), and the bytes every node sent per write
//!   (all simulated traffic during the writes, minus a quiet window of the same length,
//!   divided by writes and nodes);
//! - anti-entropy after a heal: the cluster is cut in two, D keys (10, 100, 1,000) are
//!   written on one side, the cut heals (halves; `MESHD_BENCH_CUT=5` cuts 5 % of the nodes
//!   from the rest and writes there: each node suspects every node across the cut, so a cut
//!   costs memory in proportion to the pairs it separates); the time until every replica is
//!   equal and the bytes of the anti-entropy exchanges (`meshd_store_sync_bytes`, both ends halved) against the
//!   bytes that differ (each key's size times the nodes that lack it at the heal). From
//!   N = 5,000 only when `MESHD_BENCH_DIFFERING` names the D values (`10` for one small heal).
//!   `MESHD_BENCH_WRITES=0` skips the write phases.
//!
//! Every run is seeded and reproducible. Progress goes to stderr, the table to stdout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use meshd::sim::{NetConfig, Sim};
use meshd::store::{Op, StoreConfig};
use meshd::swim::Config;

const SEED: u64 = 77;
/// Writes per run below `BIG_N`; `MESHD_BENCH_WRITES` overrides.
const WRITES: usize = 200;
/// Writes per run from `BIG_N` on: each one reaches 10,000 nodes.
const WRITES_BIG: usize = 40;
const BIG_N: usize = 5000;
/// Time between two writes (50 a second, cluster-wide).
const WRITE_EVERY: Duration = Duration::from_millis(20);
/// Sampling step: a measured time is late by up to one step.
const STEP: Duration = Duration::from_millis(10);
/// Longest wait for writes or a heal to settle.
const SETTLE: Duration = Duration::from_secs(120);
/// Keys written on one side of a cut.
const DIFFERING: [usize; 3] = [10, 100, 1000];

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn cluster(seed: u64, n: usize, loss: f64) -> Sim {
    let net = NetConfig {
        loss,
        ..NetConfig::default()
    };
    let mut sim = Sim::new(seed, Config::default(), net);
    sim.set_check_incarnations(false);
    sim.enable_stores(StoreConfig::default());
    let names: Vec<String> = (0..n).map(|i| format!("n{i:05}")).collect();
    let nodes = sim.add_converged(&names);
    for i in nodes {
        sim.join(i, &[0]);
    }
    sim.run_for(Duration::from_secs(2), |_| {});
    sim.take_store_changes();
    let (rss, peak) = memory_mib();
    eprintln!("N={n}: cluster up, {rss} MiB resident ({peak} MiB peak)");
    sim
}

/// This process's resident and peak memory in MiB, for the progress lines (Linux; 0 elsewhere).
fn memory_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// What the write phase showed.
struct WriteRow {
    n: usize,
    loss: f64,
    writes: usize,
    p50: f64,
    p99: f64,
    within_1s: usize,
    everywhere: usize,
    bytes_per_write_per_node: f64,
    wall: f64,
}

fn write_phase(n: usize, loss: f64, writes: usize) -> WriteRow {
    let started = Instant::now();
    let mut sim = cluster(SEED, n, loss);
    let mut rng = StdRng::seed_from_u64(SEED ^ n as u64);
    // A quiet window of the same length first: the background SWIM traffic to subtract.
    let window = WRITE_EVERY * writes as u32 + Duration::from_secs(5);
    let before = sim.stats().bytes_sent;
    sim.run_for(window, |_| {});
    let quiet = sim.stats().bytes_sent - before;
    sim.take_store_changes();
    let t0 = sim.now();
    let before = sim.stats().bytes_sent;
    let mut written_at: HashMap<String, Duration> = HashMap::new();
    for w in 0..writes {
        let at = rng.random_range(0..n);
        let key = format!("k{w}");
        sim.write(at, "bench", &key, Op::Put(format!("{w}").into_bytes()))
            .expect("write");
        written_at.insert(key, sim.now());
        sim.run_for(WRITE_EVERY, |_| {});
    }
    let mut seen: HashMap<String, (usize, Duration)> = HashMap::new();
    let deadline = sim.now() + SETTLE;
    let mut done = 0;
    while sim.now() < deadline && done < writes {
        sim.run_for(STEP, |_| {});
        for c in sim.take_store_changes() {
            let entry = seen.entry(c.change.key).or_insert((0, Duration::ZERO));
            entry.0 += 1;
            entry.1 = entry.1.max(c.at);
        }
        done = seen.values().filter(|(count, _)| *count >= n).count();
        if sim.now() - t0 >= window && done == writes {
            break;
        }
    }
    // Bytes over the same length as the quiet window, from the first write.
    let elapsed = sim.now() - t0;
    if elapsed < window {
        sim.run_for(window - elapsed, |_| {});
    }
    let busy = sim.stats().bytes_sent - before;
    let mut delays: Vec<f64> = written_at
        .iter()
        .filter_map(|(key, at)| {
            let (count, last) = seen.get(key)?;
            (*count >= n).then(|| (*last - *at).as_secs_f64())
        })
        .collect();
    let everywhere = delays.len();
    let within_1s = delays.iter().filter(|d| **d <= 1.0).count();
    WriteRow {
        n,
        loss,
        writes,
        p50: percentile(&mut delays, 0.5),
        p99: percentile(&mut delays, 0.99),
        within_1s,
        everywhere,
        bytes_per_write_per_node: busy.saturating_sub(quiet) as f64 / writes as f64 / n as f64,
        wall: started.elapsed().as_secs_f64(),
    }
}

/// What a heal after writes on one side showed.
struct HealRow {
    n: usize,
    differing: usize,
    settled: Option<f64>,
    sync_bytes: f64,
    differing_bytes: f64,
}

fn sync_bytes(sim: &Sim) -> u64 {
    (0..sim.len())
        .filter_map(|i| sim.stores(i).map(|s| s.stats().sync_bytes))
        .sum()
}

fn all_equal(sim: &Sim) -> bool {
    let roots = |i: usize| sim.stores(i).map(|s| s.summaries());
    let first = roots(0);
    (1..sim.len()).all(|i| roots(i) == first)
}

fn heal_phase(n: usize, differing: usize, cut_percent: usize) -> HealRow {
    let mut sim = cluster(SEED + differing as u64, n, 0.0);
    // Both sides keep at least one node (none is left for a one-node cluster's second side).
    let cut = (n * cut_percent / 100).max(1).min(n.saturating_sub(1));
    let a: Vec<usize> = (0..cut).collect();
    let b: Vec<usize> = (cut..n).collect();
    sim.partition(&[&a, &b]);
    let mut entry_bytes = 0usize;
    for k in 0..differing {
        let key = format!("d{k}");
        sim.write(
            a[k % a.len()],
            "heal",
            &key,
            Op::Put(format!("{k}").into_bytes()),
        )
        .expect("write");
        sim.run_for(Duration::from_millis(2), |_| {});
    }
    // Give the writes time to spread on side A (gossip, A's own anti-entropy) before the heal.
    sim.run_for(Duration::from_secs(15), |_| {});
    // The bytes that differ: every key a node lacks at the heal (side B lacks them all; side A
    // may still lack a few), at its size where it is held.
    for k in 0..differing {
        let key = format!("d{k}");
        let size = (0..n).find_map(|i| sim.stores(i)?.entry_bytes("heal", &key));
        let lacking = (0..n)
            .filter(|&i| {
                sim.stores(i)
                    .is_some_and(|s| s.entry_bytes("heal", &key).is_none())
            })
            .count();
        entry_bytes += size.unwrap_or(0) * lacking;
    }
    let before = sync_bytes(&sim);
    sim.heal();
    let healed = sim.now();
    let mut settled = None;
    while sim.now() - healed < SETTLE {
        sim.run_for(Duration::from_millis(100), |_| {});
        if all_equal(&sim) {
            settled = Some((sim.now() - healed).as_secs_f64());
            break;
        }
    }
    // Anti-entropy keeps going after the last repair (roots only); count until settled.
    let exchanged = (sync_bytes(&sim) - before) as f64 / 2.0;
    HealRow {
        n,
        differing,
        settled,
        sync_bytes: exchanged,
        differing_bytes: entry_bytes as f64,
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if args.is_empty() {
        env_list("MESHD_BENCH_N", &[100, 1000])
    } else {
        args
    };
    let losses = env_list("MESHD_BENCH_LOSS", &[0, 5, 10]);
    let cut_percent = env_list("MESHD_BENCH_CUT", &[50])[0].clamp(1, 99);
    let mut writes_rows = Vec::new();
    let mut heal_rows = Vec::new();
    for &n in &sizes {
        let writes = env_list(
            "MESHD_BENCH_WRITES",
            &[if n >= BIG_N { WRITES_BIG } else { WRITES }],
        )[0];
        let losses = if writes == 0 { &[][..] } else { &losses[..] };
        for &loss in losses {
            eprintln!("N={n}: {writes} writes at {loss} % loss");
            let row = write_phase(n, loss as f64 / 100.0, writes);
            eprintln!(
                "N={n} loss {loss} %: p50 {:.3} s p99 {:.3} s, {} of {} everywhere ({} within 1 s), \
                 {:.0} B per write per node ({:.0} wall s, {} MiB peak)",
                row.p50, row.p99, row.everywhere, row.writes, row.within_1s,
                row.bytes_per_write_per_node, row.wall, memory_mib().1
            );
            writes_rows.push(row);
        }
        let differing = env_list(
            "MESHD_BENCH_DIFFERING",
            if n < BIG_N { &DIFFERING } else { &[] },
        );
        for d in differing {
            eprintln!("N={n}: cut {cut_percent} % from the rest, {d} keys written there, heal");
            let row = heal_phase(n, d, cut_percent);
            eprintln!(
                "N={n} D={d}: settled {:?} s after healing; {:.0} B exchanged for {:.0} B differing \
                 ({} MiB peak)",
                row.settled, row.sync_bytes, row.differing_bytes, memory_mib().1
            );
            heal_rows.push(row);
        }
    }
    println!("\n| N | loss | writes | write → visible everywhere p50 / p99 | everywhere within 1 s | bytes per write per node |");
    println!("|---|---|---|---|---|---|");
    for r in &writes_rows {
        println!(
            "| {} | {:.0} % | {} | {:.3} / {:.3} s | {} of {} | {:.0} B |",
            r.n,
            r.loss * 100.0,
            r.writes,
            r.p50,
            r.p99,
            r.within_1s,
            r.writes,
            r.bytes_per_write_per_node
        );
    }
    println!(
        "\nCut: {cut_percent} % of the nodes from the rest; the keys were written on that side."
    );
    println!("\n| N | keys differing after the cut | one state after healing | anti-entropy bytes | bytes that differ | ratio |");
    println!("|---|---|---|---|---|---|");
    for r in &heal_rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.2} |",
            r.n,
            r.differing,
            r.settled
                .map_or("not within 120 s".into(), |s| format!("{s:.1} s")),
            r.sync_bytes,
            r.differing_bytes,
            r.sync_bytes / r.differing_bytes
        );
    }
}
