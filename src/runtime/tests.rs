//! End-to-end runtime tests: real cores on 127.0.0.1, joined over QUIC, gossiping over UDP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Command, Runtime, RuntimeConfig, Seed, Snapshot, TrustConfig};
use crate::runtime::trust::{KeyChange, KeyRef};
use crate::seal::{Key, Keyring};
use crate::swim::{self, Identity, MemberState, NodeMeta};

/// Upper bound on any wait in these tests.
const DEADLINE: Duration = Duration::from_secs(15);

/// Fast timers so tests converge quickly.
fn fast_swim() -> swim::Config {
    swim::Config {
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(100),
        gossip_interval: Duration::from_millis(50),
        seed_refresh_interval: Duration::ZERO,
        ..swim::Config::default()
    }
}

fn config(name: &str, port: u16, seeds: &[SocketAddr]) -> RuntimeConfig {
    let bind = SocketAddr::from(([127, 0, 0, 1], port));
    RuntimeConfig {
        identity: Identity {
            name: name.into(),
            addr: bind,
            meta: NodeMeta::default(),
        },
        bind,
        swim: fast_swim(),
        seeds: seeds
            .iter()
            .map(|a| Seed {
                host: a.ip().to_string(),
                port: a.port(),
            })
            .collect(),
        leave_timeout: Duration::from_secs(2),
        exchange_timeout: Duration::from_secs(2),
        trust: TrustConfig::default(),
        stores: crate::store::StoreConfig::default(),
        data_dir: None,
        expect_nodes: None,
    }
}

/// Polls snapshots until `check` holds, or fails after [`DEADLINE`].
async fn wait_for(
    rx: &mut watch::Receiver<Snapshot>,
    what: &str,
    check: impl Fn(&Snapshot) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if check(&rx.borrow_and_update()) {
            return;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                if check(&rx.borrow()) {
                    return;
                }
                panic!("driver stopped before: {what}");
            }
            Err(_) => panic!(
                "timed out waiting for: {what}; last snapshot {:?}",
                rx.borrow()
            ),
        }
    }
}

fn state_of(snapshot: &Snapshot, name: &str) -> Option<MemberState> {
    snapshot
        .members
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.state)
}

