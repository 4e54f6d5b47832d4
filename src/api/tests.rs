//! Router tests over hand-made snapshots, served on 127.0.0.1:0 and called with ureq.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::{serve, ApiState};
use crate::runtime::{Command, Snapshot};
use crate::swim::{MemberState, MemberView, NodeMeta};

fn member(name: &str, port: u16, state: MemberState, local: bool, at: Instant) -> MemberView {
    let mut tags = BTreeMap::new();
    tags.insert("role".to_string(), "gw".to_string());
    MemberView {
        name: name.to_string(),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        state,
        incarnation: 3,
        meta: NodeMeta {
            region: "eu".into(),
            zone: "eu-1a".into(),
            tags,
        },
        since: at,
        is_local: local,
    }
}

/// A node "n2" (in `local_state`) with peers n1 ALIVE, n3 SUSPECTED, n4 DOWN, n5 LEAVING,
/// listed out of order to check sorting.
fn snapshot(local_state: MemberState) -> Snapshot {
    let taken_at = Instant::now();
    // Every state changed 1.5 s ago (when the clock allows looking that far back).
    let since = taken_at
        .checked_sub(Duration::from_millis(1500))
        .unwrap_or(taken_at);
    let local = member("n2", 2, local_state, true, since);
    let mut snap = Snapshot::of_local(local.clone(), taken_at);
    snap.members = vec![
        member("n5", 5, MemberState::Leaving, false, since),
        local,
        member("n3", 3, MemberState::Suspected, false, since),
        member("n1", 1, MemberState::Alive, false, since),
        member("n4", 4, MemberState::Down, false, since),
    ]
    .into();
    snap.health_score = 2;
    snap.leader = crate::coordination::leader(snap.members.iter(), None);
    snap.leader_since = since;
    snap
}

struct Server {
    base: String,
    commands: mpsc::Receiver<Command>,
    _snapshots: watch::Sender<Snapshot>,
}

async fn start(snap: Snapshot) -> Server {
    let (snapshot_tx, snapshots) = watch::channel(snap);
    let (commands_tx, commands) = mpsc::channel(4);
    let listener = super::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let state = ApiState {
        snapshots,
        commands: commands_tx,
        events: tokio::sync::broadcast::channel(16).0,
        store_events: tokio::sync::broadcast::channel(16).0,
        load: tokio::sync::watch::channel(serde_json::Value::Null).0,
        access: crate::api::Access::loopback_only(),
        metrics: Default::default(),
        server: Default::default(),
    };
    tokio::spawn(serve(listener, state, std::future::pending()));
    Server {
        base: format!("http://{addr}"),
        commands,
        _snapshots: snapshot_tx,
    }
}

/// Calls the API from a blocking thread; returns status code and parsed JSON body.
async fn call(method: &'static str, url: String) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let response = match method {
            "GET" => agent.get(&url).call(),
            "POST" => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send("{}"),
            "POST-PLAIN" => agent.post(&url).send("x"),
            "DELETE" => agent.delete(&url).call(),
            other => panic!("unsupported method {other}"),
        };
        let mut response = response.expect("request");
        let code = response.status().as_u16();
        let body: Value = response.body_mut().read_json().expect("json body");
        (code, body)
    })
    .await
    .expect("client thread")
}

