//! One HTTP request through the API router, in-process (`tower::ServiceExt::oneshot`), as the
//! server would route it. No panic, no hang; no 5xx but those the API documents (503 from
//! `/ha/health` while joining or leaving, 503 from the mutating routes once the driver is
//! gone); every error body is the documented JSON. A stand-in driver answers keyring commands
//! with a refusal (409), as a node without a keyring does, and store reads and writes with a
//! real stores core; a store watch (an endless event stream) is judged by its head.
//!
//! Input format, so seeds stay readable and mutations stay meaningful:
//! ```text
//! METHOD TARGET [FLAGS]\n      FLAGS: r remote caller, j node joining, l leaving, x driver gone
//! Name: value\n                at most 8 header lines, until an empty line
//! \n
//! body bytes
//! ```

#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use axum::Router;
use libfuzzer_sys::fuzz_target;
use meshd::api::{router, Access, ApiState};
use meshd::runtime::replication::Replication;
use meshd::runtime::{Command, Snapshot};
use meshd::store::{StoreConfig, Stores};
use meshd::swim::{MemberState, MemberView};
use meshd_fuzz::fixture;
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::sync::{broadcast, mpsc, watch};
use tower::ServiceExt;

const MAX_HEADERS: usize = 8;
/// Node states the API can be asked in: one router each.
const STATES: [MemberState; 3] = [MemberState::Alive, MemberState::Init, MemberState::Leaving];

/// What the request line's flags select.
#[derive(Clone, Copy)]
struct Flags {
    remote: bool,
    state: usize,
    driver_gone: bool,
}

/// One router per (node state, driver alive or gone), built once: the fuzz loop only routes.
struct Harness {
    rt: Runtime,
    /// Indexed by `state * 2 + driver_gone`.
    routers: Vec<Router>,
    _snapshots: Vec<watch::Sender<Snapshot>>,
}

fn member(name: &str, i: usize, state: MemberState, since: Instant, local: bool) -> MemberView {
    MemberView {
        name: name.into(),
        addr: if local {
            fixture::local_addr()
        } else {
            fixture::peer_addr(i)
        },
        state,
        incarnation: 1,
        meta: fixture::meta(),
        since,
        is_local: local,
    }
}

fn snapshot(state: MemberState) -> Snapshot {
    let now = Instant::now();
    let since = now.checked_sub(Duration::from_secs(2)).unwrap_or(now);
    let local = member(fixture::LOCAL, 0, state, since, true);
    let mut snap = Snapshot::of_local(local.clone(), now);
    let peer_states = [
        MemberState::Alive,
        MemberState::Suspected,
        MemberState::Down,
    ];
    let mut members = vec![local];
    for (i, (name, s)) in fixture::PEERS.iter().zip(peer_states).enumerate() {
        members.push(member(name, i, s, since, false));
    }
    snap.members = members.into();
    snap
}

impl Harness {
    fn new() -> Self {
        // Timers, as the agent's runtime has them: the store watch's keep-alive needs one.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime");
        let mut harness = Harness {
            rt,
            routers: Vec::new(),
            _snapshots: Vec::new(),
        };
        for state in STATES {
            for driver_gone in [false, true] {
                let (snap_tx, snapshots) = watch::channel(snapshot(state));
                let (commands, rx) = mpsc::channel(1);
                if driver_gone {
                    drop(rx);
                } else {
                    harness.rt.spawn(stand_in_driver(rx));
                }
                harness._snapshots.push(snap_tx);
                harness.routers.push(router(ApiState {
                    snapshots,
                    commands,
                    events: tokio::sync::broadcast::channel(16).0,
                    store_events: tokio::sync::broadcast::channel(16).0,
                    load: watch::channel(serde_json::Value::Null).0,
                    access: Access::loopback_only(),
                    metrics: Default::default(),
                    server: Default::default(),
                }));
            }
        }
        harness
    }
}

