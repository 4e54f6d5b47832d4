//! The replicated stores in the deterministic simulator: writes at random nodes of a 100-node
//! cluster reach every node; loss, a partition with writes on both sides, and a crash with a
//! restart all end with every live replica equal; the same seed gives the same run.

use std::collections::BTreeMap;
use std::time::Duration;

use meshd::sim::{NetConfig, Sim, SimEvent};
use meshd::store::{EntryView, Op, StoreConfig};
use meshd::swim::{Config, Event, MemberState};

const N: usize = 100;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A converged cluster of `n` with stores, every member seeded with node 0.
fn cluster(seed: u64, n: usize, net: NetConfig) -> Sim {
    let mut sim = Sim::new(seed, Config::default(), net);
    sim.enable_stores(StoreConfig::default());
    let names: Vec<String> = (0..n).map(|i| format!("node-{i:03}")).collect();
    let nodes = sim.add_converged(&names);
    for i in nodes {
        sim.join(i, &[0]);
    }
    sim
}

/// Every store's entries at node `i`.
fn content(sim: &Sim, i: usize) -> BTreeMap<String, Vec<EntryView>> {
    let Some(stores) = sim.stores(i) else {
        return BTreeMap::new();
    };
    stores
        .summaries()
        .into_iter()
        .filter_map(|s| Some((s.name.clone(), stores.entries(&s.name)?.1)))
        .collect()
}

/// True when every running node holds what node `first` holds.
fn all_equal(sim: &Sim) -> bool {
    let running: Vec<usize> = (0..sim.len()).filter(|&i| sim.is_running(i)).collect();
    let first = content(sim, running[0]);
    running.iter().all(|&i| content(sim, i) == first)
}

/// A write of a kind chosen by `k` at node `at`: an lww put, a counter increment, a set add.
fn write(sim: &mut Sim, at: usize, k: usize) {
    let (store, key, op) = match k % 3 {
        0 => (
            "workers",
            format!("w{}", k % 40),
            Op::Put(format!("{{\"n\":{k}}}").into_bytes()),
        ),
        1 => ("limits", format!("t{}", k % 10), Op::Incr(k as i64 % 7 - 3)),
        _ => (
            "pools",
            format!("p{}", k % 5),
            Op::Add(format!("gw-{}", k % 17)),
        ),
    };
    sim.write(at, store, &key, op)
        .expect("write within the bounds");
}

/// Runs until every replica is equal, at most `limit`; returns how long it took.
fn until_equal(sim: &mut Sim, limit: Duration) -> Option<Duration> {
    let start = sim.now();
    while sim.now() - start < limit {
        if all_equal(sim) {
            return Some(sim.now() - start);
        }
        sim.run_for(secs(0.1), |_| {});
    }
    all_equal(sim).then(|| sim.now() - start)
}

#[test]
fn writes_at_random_nodes_reach_every_node_within_a_second() {
    let mut sim = cluster(1, N, NetConfig::default());
    sim.run_for(secs(2.0), |_| {});
    for k in 0..200 {
        write(&mut sim, (k * 37) % N, k);
        sim.run_for(secs(0.005), |_| {});
    }
    let took = until_equal(&mut sim, secs(30.0)).expect("replicas equal");
    println!("N={N}: 200 writes at random nodes, every replica equal {took:?} after the last");
    assert!(took <= secs(1.0), "{took:?}");
    let (_, entries) = sim
        .stores(5)
        .and_then(|s| s.entries("limits"))
        .expect("limits");
    assert_eq!(entries.len(), 10);
}

#[test]
fn ten_percent_loss_still_converges_by_anti_entropy() {
    let net = NetConfig {
        loss: 0.1,
        ..NetConfig::default()
    };
    let mut sim = cluster(2, N, net);
    sim.run_for(secs(2.0), |_| {});
    for k in 0..300 {
        write(&mut sim, (k * 13) % N, k);
        sim.run_for(secs(0.01), |_| {});
    }
    let took = until_equal(&mut sim, secs(60.0)).expect("replicas equal despite loss");
    println!("N={N}, 10 % loss: 300 writes, every replica equal {took:?} after the last");
}

