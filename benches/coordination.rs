//! Leader and owner views in the simulator: `cargo bench --bench coordination [-- N...]`
//! (default 5 100 1000). For each size, on converged clusters of the LAN profile at 0 % loss:
//!
//! - leader crash: the leader (the lowest name) crashes; measured are how long two live nodes
//!   name different leaders (summed over the run, until every survivor names one leader for
//!   `SETTLED`), and how long until every survivor names the new one. One fresh cluster per
//!   trial (seed `SEED + trial`), p50/p99 over the trials;
//! - partition: a cut of 60 % / 40 %; measured are how long both sides hold a node that sees a
//!   quorum (the minority loses it once it suspects the majority), and whether both ever do
//!   again during the cut (which outlasts the retention up to N = 100), counted against the
//!   members not yet reaped and against `--expect-nodes N`;
//! - owner moves: the owners of `KEYS` keys before the crash and, once every survivor holds the
//!   dead leader DOWN, at three survivors: keys moved, keys that moved though their owner
//!   lives (must be 0), survivors disagreeing (must be 0) and the largest share one survivor
//!   took of the moved keys.
//!
//! Views are recomputed with `meshd::coordination` from a node's member table after each of
//! its membership events, sampled every `STEP` of virtual time (times are late by up to one
//! step). Knob: `MESHD_BENCH_TRIALS` (default 20, 10 from N = 1,000).

use std::collections::BTreeMap;
use std::time::Duration;

use meshd::coordination::{self, LeaderView};
use meshd::sim::{NetConfig, Sim};
use meshd::swim::{Config, MemberState};

/// Seed of the first trial.
const SEED: u64 = 1_000;
/// Sampling step of virtual time.
const STEP: Duration = Duration::from_millis(20);
/// Every survivor naming one leader for this long ends a trial.
const SETTLED: Duration = Duration::from_secs(5);
/// Longest a trial or a cut runs.
const LIMIT: Duration = Duration::from_secs(300);
/// How long the cluster stays cut from N = `LONG_CUT_MAX_N` on (a minute of wall time).
const SHORT_CUT: Duration = Duration::from_secs(120);
/// Up to this N the cut outlasts the retention, so the other side's DOWN members are reaped
/// and a count against the members not yet reaped shows what it then does.
const LONG_CUT_MAX_N: usize = 100;

/// How long the cluster stays cut at size `n`.
fn cut_length(n: usize) -> Duration {
    if n <= LONG_CUT_MAX_N {
        Config::default().retention + Duration::from_secs(60)
    } else {
        SHORT_CUT
    }
}
/// Quiet time before the crash or the cut (timers in their random phases).
const WARM_UP: Duration = Duration::from_secs(5);
/// Keys whose owners are compared.
const KEYS: usize = 10_000;