fn all_alive(snapshot: &Snapshot, names: &[&str]) -> bool {
    names
        .iter()
        .all(|n| state_of(snapshot, n) == Some(MemberState::Alive))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_join_and_one_leaves_gracefully() {
    let a = Runtime::start(config("a", 0, &[])).await.expect("start a");
    let mut b = Runtime::start(config("b", 0, &[a.local_addr()]))
        .await
        .expect("start b");
    let (mut a_rx, mut b_rx) = (a.snapshots(), b.snapshots());
    wait_for(&mut a_rx, "a sees a and b ALIVE", |s| {
        all_alive(s, &["a", "b"])
    })
    .await;
    wait_for(&mut b_rx, "b sees a and b ALIVE", |s| {
        all_alive(s, &["a", "b"])
    })
    .await;
    assert!(b_rx.borrow().counters.push_pull_ok >= 1);

    let started = Instant::now();
    b.commands().send(Command::Leave).await.expect("send leave");
    tokio::time::timeout(Duration::from_secs(3), b.stopped())
        .await
        .expect("leave finishes within 3 s")
        .expect("driver ok");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(b_rx.borrow().local.state, MemberState::Leaving);
    wait_for(&mut a_rx, "a sees b LEAVING", |s| {
        state_of(s, "b") == Some(MemberState::Leaving)
    })
    .await;
    b.close().await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_started_before_its_seed_joins_once_the_seed_appears() {
    // Reserve a free port for the seed, then release it so the seed can bind it later.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let seed_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let joiner = Runtime::start(config("joiner", 0, &[seed_addr]))
        .await
        .expect("start joiner");
    let mut joiner_rx = joiner.snapshots();
    // Let at least one join round fail first.
    wait_for(&mut joiner_rx, "a failed join round", |s| {
        s.stats.join_rounds_failed >= 1
    })
    .await;
    assert_eq!(joiner_rx.borrow().local.state, MemberState::Init);

    let seed = Runtime::start(config("seed", port, &[]))
        .await
        .expect("start seed");
    wait_for(&mut joiner_rx, "joiner joined", |s| {
        all_alive(s, &["joiner", "seed"])
    })
    .await;
    let mut seed_rx = seed.snapshots();
    wait_for(&mut seed_rx, "seed sees joiner", |s| {
        all_alive(s, &["joiner", "seed"])
    })
    .await;
    joiner.close().await;
    seed.close().await;
}

/// A free UDP port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_joiners_seeding_each_other_form_one_cluster() {
    // Neither starts alone: each INIT node must accept the other's join push-pull.
    let (pa, pb) = (free_port(), free_port());
    let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let a = Runtime::start(config("a", pa, &[addr(pb)]))
        .await
        .expect("start a");
    let b = Runtime::start(config("b", pb, &[addr(pa)]))
        .await
        .expect("start b");
    let (mut a_rx, mut b_rx) = (a.snapshots(), b.snapshots());
    wait_for(&mut a_rx, "a sees both ALIVE", |s| {
        all_alive(s, &["a", "b"])
    })
    .await;
    wait_for(&mut b_rx, "b sees both ALIVE", |s| {
        all_alive(s, &["a", "b"])
    })
    .await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_given_as_dns_names_resolve() {
    let seed = Runtime::start(config("seed", 0, &[]))
        .await
        .expect("start seed");
    let mut cfg = config("named", 0, &[]);
    cfg.seeds = vec![Seed {
        host: "localhost".into(),
        port: seed.local_addr().port(),
    }];
    let named = Runtime::start(cfg).await.expect("start named");
    let mut rx = named.snapshots();
    wait_for(&mut rx, "joined through localhost", |s| {
        all_alive(s, &["named", "seed"])
    })
    .await;
    named.close().await;
    seed.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_resolving_only_to_this_node_start_alone() {
    // A single-replica StatefulSet: the headless Service lists only the pod itself.
    let port = free_port();
    let own = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cfg = config("solo", port, &[own]);
    cfg.seeds.push(Seed {
        host: "localhost".into(),
        port,
    });
    let solo = Runtime::start(cfg).await.expect("start solo");
    let mut rx = solo.snapshots();
    wait_for(&mut rx, "solo ALIVE on its own", |s| {
        s.local.state == MemberState::Alive
    })
    .await;
    assert_eq!(rx.borrow().members.len(), 1);
    solo.close().await;
}

/// Starts `seed`; `joiner` seeded with [seed, late] joins it; then `late` starts alone. Returns
/// the three runtimes once `late` is up, with `joiner` refreshing seeds every `refresh`.
async fn formed_apart(refresh: Duration) -> [Runtime; 3] {
    let late_port = free_port();
    let late_addr = SocketAddr::from(([127, 0, 0, 1], late_port));
    let seed = Runtime::start(config("seed", 0, &[]))
        .await
        .expect("start seed");
    let mut cfg = config("joiner", 0, &[seed.local_addr(), late_addr]);
    cfg.swim.seed_refresh_interval = refresh;
    let joiner = Runtime::start(cfg).await.expect("start joiner");
    wait_for(&mut joiner.snapshots(), "joiner joined seed", |s| {
        all_alive(s, &["joiner", "seed"])
    })
    .await;
    let late = Runtime::start(config("late", late_port, &[]))
        .await
        .expect("start late");
    [seed, joiner, late]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_refresh_merges_a_cluster_that_formed_apart() {
    // `joiner` joined `seed` (first in its list) before `late` existed; `late` then started
    // alone. Join rounds are over and neither side knows an address on the other: only
    // re-resolving the seeds brings the two clusters together.
    let nodes = formed_apart(Duration::from_millis(300)).await;
    for node in &nodes {
        wait_for(&mut node.snapshots(), "all three ALIVE everywhere", |s| {
            all_alive(s, &["joiner", "late", "seed"])
        })
        .await;
    }
    for node in nodes {
        node.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_seed_refresh_a_cluster_that_formed_apart_stays_split() {
    // The control for the test above: the same start with refreshing off stays two clusters.
    let nodes = formed_apart(Duration::ZERO).await;
    // Nothing to wait for: check throughout a window that the two clusters stay apart.
    let window = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < window {
        let late = nodes[2].snapshots().borrow().clone();
        assert_eq!(late.members.len(), 1, "late alone: {:?}", late.members);
        let joiner = nodes[1].snapshots().borrow().clone();
        assert_eq!(state_of(&joiner, "late"), None);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in nodes {
        node.close().await;
    }
}

/// Counters keep being republished, but the member list is the same allocation until
/// membership changes: a publish no longer copies every member.
#[tokio::test]
async fn counter_updates_share_the_member_list() {
    let seed = Runtime::start(config("seed", 0, &[]))
        .await
        .expect("start seed");
    let mut rx = seed.snapshots();
    wait_for(&mut rx, "seed ALIVE", |s| {
        s.local.state == MemberState::Alive
    })
    .await;
    let before = rx.borrow().clone();
    // Garbage is dropped and counted: new counters, no membership change.
    let sender = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind sender");
    for _ in 0..5 {
        sender
            .send_to(&[0x01, 0xFF, 0xFF], seed.local_addr())
            .await
            .expect("send garbage");
    }
    let dropped = |s: &Snapshot| s.stats.dropped.values().sum::<u64>();
    let base = dropped(&before);
    wait_for(&mut rx, "garbage counted", |s| dropped(s) >= base + 5).await;
    let after = rx.borrow().clone();
    assert!(std::sync::Arc::ptr_eq(&before.members, &after.members));

    let joiner = Runtime::start(config("joiner", 0, &[seed.local_addr()]))
        .await
        .expect("start joiner");
    wait_for(&mut rx, "joiner listed", |s| {
        all_alive(s, &["joiner", "seed"])
    })
    .await;
    assert!(!std::sync::Arc::ptr_eq(
        &after.members,
        &rx.borrow().members
    ));
    joiner.close().await;
    seed.close().await;
}

fn key(byte: u8) -> Key {
    Key::from_bytes([byte; crate::seal::KEY_BYTES])
}

/// `config` with a keyring of `keys` (the first primary) under `label`.
fn keyed(name: &str, port: u16, seeds: &[SocketAddr], keys: &[u8], label: &str) -> RuntimeConfig {
    let mut config = config(name, port, seeds);
    config.trust = TrustConfig {
        keyring: Some(Keyring::new(keys.iter().map(|b| key(*b)).collect()).expect("keyring")),
        keyring_file: None,
        label: label.into(),
        ignored_flag_key: None,
    };
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_a_common_key_converge_and_strangers_stay_out() {
    let a = Runtime::start(keyed("a", 0, &[], &[1], "prod"))
        .await
        .expect("a");
    let b = Runtime::start(keyed("b", 0, &[a.local_addr()], &[2, 1], "prod"))
        .await
        .expect("b");
    let (mut a_rx, mut b_rx) = (a.snapshots(), b.snapshots());
    wait_for(&mut a_rx, "a sees a and b", |s| all_alive(s, &["a", "b"])).await;
    wait_for(&mut b_rx, "b sees a and b", |s| all_alive(s, &["a", "b"])).await;
    // Another key, the same key under another label, and no key at all: none gets in.
    let outsiders = [
        keyed("x", 0, &[a.local_addr()], &[3], "prod"),
        keyed("y", 0, &[a.local_addr()], &[1], "test"),
        config("z", 0, &[a.local_addr()]),
    ];
    let mut started = Vec::new();
    for cfg in outsiders {
        let node = Runtime::start(cfg).await.expect("outsider starts");
        let mut rx = node.snapshots();
        wait_for(&mut rx, "a failed join round", |s| {
            s.stats.join_rounds_failed >= 2
        })
        .await;
        assert_eq!(rx.borrow().local.state, MemberState::Init);
        started.push(node);
    }
    // Their datagrams (if any reached a) were dropped, never merged.
    let seen = a_rx.borrow().clone();
    assert_eq!(seen.members.len(), 2, "{:?}", seen.members);
    for node in started {
        node.close().await;
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_reaches_every_member_and_a_late_one_catches_up() {
    let a = Runtime::start(keyed("a", 0, &[], &[1], ""))
        .await
        .expect("a");
    let b = Runtime::start(keyed("b", 0, &[a.local_addr()], &[1], ""))
        .await
        .expect("b");
    let (mut a_rx, mut b_rx) = (a.snapshots(), b.snapshots());
    wait_for(&mut b_rx, "b joined", |s| all_alive(s, &["a", "b"])).await;
    wait_for(&mut a_rx, "a sees b", |s| all_alive(s, &["a", "b"])).await;

    let run = |change: Option<KeyChange>| {
        let commands = a.commands();
        async move {
            let (reply, answer) = tokio::sync::oneshot::channel();
            commands
                .send(Command::Keys { change, reply })
                .await
                .expect("command sent");
            answer.await.expect("answered")
        }
    };
    let report = run(Some(KeyChange::Install(key(2))))
        .await
        .expect("install");
    assert_eq!((report.members, report.acknowledged), (2, 2), "{report:?}");
    let report = run(Some(KeyChange::Use(KeyRef::Key(key(2)))))
        .await
        .expect("use");
    assert_eq!(report.acknowledged, 2, "{report:?}");
    assert_eq!(report.version, 2);
    wait_for(&mut b_rx, "b at version 2", |s| {
        s.counters.keyring_version == 2
    })
    .await;

    // A member that was away during the rotation holds only key 1: it joins (a still holds
    // key 1) and takes the new keyring from the join exchange.
    let late = Runtime::start(keyed("late", 0, &[a.local_addr()], &[1], ""))
        .await
        .expect("late");
    let mut late_rx = late.snapshots();
    wait_for(&mut late_rx, "late joined with the new keyring", |s| {
        all_alive(s, &["a", "b", "late"]) && s.counters.keyring_version == 2
    })
    .await;
    let report = run(Some(KeyChange::Remove(KeyRef::Key(key(1)))))
        .await
        .expect("remove");
    assert_eq!((report.members, report.acknowledged), (3, 3), "{report:?}");
    assert_eq!(
        report.keys.len(),
        1,
        "only key 2 is left anywhere: {report:?}"
    );
    let refused = run(Some(KeyChange::Remove(KeyRef::Key(key(2))))).await;
    assert!(refused.expect_err("primary").contains("primary"));
    let listed = run(None).await.expect("list");
    assert_eq!(listed.acknowledged, 3, "{listed:?}");
    // Everyone still talks after the old key is gone.
    let before = late_rx.borrow().stats.datagrams_received;
    wait_for(&mut late_rx, "late keeps receiving", |s| {
        s.stats.datagrams_received > before + 2
    })
    .await;
    assert_eq!(late_rx.borrow().counters.rejected_decrypt, 0);
    late.close().await;
    b.close().await;
    a.close().await;
}
