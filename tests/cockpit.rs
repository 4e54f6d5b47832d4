//! The operator's views against real agents on 127.0.20.x: the event stream through
//! `meshd monitor --json`, and the leader and owner views through HTTP and the CLI, before and
//! after a kill -9.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{all_see_alive, node_ip, start_cluster, wait_until, Node, FAST, HTTP_PORT};
use serde_json::Value;

/// 127.0.20.x: no other test uses this subnet.
const SUBNET: u8 = 20;
/// 127.0.22.x, for the vitals test's cluster (nodes .1-.3, like the event test's in SUBNET).
const VITALS_SUBNET: u8 = 22;
/// Longest wait for a cluster to form or a change to show.
const WAIT: Duration = Duration::from_secs(30);

fn http_addr(index: u8) -> String {
    format!("{}:{HTTP_PORT}", node_ip(SUBNET, index))
}

/// Runs a client subcommand against node `index`; (exit code, stdout).
fn meshd(index: u8, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(args)
        .args(["--http-addr", &http_addr(index)])
        .output()
        .expect("meshd runs");
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `meshd monitor --json` against a node, its stdout lines arriving on a channel; killed (by
/// its own PID) on drop.
struct Monitor {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Monitor {
    fn start(index: u8) -> Monitor {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshd"))
            .args(["monitor", "--json", "--http-addr", &http_addr(index)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("meshd monitor starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).expect("monitor --json prints JSON");
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Monitor { child, lines }
    }

    /// The next event, or panics after `WAIT`.
    fn next(&self) -> Value {
        self.lines
            .recv_timeout(WAIT)
            .expect("an event within the wait")
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_event_stream_starts_with_a_snapshot_then_every_change_in_order() {
    let mut nodes = start_cluster("ev", SUBNET, 3, FAST);
    let all: Vec<&Node> = nodes.iter().collect();
    assert!(wait_until(WAIT, || all_see_alive(&all, 3)).is_some());
    let monitor = Monitor::start(1);
    let first = monitor.next();
    assert_eq!(first["event"], "snapshot", "{first}");
    assert_eq!(first["data"]["stores"]["alive_count"], 3, "{first}");
    let mut last_seq = first["data"]["last_event_seq"]
        .as_u64()
        .expect("the snapshot says which event it holds");

    nodes[2].kill9();
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let event = monitor.next();
        assert_eq!(event["event"], "membership", "{event}");
        let data = &event["data"];
        let seq = data["seq"].as_u64().expect("seq");
        assert_eq!(seq, last_seq + 1, "no gap and no duplicate: {data}");
        last_seq = seq;
        if data["member"] != "ev3" {
            continue; // a false suspicion of a live node on a loaded machine: allowed
        }
        let state = data["state"].as_str().expect("state").to_string();
        assert!(data["previous_state"].is_string(), "{data}");
        assert!(data["incarnation"].as_u64().is_some(), "{data}");
        assert!(
            data["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{data}"
        );
        seen.push(state.clone());
        if state == "DOWN" {
            break;
        }
    }
    assert_eq!(seen.last().map(String::as_str), Some("DOWN"), "{seen:?}");
}

#[test]
fn leader_and_owner_agree_everywhere_and_move_only_for_the_dead() {
    let mut extra = FAST.to_vec();
    let mut nodes = Vec::new();
    let seed = std::net::SocketAddr::from((node_ip(SUBNET, 11), common::MESH_PORT));
    for i in 11..=13u8 {
        // lp13 leads by priority although its name sorts last.
        let priority = if i == 13 { "-1" } else { "0" };
        extra.extend_from_slice(&["--leader-priority", priority, "--expect-nodes", "3"]);
        let seeds = if i == 11 { vec![] } else { vec![seed] };
        nodes.push(Node::start(
            &format!("lp{i}"),
            node_ip(SUBNET, i),
            &seeds,
            &extra,
        ));
        extra.truncate(FAST.len());
    }
    let all: Vec<&Node> = nodes.iter().collect();
    assert!(wait_until(WAIT, || all_see_alive(&all, 3)).is_some());
    let leader_of = |n: &Node| n.get("/ha/leader").map(|(_, body)| body);
    for node in &nodes {
        let view = leader_of(node).expect("leader answers");
        assert_eq!(view["leader"], "lp13", "{}: {view}", node.name);
        assert_eq!(view["has_quorum"], true);
        assert_eq!(view["expected"], 3);
    }
    assert_eq!(meshd(11, &["leader"]).1.split(' ').next(), Some("lp13"));

    let keys: Vec<String> = (0..24).map(|k| format!("job-{k}")).collect();
    let owners = |index: u8| -> Vec<String> {
        keys.iter()
            .map(|k| {
                let (code, out) = meshd(index, &["owner", k]);
                assert_eq!(code, 0, "meshd owner {k}");
                out.trim().to_string()
            })
            .collect()
    };
    let before = owners(11);
    assert_eq!(owners(12), before, "every node names the same owners");
    assert!(
        before.iter().any(|o| o == "lp13"),
        "lp13 owns some of {before:?}"
    );

    nodes[2].kill9();
    let survivors = [&nodes[0], &nodes[1]];
    let new_leader = wait_until(WAIT, || {
        survivors
            .iter()
            .all(|n| leader_of(n).is_some_and(|v| v["leader"] == "lp11"))
    });
    assert!(new_leader.is_some(), "lp11 leads at both survivors");
    let view = leader_of(&nodes[0]).expect("leader answers");
    assert_eq!(
        (view["alive"].as_u64(), view["has_quorum"].as_bool()),
        (Some(2), Some(true))
    );
    let after = owners(11);
    assert_eq!(owners(12), after, "the survivors agree on the new owners");
    for ((key, was), now) in keys.iter().zip(&before).zip(&after) {
        if was == "lp13" {
            assert_ne!(now, "lp13", "{key} still owned by the dead");
        } else {
            assert_eq!(now, was, "{key} moved though {was} lives");
        }
    }
}

#[test]
fn vitals_reach_every_node_with_the_gateway_load_and_heartbeats() {
    let mut extra = FAST.to_vec();
    extra.extend_from_slice(&["--vitals-interval", "1s"]);
    let nodes = start_cluster("vt", VITALS_SUBNET, 3, &extra);
    let all: Vec<&Node> = nodes.iter().collect();
    assert!(wait_until(WAIT, || all_see_alive(&all, 3)).is_some());
    let load = serde_json::json!({"in_flight": 5, "mode": "drain"});
    let (code, body) = nodes[1]
        .send("PUT", "/ha/self/load", Some(&load))
        .expect("load answered");
    assert_eq!(code, 200, "{body}");
    let seen = wait_until(WAIT, || {
        let Some(status) = nodes[0].status() else {
            return false;
        };
        let rows = status["nodes"].as_array().cloned().unwrap_or_default();
        rows.len() == 3
            && rows
                .iter()
                .all(|r| r["vitals"]["rss_bytes"].as_u64() > Some(0))
            && rows
                .iter()
                .all(|r| r["last_heartbeat_ms"].as_u64().is_some_and(|ms| ms < 5_000))
            && rows
                .iter()
                .any(|r| r["name"] == "vt2" && r["vitals"]["load"] == load)
    });
    let status = nodes[0].status();
    assert!(
        seen.is_some(),
        "vitals, heartbeats and load at vt1: {status:?}"
    );
}
