//! Whole-daemon behaviour over real `meshd agent` processes on loopback addresses.
//! Every wait is bounded by a deadline; every process is killed by PID when its `Node` drops.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;

/// Five nodes with memberlist's default timing: converge, detect a kill -9, see a SIGTERM leave.
/// Prints the measured times (run with `--no-capture` to see them).
#[test]
fn five_nodes_converge_detect_crash_and_see_leave() {
    let started = Instant::now();
    let mut nodes = start_cluster("conv", 10, 5, &[]);
    let all: Vec<&Node> = nodes.iter().collect();
    let converged = wait_until(Duration::from_secs(20), || all_see_alive(&all, 5))
        .expect("5 nodes converge to 5 ALIVE within 20 s");
    let convergence = started.elapsed();
    assert!(converged <= convergence);

    // kill -9 the last node: every survivor must show it DOWN.
    let crash_at = Instant::now();
    nodes[4].kill9();
    let survivors: Vec<&Node> = nodes[..4].iter().collect();
    wait_state_everywhere(&survivors, "conv5", "DOWN", Duration::from_secs(40));
    let detection = crash_at.elapsed();

    // SIGTERM node 4: it leaves, exits 0 quickly, and the rest show it LEAVING.
    let leave_at = Instant::now();
    nodes[3].signal(libc::SIGTERM);
    let remaining: Vec<&Node> = nodes[..3].iter().collect();
    wait_state_everywhere(&remaining, "conv4", "LEAVING", Duration::from_secs(10));
    let leave = leave_at.elapsed();
    let status = nodes[3]
        .wait_exit(Duration::from_secs(3))
        .expect("SIGTERM'd node exits within 3 s");
    assert!(status.success(), "graceful leave exits 0, got {status}");

    // Nobody else was ever touched.
    for n in &nodes[..3] {
        for m in ["conv1", "conv2", "conv3"] {
            assert_eq!(n.state_of(m).as_deref(), Some("ALIVE"), "{m} at {}", n.name);
        }
    }
    eprintln!(
        "MEASURED 5-node defaults: convergence {:.2}s (from first start), crash→DOWN everywhere {:.2}s, leave→LEAVING everywhere {:.2}s",
        convergence.as_secs_f64(),
        detection.as_secs_f64(),
        leave.as_secs_f64()
    );
}

/// A SIGTERM'd node is LEAVING at every peer, then reaped once the retention time passes.
#[test]
fn sigterm_leave_is_seen_then_reaped() {
    let mut nodes = start_cluster("leave", 11, 3, &[FAST, &["--retention", "3s"]].concat());
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3)).expect("3 nodes converge");

    nodes[2].signal(libc::SIGTERM);
    let exit = nodes[2]
        .wait_exit(Duration::from_secs(3))
        .expect("exits within 3 s");
    assert!(exit.success(), "exit status {exit}");
    let rest: Vec<&Node> = nodes[..2].iter().collect();
    wait_state_everywhere(&rest, "leave3", "LEAVING", Duration::from_secs(5));
    wait_until(Duration::from_secs(15), || {
        rest.iter()
            .all(|n| n.status().is_some() && n.member("leave3").is_none())
    })
    .expect("leave3 reaped from every listing after retention");
    assert!(rest.iter().all(|n| n.alive_count() == 2));
}

/// A node killed and restarted under the same name rejoins ALIVE with a higher incarnation.
#[test]
fn restart_with_same_name_rejoins_with_higher_incarnation() {
    let mut nodes = start_cluster("rst", 12, 3, FAST);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3)).expect("3 nodes converge");
    let before = nodes[0].incarnation_of("rst3").expect("rst3 listed");

    nodes[2].kill9();
    let rest: Vec<&Node> = nodes[..2].iter().collect();
    wait_state_everywhere(&rest, "rst3", "DOWN", Duration::from_secs(30));
    nodes[2].restart();
    let all: Vec<&Node> = nodes.iter().collect();
    wait_state_everywhere(&all, "rst3", "ALIVE", Duration::from_secs(20));
    for n in &all {
        let inc = n.incarnation_of("rst3").expect("listed");
        assert!(
            inc > before,
            "{} sees rst3 at incarnation {inc}, was {before}",
            n.name
        );
    }
}

