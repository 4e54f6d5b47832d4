//! Seeds re-resolved after joining, and seeds naming only this node, over real `meshd agent`
//! processes. Subnets 52–55 (50–59 belong to the client/seeds tests).
//!
//! On loopback we cannot make a DNS name change its answer, so the seed lists below are static
//! IP lists that already contain the address where a node will appear later. Each refresh
//! resolves them again just as it would a headless Service's name, so what is exercised is the
//! same: a node that is already in a cluster contacts a seed address no live member has, and the
//! two sides merge.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// Refresh often, so the tests take seconds, not the default 30 s.
const REFRESH: &[&str] = &["--seed-refresh-interval", "1s"];

fn mesh(subnet: u8, index: u8) -> SocketAddr {
    SocketAddr::from((node_ip(subnet, index), MESH_PORT))
}

/// n1 alone; n2 seeded with [n1, n3] joins n1 before n3 exists; n3 seeded with only itself
/// starts alone. Returns the three nodes with n3 up and healthy on its own.
fn formed_apart(prefix: &str, subnet: u8, n2_flags: &[&str]) -> Vec<Node> {
    let n1 = Node::start(&format!("{prefix}1"), node_ip(subnet, 1), &[], FAST);
    let n2 = Node::start(
        &format!("{prefix}2"),
        node_ip(subnet, 2),
        &[mesh(subnet, 1), mesh(subnet, 3)],
        &[FAST, n2_flags].concat(),
    );
    wait_until(Duration::from_secs(20), || all_see_alive(&[&n1, &n2], 2))
        .expect("n2 joins n1 through its first seed");
    let n3 = Node::start(
        &format!("{prefix}3"),
        node_ip(subnet, 3),
        &[mesh(subnet, 3)],
        FAST,
    );
    // Self-only seeds: n3 does not wait for anyone, it is a healthy cluster of one.
    wait_until(Duration::from_secs(10), || {
        n3.get("/ha/health")
            .is_some_and(|(code, body)| code == 200 && body["cluster_size"] == 1)
    })
    .unwrap_or_else(|| {
        panic!(
            "n3 with self-only seeds is healthy alone: {:?}",
            n3.get("/ha/health")
        )
    });
    vec![n1, n2, n3]
}

#[test]
fn seed_refresh_merges_a_cluster_that_formed_apart() {
    let nodes = formed_apart("split", 52, REFRESH);
    assert!(
        nodes[2]
            .log_tail(200)
            .contains("seeds resolve only to this node"),
        "n3 logs why it starts alone"
    );
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(15), || all_see_alive(&all, 3))
        .expect("the two clusters merge into one of 3 ALIVE");
    assert!(
        nodes[1].log_tail(400).contains("seed refresh: merged"),
        "n2 logs the merge at info"
    );
}

#[test]
fn without_seed_refresh_a_cluster_that_formed_apart_stays_split() {
    // The control for the test above: with refreshing off, nothing brings them together.
    let nodes = formed_apart("nosplit", 53, &["--seed-refresh-interval", "0s"]);
    let apart = holds_for(Duration::from_secs(4), || {
        nodes[2].alive_count() == 1 && nodes[1].state_of("nosplit3").is_none()
    });
    assert!(apart, "still split: {:?}", nodes[2].status());
}

#[test]
fn member_restarted_at_a_new_ip_is_found_through_the_seeds() {
    // mv2's seeds list mv1 and the address mv3 will come back at (.13), as a headless Service
    // would after the pod is rescheduled. mv3 restarts there with self-only seeds.
    let subnet = 54;
    let mv1 = Node::start("mv1", node_ip(subnet, 1), &[], FAST);
    let mv2 = Node::start(
        "mv2",
        node_ip(subnet, 2),
        &[mesh(subnet, 1), mesh(subnet, 13)],
        &[FAST, REFRESH].concat(),
    );
    let mut mv3 = Node::start("mv3", node_ip(subnet, 3), &[mesh(subnet, 1)], FAST);
    let all = [&mv1, &mv2, &mv3];
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3)).expect("3 nodes converge");
    let before = mv1.incarnation_of("mv3").expect("mv3 listed");

    mv3.kill9();
    wait_state_everywhere(&[&mv1, &mv2], "mv3", "DOWN", Duration::from_secs(30));
    let moved = Node::start("mv3", node_ip(subnet, 13), &[mesh(subnet, 13)], FAST);
    let new_addr = moved.mesh_addr().to_string();
    let found = wait_until(Duration::from_secs(15), || {
        [&mv1, &mv2, &moved].iter().all(|n| {
            n.member("mv3").is_some_and(|m| {
                m["state"] == "ALIVE"
                    && m["address"] == new_addr.as_str()
                    && m["incarnation"].as_u64() > Some(before)
            })
        })
    });
    assert!(
        found.is_some(),
        "mv3 ALIVE at {new_addr} everywhere: mv1 {:?}, mv2 {:?}",
        mv1.member("mv3"),
        mv2.member("mv3")
    );
    assert_eq!(moved.alive_count(), 3);
}

#[test]
fn unanswering_seeds_still_keep_a_node_joining() {
    // Seeds that name this node and another that is not up: not "only self", so keep trying.
    let subnet = 55;
    let node = Node::start(
        "wait1",
        node_ip(subnet, 1),
        &[mesh(subnet, 1), mesh(subnet, 2)],
        FAST,
    );
    let joining = wait_until(Duration::from_secs(10), || {
        node.get("/ha/health")
            .is_some_and(|(code, body)| code == 503 && body["status"] == "joining")
    });
    assert!(joining.is_some(), "joining while the other seed is absent");
    let still_joining = holds_for(Duration::from_secs(2), || {
        node.get("/ha/health").is_some_and(|(code, _)| code == 503)
    });
    assert!(still_joining, "still joining, not started alone");
    let other = Node::start("wait2", node_ip(subnet, 2), &[], FAST);
    wait_until(Duration::from_secs(20), || {
        all_see_alive(&[&node, &other], 2)
    })
    .expect("joins once the other seed is up");
}
