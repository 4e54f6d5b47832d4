//! Whole-daemon tests of the replicated stores: real `meshd agent` processes on their own
//! loopback addresses, written and read over HTTP (and the CLI), watched over SSE, killed
//! mid-burst with a data directory, and cut off while others write.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{node_ip, start_cluster, wait_until, Node, FAST, MESH_PORT};

/// Longest a write may take to be visible everywhere in these tests (gossip reaches a 3-node
/// cluster in milliseconds; anti-entropy runs every --store-sync-interval).
const SPREAD: Duration = Duration::from_secs(10);

fn value_at(node: &Node, store: &str, key: &str) -> Option<Value> {
    match node.get(&format!("/ha/stores/{store}/{key}")) {
        Some((200, body)) => body.get("value").cloned(),
        _ => None,
    }
}

fn visible_everywhere(nodes: &[Node], store: &str, key: &str, want: &Value) -> bool {
    nodes
        .iter()
        .all(|n| value_at(n, store, key).as_ref() == Some(want))
}

fn converged(nodes: &[Node]) -> bool {
    nodes.iter().all(|n| n.alive_count() == nodes.len())
}

#[test]
fn writes_of_every_kind_reach_every_node() {
    let nodes = start_cluster("st", 90, 3, FAST);
    assert!(
        wait_until(SPREAD, || converged(&nodes)).is_some(),
        "cluster formed"
    );
    let writer = &nodes[0];
    let worker = json!({"url": "http://10.0.0.7:8000", "model_id": "llama", "health": true});
    let (code, body) = writer
        .send(
            "PUT",
            "/ha/stores/workers/w1",
            Some(&json!({ "value": worker })),
        )
        .expect("put answered");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["value"], worker);
    let version = body["version"].as_str().expect("a version").to_string();
    for by in [5, -2, 10] {
        let (code, _) = writer
            .send(
                "POST",
                "/ha/stores/limits/tenant-a/incr",
                Some(&json!({ "by": by })),
            )
            .expect("incr answered");
        assert_eq!(code, 200);
    }
    // Another node writes the same counter: the sum counts both.
    let (code, _) = nodes[1]
        .send(
            "POST",
            "/ha/stores/limits/tenant-a/incr",
            Some(&json!({ "by": 100 })),
        )
        .expect("incr answered");
    assert_eq!(code, 200);
    for member in ["gw-1", "gw-2", "gw-3"] {
        let body = json!({ "member": member });
        let (code, _) = writer
            .send("POST", "/ha/stores/pools/eu/add", Some(&body))
            .expect("add answered");
        assert_eq!(code, 200);
    }
    let (code, body) = nodes[2]
        .send(
            "POST",
            "/ha/stores/pools/eu/remove",
            Some(&json!({ "member": "gw-2" })),
        )
        .expect("remove answered");
    // nodes[2] may not have gw-2 yet: a remove of what it does not hold is a 404, not a guess.
    assert!(code == 200 || code == 404, "{code} {body}");
    let took = wait_until(SPREAD, || {
        visible_everywhere(&nodes, "workers", "w1", &worker)
            && visible_everywhere(&nodes, "limits", "tenant-a", &json!(113))
    });
    assert!(took.is_some(), "lww and counter writes everywhere");
    if code == 404 {
        let (code, _) = nodes[2]
            .send(
                "POST",
                "/ha/stores/pools/eu/remove",
                Some(&json!({ "member": "gw-2" })),
            )
            .expect("remove answered");
        assert_eq!(code, 200);
    }
    let members = json!(["gw-1", "gw-3"]);
    assert!(
        wait_until(SPREAD, || visible_everywhere(
            &nodes, "pools", "eu", &members
        ))
        .is_some(),
        "the set agrees everywhere"
    );
    // Same version everywhere for the lww key.
    for node in &nodes {
        let (_, body) = node.get("/ha/stores/workers/w1").expect("get");
        assert_eq!(body["version"], version.as_str());
    }
    // The listings and SMG's views.
    let (code, stores) = nodes[2].get("/ha/stores").expect("list");
    assert_eq!(code, 200);
    // Every node also publishes its vitals into the store `nodes`, from a second after start.
    let names: Vec<&str> = stores["stores"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .filter(|name| *name != meshd::runtime::vitals::STORE)
        .collect();
    assert_eq!(names, ["limits", "pools", "workers"]);
    let (code, workers) = nodes[1].get("/ha/workers").expect("workers");
    assert_eq!(code, 200);
    assert_eq!(workers[0]["worker_id"], "w1");
    assert_eq!(workers[0]["url"], "http://10.0.0.7:8000");
    // /ha/status counts from the node's last snapshot, republished on its next input (a
    // probe, at the latest), so it may trail the store read above by a moment.
    let counted = || {
        nodes[1]
            .status()
            .filter(|s| s["stores"]["worker_count"] == 1)
    };
    wait_until(SPREAD, || counted().is_some()).expect("/ha/status counts the worker");
    let status = counted().expect("status");
    let store_count = status["stores"]["store_count"]
        .as_u64()
        .expect("store_count");
    assert!((3..=4).contains(&store_count), "{store_count} stores");
    // Deleting spreads too.
    let (code, body) = nodes[2]
        .send("DELETE", "/ha/stores/workers/w1", None)
        .expect("delete answered");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["deleted"], true);
    assert!(
        wait_until(SPREAD, || nodes
            .iter()
            .all(|n| value_at(n, "workers", "w1").is_none()))
        .is_some(),
        "deleted everywhere"
    );
}