/// A joiner started before its seed keeps trying and joins once the seed is up.
#[test]
fn joiner_started_before_seed_joins_when_seed_appears() {
    let seed_ip = node_ip(13, 1);
    let seed_addr = std::net::SocketAddr::from((seed_ip, MESH_PORT));
    let joiner = Node::start("late2", node_ip(13, 2), &[seed_addr], FAST);
    // The joiner is up but cannot join: health says so.
    let joining = wait_until(Duration::from_secs(10), || {
        joiner
            .get("/ha/health")
            .is_some_and(|(code, body)| code == 503 && body["status"] == "joining")
    });
    assert!(
        joining.is_some(),
        "joiner answers 503 joining while its seed is absent"
    );
    let seed = Node::start("late1", seed_ip, &[], FAST);
    wait_until(Duration::from_secs(20), || {
        all_see_alive(&[&joiner, &seed], 2)
    })
    .expect("joiner and seed converge once the seed is up");
    let (code, body) = joiner.get("/ha/health").expect("health answers");
    assert_eq!((code, body["status"].as_str()), (200, Some("healthy")));
}

/// SIGSTOP a node for 3 s: peers suspect it; after SIGCONT it refutes and is ALIVE everywhere.
#[test]
fn stopped_node_refutes_suspicion_after_sigcont() {
    // Suspicion floor (even with every witness confirming) = 8 × 500 ms = 4 s, longer than the
    // 3 s stop, so refutation wins the race.
    let flags = [FAST, &["--suspicion-confirmed-mult", "8"]].concat();
    let nodes = start_cluster("stop", 14, 3, &flags);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3)).expect("3 nodes converge");
    let before = nodes[0].incarnation_of("stop3").expect("listed");

    nodes[2].signal(libc::SIGSTOP);
    let stopped_at = Instant::now();
    let mut suspected = false;
    while stopped_at.elapsed() < Duration::from_secs(3) {
        suspected |= nodes[..2]
            .iter()
            .any(|n| n.state_of("stop3").as_deref() == Some("SUSPECTED"));
        std::thread::sleep(Duration::from_millis(100));
    }
    nodes[2].signal(libc::SIGCONT);
    assert!(suspected, "a peer suspected the stopped node within 3 s");

    wait_until(Duration::from_secs(10), || {
        all.iter().all(|n| {
            n.state_of("stop3").as_deref() == Some("ALIVE")
                && n.incarnation_of("stop3").is_some_and(|inc| inc > before)
        })
    })
    .expect("stop3 refuted (higher incarnation) and is ALIVE everywhere");
}

/// 1,000 garbage datagrams to a node change nothing: it keeps serving, nobody changes state,
/// and its dropped-packet counters rose by at least the number of SWIM-looking ones (QUIC-looking
/// ones go to quinn, which drops them without a counter of ours).
#[test]
fn garbage_datagrams_change_nothing() {
    let nodes = start_cluster("junk", 15, 3, FAST);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3)).expect("3 nodes converge");
    let before: Vec<Option<u64>> = ["junk1", "junk2", "junk3"]
        .iter()
        .map(|m| nodes[1].incarnation_of(m))
        .collect();

    let dropped_before = dropped_total(&nodes[0]).expect("target exports drop counters");

    let socket = UdpSocket::bind("127.0.15.200:0").expect("bind sender");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut swim_looking = 0u64;
    for i in 0..1000usize {
        let datagram = garbage(i, &mut state);
        // The runtime's demultiplexer: the 0x40 bit set means QUIC.
        if !matches!(datagram.first(), Some(b) if b & 0x40 != 0) {
            swim_looking += 1;
        }
        let _ = socket.send_to(&datagram, nodes[0].mesh_addr());
    }

    // Still answering, still the same view everywhere, for a while after the flood.
    assert!(
        holds_for(Duration::from_secs(2), || all_see_alive(&all, 3)),
        "every node still sees 3 ALIVE"
    );
    let after: Vec<Option<u64>> = ["junk1", "junk2", "junk3"]
        .iter()
        .map(|m| nodes[1].incarnation_of(m))
        .collect();
    assert_eq!(before, after, "no incarnation moved");
    let (code, _) = nodes[0]
        .get("/ha/health")
        .expect("target still serves HTTP");
    assert_eq!(code, 200);
    let dropped = dropped_total(&nodes[0]).expect("drop counters") - dropped_before;
    assert!(
        dropped >= swim_looking as f64,
        "dropped {dropped}, sent {swim_looking} SWIM-looking garbage datagrams"
    );
}