fn name(i: usize) -> String {
    format!("node-{i:05}")
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// A converged cluster of `n` on a fresh simulator.
fn cluster(seed: u64, n: usize) -> Sim {
    let mut sim = Sim::new(seed, Config::default(), NetConfig::default());
    // The incarnation check keeps N² entries: too big at N = 1,000.
    sim.set_check_incarnations(false);
    sim.add_converged(&(0..n).map(name).collect::<Vec<_>>());
    sim
}

/// The leader view of node `i`, `None` when it is not running.
fn view(sim: &Sim, i: usize, expect: Option<usize>) -> Option<LeaderView> {
    let members = sim.core(i)?.members();
    Some(coordination::leader(members.iter(), expect))
}

/// Every node's leader view, kept up to date after membership events.
struct Views {
    views: Vec<Option<LeaderView>>,
    expect: Option<usize>,
}

impl Views {
    fn new(sim: &Sim, expect: Option<usize>) -> Self {
        let views = (0..sim.len()).map(|i| view(sim, i, expect)).collect();
        Views { views, expect }
    }

    /// Runs one step and recomputes the views of the nodes that saw a membership event.
    fn step(&mut self, sim: &mut Sim) {
        let mut touched = vec![false; sim.len()];
        sim.run_for(STEP, |e| touched[e.node] = true);
        for (i, changed) in touched.into_iter().enumerate() {
            if changed || !sim.is_running(i) {
                self.views[i] = view(sim, i, self.expect);
            }
        }
    }

    /// The distinct leaders named by running nodes.
    fn leaders(&self) -> BTreeMap<Option<&str>, usize> {
        let mut named = BTreeMap::new();
        for v in self.views.iter().flatten() {
            *named.entry(v.leader.as_deref()).or_insert(0) += 1;
        }
        named
    }

    /// Running nodes among `side` that see a quorum.
    fn with_quorum(&self, side: &[usize]) -> usize {
        side.iter()
            .filter(|&&i| self.views[i].as_ref().is_some_and(|v| v.has_quorum))
            .count()
    }
}

/// One leader crash: (seconds of disagreement, seconds until every survivor names the new
/// leader), and the owner figures when asked.
struct CrashTrial {
    disagreement: f64,
    failover: Option<f64>,
    owners: Option<OwnerMoves>,
}

/// What happened to the owners of `KEYS` keys when the leader crashed.
struct OwnerMoves {
    moved: usize,
    moved_from_live: usize,
    disagreeing: usize,
    largest_share: f64,
    survivors_checked: usize,
}

fn crash_trial(seed: u64, n: usize, measure_owners: bool) -> CrashTrial {
    let mut sim = cluster(seed, n);
    sim.run_for(WARM_UP, |_| {});
    let mut views = Views::new(&sim, None);
    let leader = views.views[1]
        .as_ref()
        .and_then(|v| v.leader.clone())
        .unwrap_or_default();
    let victim = (0..n).find(|&i| sim.name(i) == leader).unwrap_or(0);
    let keys: Vec<String> = (0..KEYS).map(|k| format!("job-{k}")).collect();
    let before = owners_at(&sim, 1, &keys);
    sim.crash(victim);
    let t0 = sim.now();
    let (mut disagreement, mut failover, mut agreed_since) = (Duration::ZERO, None, None);
    while sim.now() - t0 < LIMIT {
        views.step(&mut sim);
        let named = views.leaders();
        let one_new_leader = named.len() == 1 && !named.contains_key(&Some(leader.as_str()));
        if named.len() > 1 {
            disagreement += STEP;
            agreed_since = None;
        } else if one_new_leader {
            failover.get_or_insert(sim.now() - t0);
            let since = *agreed_since.get_or_insert(sim.now());
            if sim.now() - since >= SETTLED {
                break;
            }
        }
    }
    let owners = measure_owners.then(|| {
        let survivors: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
        wait_down_everywhere(&mut sim, &survivors, &leader);
        owner_moves(&sim, &keys, &before, &leader, &survivors)
    });
    CrashTrial {
        disagreement: disagreement.as_secs_f64(),
        failover: failover.map(|d| d.as_secs_f64()),
        owners,
    }
}

/// Runs until every node of `survivors` holds `dead` DOWN (or `LIMIT`).
fn wait_down_everywhere(sim: &mut Sim, survivors: &[usize], dead: &str) {
    let t0 = sim.now();
    while sim.now() - t0 < LIMIT {
        let down = |i: &usize| {
            sim.view(*i, dead)
                .is_none_or(|m| m.state == MemberState::Down)
        };
        if survivors.iter().all(down) {
            return;
        }
        sim.run_for(Duration::from_millis(500), |_| {});
    }
}

/// The owner of each key in node `i`'s view.
fn owners_at(sim: &Sim, i: usize, keys: &[String]) -> Vec<String> {
    let members = sim.core(i).map(|c| c.members()).unwrap_or_default();
    keys.iter()
        .map(|k| coordination::owner(k, &members).unwrap_or("").to_string())
        .collect()
}

fn owner_moves(
    sim: &Sim,
    keys: &[String],
    before: &[String],
    dead: &str,
    survivors: &[usize],
) -> OwnerMoves {
    let picks = [0, survivors.len() / 2, survivors.len() - 1].map(|k| survivors[k]);
    let views: Vec<Vec<String>> = picks.iter().map(|&i| owners_at(sim, i, keys)).collect();
    let after = &views[0];
    let mut receivers: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut moved, mut moved_from_live) = (0, 0);
    for (was, now) in before.iter().zip(after) {
        if was != now {
            moved += 1;
            if was != dead {
                moved_from_live += 1;
            }
            *receivers.entry(now.as_str()).or_insert(0) += 1;
        }
    }
    let disagreeing = (0..keys.len())
        .filter(|&k| views.iter().any(|v| v[k] != after[k]))
        .count();
    let largest = receivers.values().copied().max().unwrap_or(0);
    OwnerMoves {
        moved,
        moved_from_live,
        disagreeing,
        largest_share: largest as f64 / moved.max(1) as f64,
        survivors_checked: picks.len(),
    }
}