#[tokio::test]
async fn status_lists_every_member_sorted_with_real_counts() {
    let server = start(snapshot(MemberState::Alive)).await;
    let (code, body) = call("GET", format!("{}/ha/status", server.base)).await;
    assert_eq!(code, 200);
    assert_eq!(body["node_name"], "n2");
    assert_eq!(body["node_count"], 5);
    let names: Vec<&str> = body["nodes"]
        .as_array()
        .expect("nodes array")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["n1", "n2", "n3", "n4", "n5"]);
    let n3 = &body["nodes"][2];
    assert_eq!(n3["status"], "2");
    assert_eq!(n3["state"], "SUSPECTED");
    assert_eq!(n3["version"], 3);
    assert_eq!(n3["incarnation"], 3);
    assert_eq!(n3["address"], "127.0.0.1:3");
    assert_eq!(n3["region"], "eu");
    assert_eq!(n3["zone"], "eu-1a");
    assert_eq!(n3["tags"]["role"], "gw");
    let since_ms = n3["since_ms"].as_u64().expect("since_ms is a number");
    assert!((1500..60_000).contains(&since_ms), "since_ms {since_ms}");
    assert_eq!(body["nodes"][4]["status"], "4");
    let stores = &body["stores"];
    assert_eq!(stores["membership_count"], 5);
    assert_eq!(stores["alive_count"], 2);
    assert_eq!(stores["suspected_count"], 1);
    assert_eq!(stores["down_count"], 1);
    assert_eq!(stores["leaving_count"], 1);
}

#[tokio::test]
async fn leader_names_the_lowest_alive_member_and_the_quorum_it_sees() {
    let server = start(snapshot(MemberState::Alive)).await;
    let (code, body) = call("GET", format!("{}/ha/leader", server.base)).await;
    assert_eq!(code, 200);
    // n1 and n2 ALIVE of n1-n4 (n5 is LEAVING): 2 of 4 is no majority.
    assert_eq!(body["leader"], "n1");
    assert_eq!(body["alive"], 2);
    assert_eq!(body["expected"], 4);
    assert_eq!(body["has_quorum"], false);
    let since_ms = body["since_ms"].as_u64().expect("since_ms is a number");
    assert!((1500..60_000).contains(&since_ms), "since_ms {since_ms}");
}

#[tokio::test]
async fn owner_is_an_alive_member_and_bad_keys_are_400() {
    let server = start(snapshot(MemberState::Alive)).await;
    for key in ["job-1", "job-2", "a%20b", "%E2%9C%93"] {
        let (code, body) = call("GET", format!("{}/ha/owner/{key}", server.base)).await;
        assert_eq!(code, 200, "{key}: {body}");
        let owner = body["owner"].as_str().expect("an owner");
        assert!(["n1", "n2"].contains(&owner), "{key} owned by {owner}");
    }
    let (_, body) = call("GET", format!("{}/ha/owner/a%20b", server.base)).await;
    assert_eq!(body["key"], "a b");
    let long = "k".repeat(super::coordination::MAX_OWNER_KEY_BYTES + 1);
    let (code, body) = call("GET", format!("{}/ha/owner/{long}", server.base)).await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("1025 bytes")),
        "{body}"
    );
    let (code, _) = call("GET", format!("{}/ha/owner/%FF", server.base)).await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn health_is_200_when_alive() {
    let server = start(snapshot(MemberState::Alive)).await;
    let (code, body) = call("GET", format!("{}/ha/health", server.base)).await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["node_name"], "n2");
    // n1, n2 ALIVE + n3 SUSPECTED.
    assert_eq!(body["cluster_size"], 3);
    assert_eq!(body["stores_healthy"], true);
    assert_eq!(body["state"], "ALIVE");
    assert_eq!(body["incarnation"], 3);
    assert_eq!(body["health_score"], 2);
}

#[tokio::test]
async fn health_is_503_while_joining_or_leaving() {
    for (state, word, name) in [
        (MemberState::Init, "joining", "INIT"),
        (MemberState::Leaving, "leaving", "LEAVING"),
    ] {
        let server = start(snapshot(state)).await;
        let (code, body) = call("GET", format!("{}/ha/health", server.base)).await;
        assert_eq!(code, 503, "{state:?}");
        assert_eq!(body["status"], word);
        assert_eq!(body["state"], name);
        assert_eq!(body["node_name"], "n2");
    }
}