/// Sum of the node's `meshd_dropped_packets_total` over every reason.
fn dropped_total(node: &Node) -> Option<f64> {
    let (_, text) = node.get_text("/metrics")?;
    let series = text
        .lines()
        .filter(|l| l.starts_with("meshd_dropped_packets_total{"));
    Some(
        series
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum(),
    )
}

/// Garbage of several kinds: random bytes, our header with junk, QUIC-looking bytes, a huge one.
fn garbage(i: usize, state: &mut u64) -> Vec<u8> {
    let mut next = || {
        // xorshift64: deterministic filler, no RNG crate needed here.
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    };
    let len = match i % 10 {
        0 => 0,
        9 => 60_000,
        _ => (next() % 1400) as usize + 1,
    };
    let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
    match (i % 4, bytes.first_mut()) {
        (0, Some(b)) => *b = 0x01,               // right version byte, junk body
        (1, Some(b)) => *b |= 0xc0,              // looks like a QUIC long header
        (2, Some(b)) => *b = (*b & 0x3f) | 0x02, // a SWIM version we do not speak
        _ => {}
    }
    bytes
}

/// `/ha/status` has the SMG shape, and a node's region, zone and tags reach its peers.
#[test]
fn status_shape_and_metadata_reach_peers() {
    let seed = Node::start("meta1", node_ip(16, 1), &[], FAST);
    let tagged = Node::start(
        "meta2",
        node_ip(16, 2),
        &[seed.mesh_addr()],
        &[
            FAST,
            &[
                "--region",
                "eu-west",
                "--zone",
                "eu-west-1b",
                "--tag",
                "role=gateway",
                "--tag",
                "tier=gold",
            ],
        ]
        .concat(),
    );
    wait_until(Duration::from_secs(20), || {
        all_see_alive(&[&seed, &tagged], 2)
    })
    .expect("converge");

    let status = seed.status().expect("status answers");
    assert_eq!(status["node_name"], "meta1");
    assert_eq!(status["node_count"], 2);
    assert_eq!(status["stores"]["membership_count"], 2);
    let nodes = status["nodes"].as_array().expect("nodes array");
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names, ["meta1", "meta2"], "sorted by name");
    let peer = &nodes[1];
    assert_eq!(peer["address"], tagged.mesh_addr().to_string());
    assert_eq!(peer["status"], "1");
    assert_eq!(peer["state"], "ALIVE");
    assert_eq!(peer["version"], peer["incarnation"]);
    assert_eq!(peer["region"], "eu-west");
    assert_eq!(peer["zone"], "eu-west-1b");
    assert_eq!(peer["tags"]["role"], "gateway");
    assert_eq!(peer["tags"]["tier"], "gold");
    assert!(peer["since_ms"].is_u64());

    let (code, health) = seed.get("/ha/health").expect("health answers");
    assert_eq!(code, 200);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["node_name"], "meta1");
    assert_eq!(health["cluster_size"], 2);
    assert_eq!(health["state"], "ALIVE");
}

/// `POST /ha/shutdown` answers 202, the node leaves, its peer sees LEAVING, and it exits 0.
#[test]
fn http_shutdown_leaves_gracefully() {
    let mut nodes = start_cluster("shut", 17, 2, FAST);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 2)).expect("converge");

    let (code, body) = nodes[1].post("/ha/shutdown").expect("shutdown answers");
    assert_eq!(code, 202);
    assert_eq!(body["status"], "shutdown initiated");
    let exit = nodes[1]
        .wait_exit(Duration::from_secs(3))
        .expect("exits within 3 s");
    assert!(exit.success(), "exit status {exit}");
    wait_state_everywhere(&[&nodes[0]], "shut2", "LEAVING", Duration::from_secs(5));
}

/// SIGINT (Ctrl-C) leaves as gracefully as SIGTERM: peer sees LEAVING, the process exits 0.
#[test]
fn sigint_leaves_gracefully() {
    let mut nodes = start_cluster("int", 18, 2, FAST);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 2)).expect("converge");

    nodes[1].signal(libc::SIGINT);
    let exit = nodes[1]
        .wait_exit(Duration::from_secs(3))
        .expect("exits within 3 s");
    assert!(exit.success(), "exit status {exit}");
    wait_state_everywhere(&[&nodes[0]], "int2", "LEAVING", Duration::from_secs(5));
}