/// What one 60/40 cut showed.
struct Cut {
    /// Seconds after the cut until no minority node saw a quorum (`None`: never).
    both_until: Option<f64>,
    /// Seconds both sides held a node with a quorum again after that.
    again: f64,
    /// When that first happened, seconds after the cut.
    again_from: Option<f64>,
}

fn cut(seed: u64, n: usize, expect: Option<usize>) -> Cut {
    let mut sim = cluster(seed, n);
    sim.run_for(WARM_UP, |_| {});
    let split = (n * 3).div_ceil(5);
    let majority: Vec<usize> = (0..split).collect();
    let minority: Vec<usize> = (split..n).collect();
    sim.partition(&[&majority, &minority]);
    let mut views = Views::new(&sim, expect);
    let t0 = sim.now();
    let mut result = Cut {
        both_until: None,
        again: 0.0,
        again_from: None,
    };
    while sim.now() - t0 < cut_length(n) {
        views.step(&mut sim);
        let both = views.with_quorum(&majority) > 0 && views.with_quorum(&minority) > 0;
        let at = (sim.now() - t0).as_secs_f64();
        match (result.both_until, both) {
            (None, false) => result.both_until = Some(at),
            (Some(_), true) => {
                result.again += STEP.as_secs_f64();
                result.again_from.get_or_insert(at);
            }
            _ => {}
        }
    }
    result
}

fn trials(n: usize) -> u64 {
    std::env::var("MESHD_BENCH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if n >= 1000 { 10 } else { 20 })
}

/// Runs every measurement at size `n`; returns its table row and its notes.
fn run(n: usize) -> (String, Vec<String>) {
    let count = trials(n);
    let (mut disagreement, mut failover, mut owners) = (Vec::new(), Vec::new(), None);
    for trial in 0..count {
        let t = crash_trial(SEED + trial, n, trial == 0 && n > 5);
        eprintln!(
            "N={n}: leader crash {}/{count}: disagreement {:.2} s, failover {:?} s",
            trial + 1,
            t.disagreement,
            t.failover
        );
        disagreement.push(t.disagreement);
        failover.extend(t.failover);
        owners = owners.or(t.owners);
    }
    let unsettled = count as usize - failover.len();
    let row = format!(
        "| {n} | {count} | {:.2} / {:.2} | {:.2} / {:.2} | {unsettled} |",
        percentile(&mut disagreement, 0.5),
        percentile(&mut disagreement, 0.99),
        percentile(&mut failover, 0.5),
        percentile(&mut failover, 0.99),
    );
    let mut notes = Vec::new();
    for expect in [None, Some(n)] {
        let c = cut(SEED, n, expect);
        let lost = c
            .both_until
            .map_or("the whole cut".into(), |s| format!("{s:.2} s"));
        let counted = expect.map_or("members not reaped".into(), |e| {
            format!("--expect-nodes {e}")
        });
        let again = match c.again_from {
            None => "never again".to_string(),
            Some(from) => format!("again for {:.1} s from {from:.1} s on", c.again),
        };
        notes.push(format!(
            "N={n}, {:?} cut 60/40, quorum of {counted}: both sides saw a quorum for the first {lost}, then {again}",
            cut_length(n)
        ));
    }
    if let Some(o) = owners {
        notes.push(format!(
            "N={n}: owners of {KEYS} keys after the leader's crash: {} moved ({:.2} %, 1/N = {:.2} %), {} moved though their owner lives, {} differ among {} survivors, largest share of the moved keys one survivor took: {:.1} % (1/(N-1) = {:.1} %)",
            o.moved,
            100.0 * o.moved as f64 / KEYS as f64,
            100.0 / n as f64,
            o.moved_from_live,
            o.disagreeing,
            o.survivors_checked,
            100.0 * o.largest_share,
            100.0 / (n - 1) as f64,
        ));
    }
    (row, notes)
}

fn main() {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![5, 100, 1000];
    }
    let (mut rows, mut notes) = (Vec::new(), Vec::new());
    for n in sizes {
        let (row, more) = run(n.max(3));
        rows.push(row);
        notes.extend(more);
    }
    println!("Leader crash (LAN profile, 0 % loss), seconds:\n");
    println!("| N | trials | two live nodes name different leaders p50 / p99 | crash → every survivor names the new leader p50 / p99 | not settled within {LIMIT:?} |");
    println!("|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!();
    for note in notes {
        println!("- {note}");
    }
}