#[test]
fn writes_on_both_sides_of_a_partition_merge_after_healing() {
    let mut sim = cluster(3, N, NetConfig::default());
    sim.run_for(secs(2.0), |_| {});
    let a: Vec<usize> = (0..N / 2).collect();
    let b: Vec<usize> = (N / 2..N).collect();
    sim.partition(&[&a, &b]);
    for k in 0..100 {
        // Both halves write the same keys: the merge must pick the same winners everywhere.
        let at = if k % 2 == 0 {
            a[k % a.len()]
        } else {
            b[k % b.len()]
        };
        write(&mut sim, at, k);
        sim.run_for(secs(0.05), |_| {});
    }
    sim.run_for(secs(30.0), |_| {});
    assert!(!all_equal(&sim), "the halves differ while cut");
    sim.heal();
    let healed = sim.now();
    let took = until_equal(&mut sim, secs(120.0)).expect("one state after healing");
    let members_alive = (0..N).all(|i| {
        (0..N).all(|j| {
            sim.view(i, sim.name(j))
                .is_some_and(|v| v.state == MemberState::Alive)
        })
    });
    println!(
        "N={N}: writes on both sides of a cut; one state {took:?} after healing (membership \
         merged too: {members_alive})"
    );
    assert!(sim.now() >= healed);
}

#[test]
fn a_restarted_node_gets_the_stores_back() {
    let mut sim = cluster(4, 20, NetConfig::default());
    sim.run_for(secs(2.0), |_| {});
    for k in 0..60 {
        write(&mut sim, k % 20, k);
    }
    assert!(until_equal(&mut sim, secs(10.0)).is_some());
    sim.crash(7);
    for k in 60..90 {
        write(&mut sim, k % 5, k);
    }
    sim.run_for(secs(20.0), |_| {});
    sim.restart(7, false, 0);
    let took = until_equal(&mut sim, secs(60.0)).expect("the restarted node caught up");
    println!("a node restarted empty held every store again {took:?} after its restart");
}

#[test]
fn the_same_seed_gives_the_same_stores_run() {
    let run = |seed: u64| {
        let net = NetConfig {
            loss: 0.05,
            ..NetConfig::default()
        };
        let mut sim = cluster(seed, 20, net);
        for k in 0..40 {
            write(&mut sim, k % 20, k);
            sim.run_for(secs(0.02), |_| {});
        }
        sim.run_for(secs(15.0), |_| {});
        let changes: Vec<(Duration, usize, String)> = sim
            .take_store_changes()
            .into_iter()
            .map(|c| (c.at, c.node, c.change.key))
            .collect();
        (changes, content(&sim, 3))
    };
    let (a, b) = (run(9), run(9));
    assert!(!a.0.is_empty());
    assert_eq!(a, b, "a run is reproducible from its seed");
    assert_ne!(a.0, run(10).0, "and depends on it");
}

#[test]
fn writes_gossip_missed_arrive_through_the_roots_digest() {
    // Push-pull (which also compares the stores' roots) far beyond the test, so only the
    // periodic digest can find what gossip missed.
    let config = Config {
        push_pull_interval: secs(3_600.0),
        ..Config::default()
    };
    let mut sim = Sim::new(6, config, NetConfig::default());
    sim.enable_stores(StoreConfig::default());
    let names: Vec<String> = (0..20).map(|i| format!("node-{i:03}")).collect();
    for i in sim.add_converged(&names) {
        sim.join(i, &[0]);
    }
    sim.run_for(secs(2.0), |_| {});
    let deaf = 5;
    sim.set_inbound_loss(deaf, 1.0);
    for k in 0..6 {
        write(&mut sim, 0, k);
    }
    // Long enough for gossip to give up on the writes, short of a DOWN verdict (a member back
    // from DOWN would start an exchange of its own).
    let deaf_name = sim.name(deaf).to_owned();
    let mut held_down = false;
    let mut watch = |e: &SimEvent| {
        if let Event::Changed { member, .. } = &e.event {
            held_down |= member.name == deaf_name && member.state == MemberState::Down;
        }
    };
    sim.run_for(secs(2.0), &mut watch);
    sim.set_inbound_loss(deaf, 0.0);
    sim.run_for(secs(0.5), &mut watch);
    assert!(!held_down, "node {deaf} was held DOWN");
    assert!(
        content(&sim, deaf).is_empty() && !content(&sim, 0).is_empty(),
        "gossip should have missed node {deaf}"
    );
    let took = until_equal(&mut sim, secs(30.0)).expect("the digest found the difference");
    let digests: u64 = (0..sim.len())
        .filter_map(|i| sim.stores(i))
        .map(|s| s.stats().digests_sent)
        .sum();
    assert!(digests > 0);
    println!("what gossip missed reached node {deaf} {took:?} later ({digests} digests sent)");
}