#[test]
fn bad_writes_get_clear_errors_and_change_nothing() {
    let node = Node::start("bw1", node_ip(91, 1), &[], FAST);
    assert!(wait_until(SPREAD, || node.alive_count() == 1).is_some());
    let put = |key: &str, body: Value| {
        node.send("PUT", &format!("/ha/stores/kv/{key}"), Some(&body))
            .expect("answered")
    };
    assert_eq!(put("a", json!({"value": 1})).0, 200);
    let cases: Vec<(u16, (u16, Value), &str)> = vec![
        (
            409,
            node.send("POST", "/ha/stores/kv/a/incr", Some(&json!({"by": 1})))
                .expect("answered"),
            "the store holds lww keys; this operation needs a counter store",
        ),
        (
            413,
            put("big", json!({"value": "x".repeat(70_000)})),
            "value is 70002 bytes; the limit is 65536",
        ),
        (
            422,
            put("b", json!({"valu": 1})),
            "expected {\"value\": <any JSON>}",
        ),
        (
            404,
            node.send("DELETE", "/ha/stores/kv/nope", None)
                .expect("answered"),
            "no key \"nope\" in store \"kv\"",
        ),
        (
            400,
            node.send("PUT", "/ha/stores/bad%20name/k", Some(&json!({"value": 1})))
                .expect("answered"),
            "store name contains ' '",
        ),
        (
            400,
            node.send("POST", "/ha/stores/kv/a%bF/incr", Some(&json!({"by": 1})))
                .expect("answered"),
            "bad path: Invalid URL",
        ),
        (
            404,
            node.get("/ha/stores/kv/nope").expect("answered"),
            "no key",
        ),
        (
            404,
            node.get("/ha/stores/none").expect("answered"),
            "no store",
        ),
    ];
    for (want, (code, body), message) in cases {
        assert_eq!(code, want, "{body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{error:?} should say {message:?}");
    }
    let (_, list) = node.get("/ha/stores").expect("list");
    assert_eq!(list["stores"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(value_at(&node, "kv", "a"), Some(json!(1)));
    // Counted, once the next snapshot is out.
    let counted = wait_until(SPREAD, || {
        node.metric("meshd_store_writes_refused_total", "reason=\"value\"") == Some(1.0)
    });
    assert!(counted.is_some(), "the refusal is counted by its bound");
}

/// Reads the SSE stream of `path` until `want` lines matched (each a substring), or the limit.
fn sse_lines(addr: SocketAddr, path: &str, limit: Duration, mut done: impl FnMut(&str) -> bool) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    use std::io::Write;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("request");
    let mut reader = BufReader::new(stream);
    let start = Instant::now();
    let mut line = String::new();
    while start.elapsed() < limit {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => panic!("stream ended"),
            Ok(_) => {
                if done(line.trim_end()) {
                    return;
                }
            }
            Err(_) => {} // read timeout: poll again until the limit
        }
    }
    panic!("the stream did not show what was expected within {limit:?}");
}