/// Takes every command, so a handler never waits on a full channel, and refuses keyring
/// commands. Runs whenever the fuzz loop drives the runtime.
/// Answers keyring commands as a node without a keyring does, and store reads and writes
/// with a real (in-memory) stores core.
async fn stand_in_driver(mut rx: mpsc::Receiver<Command>) {
    let stores = Stores::new(StoreConfig::default(), fixture::LOCAL, 1);
    let mut replication = Replication::new(stores, None, broadcast::channel(16).0);
    while let Some(command) = rx.recv().await {
        match command {
            Command::Keys { reply, .. } => {
                let _ = reply.send(Err("no keyring in the fuzz harness".into()));
            }
            Command::StoreWrite {
                store,
                key,
                op,
                reply,
            } => replication.write(&store, &key, op, reply),
            Command::StoreRead { query, reply } => {
                let _ = reply.send(replication.read(query));
            }
            _ => {}
        }
    }
}

thread_local! {
    static HARNESS: RefCell<Harness> = RefCell::new(Harness::new());
}

fn parse(data: &[u8]) -> Option<(Request<Body>, Flags)> {
    let mut lines = data.splitn(MAX_HEADERS + 2, |&b| b == b'\n');
    let request_line = lines.next()?;
    let mut tokens = request_line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    let method = Method::from_bytes(tokens.next()?).ok()?;
    let uri = Uri::try_from(tokens.next()?).ok()?;
    let flag_bytes = tokens.next().unwrap_or_default();
    let flags = Flags {
        remote: flag_bytes.contains(&b'r'),
        state: if flag_bytes.contains(&b'j') {
            1
        } else if flag_bytes.contains(&b'l') {
            2
        } else {
            0
        },
        driver_gone: flag_bytes.contains(&b'x'),
    };
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .ok()?;
    let mut body: &[u8] = &[];
    let mut rest = data.get(request_line.len() + 1..).unwrap_or_default();
    for line in lines {
        rest = rest.get(line.len() + 1..).unwrap_or_default();
        if line.is_empty() {
            body = rest;
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            request.headers_mut().append(name, value);
        }
    }
    *request.body_mut() = Body::from(body.to_vec());
    // The server inserts the caller's address into every request; the shutdown handler needs it.
    let peer: SocketAddr = if flags.remote {
        "192.0.2.7:40000".parse().expect("literal address")
    } else {
        "127.0.0.1:40000".parse().expect("literal address")
    };
    request.extensions_mut().insert(ConnectInfo(peer));
    Some((request, flags))
}

fuzz_target!(|data: &[u8]| {
    let Some((request, flags)) = parse(data) else {
        return;
    };
    let head = request.method() == Method::HEAD;
    HARNESS.with_borrow_mut(|h| {
        let router = h.routers[flags.state * 2 + usize::from(flags.driver_gone)].clone();
        let (status, body) = h.rt.block_on(async move {
            let response = router.oneshot(request).await.expect("router is infallible");
            let status = response.status();
            // An event stream (a store watch) never ends: its head is the answer.
            let streaming = response
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            if streaming {
                return (status, Default::default());
            }
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("body is readable");
            (status, body)
        });
        check(status, &body, head, flags);
    });
});

fn check(status: StatusCode, body: &[u8], head: bool, flags: Flags) {
    if status.is_success() || status.is_redirection() || head {
        return;
    }
    let json: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {body:?}"));
    let health_word = json["status"].as_str();
    let unhealthy = flags.state != 0
        && status == StatusCode::SERVICE_UNAVAILABLE
        && matches!(health_word, Some("joining" | "leaving"));
    if unhealthy {
        return;
    }
    let error = json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{status} body has no \"error\" string: {json}"));
    if status.is_server_error() {
        // Remote callers of mutating routes are turned away before the driver is asked; reads
        // (the stores') reach it from anywhere.
        let driver_gone = flags.driver_gone
            && status == StatusCode::SERVICE_UNAVAILABLE
            && matches!(
                error,
                "node is already shutting down" | "node is shutting down"
            );
        assert!(driver_gone, "undocumented {status}: {json}");
    }
}