#[tokio::test]
async fn shutdown_from_loopback_sends_leave() {
    let mut server = start(snapshot(MemberState::Alive)).await;
    let (code, body) = call("POST", format!("{}/ha/shutdown", server.base)).await;
    assert_eq!(code, 202);
    assert_eq!(body["status"], "shutdown initiated");
    let command = tokio::time::timeout(Duration::from_secs(5), server.commands.recv()).await;
    assert!(matches!(command, Ok(Some(Command::Leave))), "{command:?}");
}

#[tokio::test]
async fn a_post_that_does_not_declare_json_is_refused_and_does_nothing() {
    let mut server = start(snapshot(MemberState::Alive)).await;
    let (code, body) = call("POST-PLAIN", format!("{}/ha/shutdown", server.base)).await;
    assert_eq!(code, 415);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("application/json")),
        "{body}"
    );
    assert!(
        server.commands.try_recv().is_err(),
        "no leave for a refused call"
    );
}

/// The router called directly, as if from `peer`, with optional extra headers.
async fn call_as(
    state: ApiState,
    peer: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request
        .body(axum::body::Body::from(body.to_string()))
        .expect("request");
    let peer: SocketAddr = peer.parse().expect("peer");
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let response = super::router(state).oneshot(request).await.expect("answer");
    let code = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn state_with(
    access: crate::api::Access,
) -> (ApiState, mpsc::Receiver<Command>, watch::Sender<Snapshot>) {
    let (snapshot_tx, snapshots) = watch::channel(snapshot(MemberState::Alive));
    let (commands, rx) = mpsc::channel(4);
    let state = ApiState {
        snapshots,
        commands,
        events: tokio::sync::broadcast::channel(16).0,
        store_events: tokio::sync::broadcast::channel(16).0,
        load: tokio::sync::watch::channel(serde_json::Value::Null).0,
        access,
        metrics: Default::default(),
        server: Default::default(),
    };
    (state, rx, snapshot_tx)
}

#[tokio::test]
async fn remote_callers_need_the_token_for_every_mutating_route() {
    let token = "0123456789abcdef-http";
    let bearer = format!("Bearer {token}");
    let json = ("Content-Type", "application/json");
    let key = r#"{"key": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}"#;
    let routes = [
        ("POST", "/ha/shutdown", "{}"),
        ("GET", "/ha/keys", ""),
        ("POST", "/ha/keys/install", key),
        ("POST", "/ha/keys/use", key),
        ("POST", "/ha/keys/remove", key),
    ];
    for (method, path, body) in routes {
        let (state, mut rx, _keep) = state_with(crate::api::Access::loopback_only());
        let (code, answer) = call_as(state, "10.1.2.3:5000", method, path, &[json], body).await;
        assert_eq!(code, 403, "{method} {path}: {answer}");
        assert!(rx.try_recv().is_err(), "{method} {path}: nothing sent");
        let access = crate::api::Access::with_token(token).expect("token");
        let (state, mut rx, _keep) = state_with(access.clone());
        let (code, _) = call_as(state, "10.1.2.3:5000", method, path, &[json], body).await;
        assert_eq!(code, 401, "{method} {path} without the token");
        assert!(rx.try_recv().is_err(), "{method} {path}: nothing sent");
        // With the token the call reaches the driver (no driver here: the channel shows it).
        let (state, mut rx, _keep) = state_with(access);
        let headers = [json, ("Authorization", bearer.as_str())];
        let call = call_as(state, "10.1.2.3:5000", method, path, &headers, body);
        let (_, _) = tokio::time::timeout(Duration::from_millis(200), call)
            .await
            .unwrap_or((0, Value::Null));
        assert!(
            rx.try_recv().is_ok(),
            "{method} {path}: sent with the token"
        );
    }
    // Read-only routes stay open to anyone.
    let (state, _rx, _keep) = state_with(crate::api::Access::loopback_only());
    let (code, _) = call_as(state, "10.1.2.3:5000", "GET", "/ha/status", &[], "").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn key_commands_check_their_body_and_report_the_driver_answer() {
    let (state, mut rx, _keep) = state_with(crate::api::Access::loopback_only());
    let json = ("Content-Type", "application/json");
    let local = "127.0.0.1:5000";
    let cases = [
        (r#"{"key": "not a key"}"#, 400),
        (r#"{"nope": 1}"#, 422),
        ("{", 400),
    ];
    for (body, want) in cases {
        let (code, answer) = call_as(
            state.clone(),
            local,
            "POST",
            "/ha/keys/install",
            &[json],
            body,
        )
        .await;
        assert_eq!(code, want, "{body}: {answer}");
        assert!(answer["error"].is_string(), "{body}: JSON error");
    }
    let huge = format!(r#"{{"key": "{}"}}"#, "A".repeat(super::MAX_BODY_BYTES));
    let (code, _) = call_as(
        state.clone(),
        local,
        "POST",
        "/ha/keys/install",
        &[json],
        &huge,
    )
    .await;
    assert_eq!(code, 413);
    assert!(rx.try_recv().is_err(), "no command for a refused body");
    let driver = tokio::spawn(async move {
        match rx.recv().await {
            Some(Command::Keys { change, reply }) => {
                assert!(change.is_some());
                let _ = reply.send(Err("key 0102030405060708 is not installed".into()));
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    let body = r#"{"key": "0102030405060708"}"#;
    let (code, answer) = call_as(state, local, "POST", "/ha/keys/remove", &[json], body).await;
    assert_eq!(code, 409, "{answer}");
    assert_eq!(answer["error"], "key 0102030405060708 is not installed");
    driver.await.expect("fake driver");
}

#[tokio::test]
async fn unknown_path_and_wrong_method_are_json_errors() {
    let server = start(snapshot(MemberState::Alive)).await;
    let (code, body) = call("GET", format!("{}/x", server.base)).await;
    assert_eq!(code, 404);
    assert_eq!(body["error"], "no route for GET /x");
    let (code, body) = call("GET", format!("{}/ha/shutdown", server.base)).await;
    assert_eq!(code, 405);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("GET")),
        "{body}"
    );
    let (code, body) = call("DELETE", format!("{}/ha/status", server.base)).await;
    assert_eq!(code, 405);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn the_gateway_load_is_a_small_object_from_a_permitted_caller() {
    let json = ("Content-Type", "application/json");
    let (state, _rx, _keep) = state_with(crate::api::Access::loopback_only());
    let load = state.load.subscribe();
    let put = |state: ApiState, peer: &'static str, body: &'static str| async move {
        call_as(state, peer, "PUT", "/ha/self/load", &[json], body).await
    };
    let (code, _) = put(state.clone(), "10.1.2.3:5000", r#"{"in_flight": 1}"#).await;
    assert_eq!(code, 403, "a remote caller without the token");
    assert_eq!(*load.borrow(), Value::Null, "nothing taken");
    let (code, body) = put(state.clone(), "127.0.0.1:5000", r#"{"in_flight": 7}"#).await;
    assert_eq!((code, &body["load"]["in_flight"]), (200, &Value::from(7)));
    assert_eq!(load.borrow()["in_flight"], 7);
    let (code, body) = put(state.clone(), "127.0.0.1:5000", "[1, 2]").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = put(state.clone(), "127.0.0.1:5000", r#"{"a": {"nested": 1}}"#).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("field a holds")),
        "{body}"
    );
    assert_eq!(
        load.borrow()["in_flight"],
        7,
        "a refused load changes nothing"
    );
}

#[tokio::test]
async fn the_vitals_store_is_not_writable_through_the_api() {
    let json = ("Content-Type", "application/json");
    let (state, mut rx, _keep) = state_with(crate::api::Access::loopback_only());
    let (code, body) = call_as(
        state,
        "127.0.0.1:5000",
        "PUT",
        "/ha/stores/nodes/n2",
        &[json],
        r#"{"value": {"rss_bytes": 1}}"#,
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("written by meshd itself")),
        "{body}"
    );
    assert!(rx.try_recv().is_err(), "nothing reached the driver");
}