#[test]
fn a_watcher_sees_the_snapshot_then_every_change() {
    let nodes = start_cluster("sw", 92, 2, FAST);
    assert!(wait_until(SPREAD, || converged(&nodes)).is_some());
    nodes[0]
        .send(
            "PUT",
            "/ha/stores/cfg/before",
            Some(&json!({"value": "old"})),
        )
        .expect("put");
    assert!(wait_until(SPREAD, || value_at(&nodes[1], "cfg", "before").is_some()).is_some());
    let watched = SocketAddr::from((nodes[1].ip, common::HTTP_PORT));
    let writer = std::thread::spawn({
        let ip = nodes[0].ip;
        move || {
            // Give the watcher a moment to subscribe; it must see the writes whatever the timing
            // (snapshot or change), so the wait only makes the change path likely.
            std::thread::sleep(Duration::from_millis(300));
            let client = ureq::Agent::new_with_defaults();
            for i in 0..3 {
                let url = format!("http://{ip}:{}/ha/stores/cfg/k{i}", common::HTTP_PORT);
                client
                    .put(&url)
                    .header("Content-Type", "application/json")
                    .send(json!({"value": i}).to_string())
                    .expect("put");
            }
        }
    });
    let mut snapshot_seen = false;
    let mut keys = Vec::new();
    sse_lines(watched, "/ha/stores/cfg/watch", SPREAD, |line| {
        if line == "event: snapshot" {
            snapshot_seen = true;
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let value: Value = serde_json::from_str(data).expect("JSON data");
            if let Some(entries) = value["entries"].as_array() {
                keys.extend(
                    entries
                        .iter()
                        .filter_map(|e| e["key"].as_str().map(String::from)),
                );
            } else if let Some(key) = value["key"].as_str() {
                keys.push(key.to_string());
            }
        }
        ["before", "k0", "k1", "k2"]
            .iter()
            .all(|k| keys.iter().any(|seen| seen == k))
    });
    writer.join().expect("writer");
    assert!(snapshot_seen, "the stream starts with a snapshot");
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "no duplicate: {keys:?}");
}

#[test]
fn acknowledged_writes_survive_kill_9_mid_burst() {
    let dir = std::env::temp_dir().join(format!("meshd-store-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = dir.to_string_lossy().to_string();
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--data-dir", &data_dir]);
    let mut node = Node::start("cr1", node_ip(93, 1), &[], &args);
    assert!(wait_until(SPREAD, || node.alive_count() == 1).is_some());
    // Writers on their own threads, as fast as the node acknowledges; the node is killed while
    // they run. Each thread records the keys whose write was acknowledged (200).
    let ip = node.ip;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let client: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(2)))
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut acked = Vec::new();
                for i in 0..5_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("t{t}-{i}");
                    let url = format!("http://{ip}:{}/ha/stores/burst/{key}", common::HTTP_PORT);
                    let sent = client
                        .put(&url)
                        .header("Content-Type", "application/json")
                        .send(json!({"value": i}).to_string());
                    match sent {
                        Ok(r) if r.status().as_u16() == 200 => acked.push(key),
                        _ => break, // the node is gone
                    }
                }
                acked
            })
        })
        .collect();
    let acked_before_kill = wait_until(Duration::from_secs(20), || {
        node.metric("meshd_store_writes_total", "").unwrap_or(0.0) >= 400.0
    });
    assert!(acked_before_kill.is_some(), "the burst got going");
    node.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    assert!(acked.len() >= 400, "{} writes acknowledged", acked.len());
    node.restart();
    assert!(
        wait_until(SPREAD, || node.alive_count() == 1).is_some(),
        "restarted"
    );
    let (code, body) = node
        .get("/ha/stores/burst")
        .expect("the restarted node answers");
    assert_eq!(code, 200, "{body}");
    let held: std::collections::HashSet<&str> = body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["key"].as_str())
        .collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|k| !held.contains(k.as_str()))
        .collect();
    println!(
        "MEASURED: {} writes acknowledged before kill -9, {} keys on disk after restart, {} \
         acknowledged missing",
        acked.len(),
        held.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_cut_off_while_others_write_catches_up_by_itself() {
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend(["--store-sync-interval", "1s"]);
    let nodes = start_cluster("sc", 94, 3, &args);
    assert!(wait_until(SPREAD, || converged(&nodes)).is_some());
    // Stop node 3 (it misses every gossip payload), write, and let it come back.
    nodes[2].signal(libc::SIGSTOP);
    for i in 0..50 {
        let (code, _) = nodes[0]
            .send(
                "PUT",
                &format!("/ha/stores/kv/k{i}"),
                Some(&json!({"value": i})),
            )
            .expect("put");
        assert_eq!(code, 200);
    }
    nodes[0]
        .send(
            "POST",
            "/ha/stores/hits/total/incr",
            Some(&json!({"by": 50})),
        )
        .expect("incr");
    nodes[2].signal(libc::SIGCONT);
    let took = wait_until(Duration::from_secs(30), || {
        value_at(&nodes[2], "hits", "total") == Some(json!(50))
            && nodes[2]
                .get("/ha/stores/kv")
                .and_then(|(_, b)| b["entries"].as_array().map(Vec::len))
                == Some(50)
    });
    let took = took.expect("the cut-off node caught up");
    println!("MEASURED: a node stopped during 51 writes held all of them {took:?} after SIGCONT");
}

#[test]
fn the_cli_reads_and_writes_the_stores() {
    let node = Node::start("cl1", node_ip(95, 1), &[], FAST);
    assert!(wait_until(SPREAD, || node.alive_count() == 1).is_some());
    let addr = format!("{}:{}", node.ip, common::HTTP_PORT);
    let meshd = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_meshd"))
            .args(args)
            .args(["--http-addr", &addr])
            .output()
            .expect("meshd runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(
        meshd(&["store", "put", "kv", "greeting", "hello"]).1,
        "\"hello\"\n"
    );
    assert_eq!(
        meshd(&["store", "put", "kv", "n", "{\"a\":1}"]).1,
        "{\"a\":1}\n"
    );
    assert_eq!(meshd(&["store", "get", "kv", "greeting"]).1, "\"hello\"\n");
    assert_eq!(meshd(&["store", "incr", "c", "hits"]).1, "1\n");
    assert_eq!(meshd(&["store", "incr", "c", "hits", "-5"]).1, "-4\n");
    assert_eq!(meshd(&["store", "add", "s", "pool", "b"]).1, "[\"b\"]\n");
    assert_eq!(
        meshd(&["store", "add", "s", "pool", "a"]).1,
        "[\"a\",\"b\"]\n"
    );
    let (_, listing, _) = meshd(&["store", "ls"]);
    assert!(listing.starts_with("STORE"), "{listing}");
    assert!(
        listing.contains("kv") && listing.contains("lww"),
        "{listing}"
    );
    let (_, keys, _) = meshd(&["store", "ls", "kv"]);
    assert!(keys.contains("greeting  \"hello\""), "{keys}");
    let (code, _, err) = meshd(&["store", "incr", "kv", "greeting"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("agent answered 409"), "{err}");
    let (code, _, err) = meshd(&["store", "get", "kv", "absent"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("agent answered 404"), "{err}");
    let (code, out, _) = meshd(&["store", "del", "kv", "greeting"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("\"deleted\":true"), "{out}");
}

#[test]
fn a_joiner_gets_the_stores_from_its_seed() {
    let seed = Node::start("sj1", node_ip(96, 1), &[], FAST);
    assert!(wait_until(SPREAD, || seed.alive_count() == 1).is_some());
    for i in 0..20 {
        seed.send(
            "PUT",
            &format!("/ha/stores/kv/k{i}"),
            Some(&json!({"value": i})),
        )
        .expect("put");
    }
    let joiner = Node::start(
        "sj2",
        node_ip(96, 2),
        &[SocketAddr::from((node_ip(96, 1), MESH_PORT))],
        FAST,
    );
    let took = wait_until(SPREAD, || {
        joiner
            .get("/ha/stores/kv")
            .and_then(|(_, b)| b["entries"].as_array().map(Vec::len))
            == Some(20)
    });
    assert!(took.is_some(), "the joiner synced the seed's stores");
}

#[test]
fn a_whole_cluster_restarted_at_once_keeps_every_acknowledged_write() {
    let base = std::env::temp_dir().join(format!("meshd-store-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dirs: Vec<String> = (1..=3)
        .map(|i| base.join(format!("n{i}")).to_string_lossy().to_string())
        .collect();
    let seed = SocketAddr::from((node_ip(97, 1), MESH_PORT));
    let mut nodes: Vec<Node> = (1..=3u8)
        .map(|i| {
            let mut args: Vec<&str> = FAST.to_vec();
            args.extend(["--data-dir", dirs[usize::from(i) - 1].as_str()]);
            let seeds = if i == 1 { vec![] } else { vec![seed] };
            Node::start(&format!("rc{i}"), node_ip(97, i), &seeds, &args)
        })
        .collect();
    assert!(wait_until(SPREAD, || converged(&nodes)).is_some());
    // Writes at every node; each acknowledged write is on the disk of the node that took it.
    for i in 0..30 {
        let (code, _) = nodes[i % 3]
            .send(
                "PUT",
                &format!("/ha/stores/kv/k{i}"),
                Some(&json!({"value": i})),
            )
            .expect("put");
        assert_eq!(code, 200);
    }
    for node in nodes.iter_mut() {
        node.kill9();
    }
    for node in nodes.iter_mut() {
        node.restart();
    }
    let took = wait_until(Duration::from_secs(30), || {
        nodes.iter().all(|n| {
            n.get("/ha/stores/kv")
                .and_then(|(_, b)| b["entries"].as_array().map(Vec::len))
                == Some(30)
        })
    });
    assert!(
        took.is_some(),
        "every node holds all 30 writes after the restart"
    );
    drop(nodes);
    let _ = std::fs::remove_dir_all(&base);
}
