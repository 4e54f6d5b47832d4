//! Service tests: the leave gate, commands sent to a fake driver, and one server on
//! 127.0.0.1:0 answering both HTTP/1.1 and gRPC on the same port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, watch};
use tonic::Code;

use super::pb::membership_client::MembershipClient;
use super::*;
use crate::api::{self, Access, ApiState};
use crate::runtime::Snapshot;
use crate::swim::{MemberState, MemberView, NodeMeta};

const WAIT: Duration = Duration::from_secs(5);

fn local() -> MemberView {
    MemberView {
        name: "n1".into(),
        addr: "127.0.0.1:39527".parse().expect("literal address"),
        state: MemberState::Alive,
        incarnation: 1,
        meta: NodeMeta::default(),
        since: Instant::now(),
        is_local: true,
    }
}

/// A service over a fixed snapshot, and the receiving end of its command channel.
fn service(access: Access) -> (MembershipService, mpsc::Receiver<Command>, FakeFeed) {
    let (snapshots_tx, snapshots) = watch::channel(Snapshot::of_local(local(), Instant::now()));
    let (events, _) = broadcast::channel(16);
    let (commands, command_rx) = mpsc::channel(4);
    let feed = EventFeed::new(snapshots.clone(), events);
    let svc = MembershipService::new(
        feed,
        tokio::sync::broadcast::channel(16).0,
        commands,
        access,
    );
    (
        svc,
        command_rx,
        FakeFeed {
            _snapshots: snapshots_tx,
            snapshots,
        },
    )
}

/// Keeps the fake driver's snapshot channel open for the test's duration.
struct FakeFeed {
    _snapshots: watch::Sender<Snapshot>,
    snapshots: watch::Receiver<Snapshot>,
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn from<T>(addr: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let addr: SocketAddr = addr.parse().expect("literal address");
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

/// A request from a loopback caller (allowed to change the node).
fn loopback<T>(message: T) -> Request<T> {
    from("127.0.0.1:5000", message)
}

const TOKEN: &str = "0123456789abcdef-grpc";

fn with_token() -> Access {
    Access::with_token(TOKEN).expect("token")
}

/// A leave request from `addr` with `token` as bearer metadata.
fn leave_from(addr: &str, token: Option<&str>) -> Request<pb::LeaveRequest> {
    let mut request = from(addr, pb::LeaveRequest {});
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("metadata value");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[tokio::test]
async fn mutating_calls_need_loopback_or_the_token() {
    // (agent's policy, caller, bearer token, outcome)
    let cases = [
        (Access::loopback_only(), "127.0.0.1:5000", None, Ok(())),
        (Access::loopback_only(), "[::1]:5000", None, Ok(())),
        (
            Access::loopback_only(),
            "10.1.2.3:5000",
            Some(TOKEN),
            Err(Code::PermissionDenied),
        ),
        (with_token(), "10.1.2.3:5000", Some(TOKEN), Ok(())),
        (
            with_token(),
            "10.1.2.3:5000",
            Some("wrong"),
            Err(Code::Unauthenticated),
        ),
        (
            with_token(),
            "10.1.2.3:5000",
            None,
            Err(Code::Unauthenticated),
        ),
    ];
    for (access, caller, token, want) in cases {
        let (svc, mut commands, _feed) = service(access);
        let what = format!("{caller} with {token:?}");
        let result = svc.leave(leave_from(caller, token)).await;
        assert_eq!(
            result.as_ref().map(|_| ()).map_err(Status::code),
            want,
            "{what}"
        );
        let sent = commands.try_recv().is_ok();
        assert_eq!(sent, want.is_ok(), "{what}: command sent only when allowed");
        // SetTags is gated the same way (checked before anything reaches the driver).
        let mut set = Request::new(pb::SetTagsRequest::default());
        *set.extensions_mut() = leave_from(caller, token).extensions().clone();
        *set.metadata_mut() = leave_from(caller, token).metadata().clone();
        if want.is_err() {
            let refused = svc.set_tags(set).await.expect_err("refused");
            assert_eq!(Err(refused.code()), want, "{what}: SetTags");
            assert!(
                commands.try_recv().is_err(),
                "{what}: nothing sent for SetTags"
            );
        }
    }
}

#[tokio::test]
async fn set_tags_returns_the_drivers_incarnation_and_maps_refusals() {
    let (svc, mut commands, _feed) = service(Access::loopback_only());
    let driver = tokio::spawn(async move {
        let mut seen = Vec::new();
        let invalid = crate::swim::limits::check_tags(&tags(&[("", "x")])).expect_err("empty key");
        for answer in [
            Ok(7),
            Err(SetTagsRefused::Leaving),
            Err(SetTagsRefused::Invalid(invalid)),
        ] {
            match commands.recv().await {
                Some(Command::SetTags { tags, reply }) => {
                    seen.push(tags);
                    let _ = reply.send(answer);
                }
                other => panic!("unexpected command {other:?}"),
            }
        }
        seen
    });
    let request = pb::SetTagsRequest {
        tags: tags(&[("role", "gw")]),
    };
    let answer = svc
        .set_tags(loopback(request.clone()))
        .await
        .expect("accepted");
    assert_eq!(answer.into_inner().incarnation, 7);
    let refused = svc.set_tags(loopback(request)).await.expect_err("leaving");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let bad = svc
        .set_tags(loopback(pb::SetTagsRequest {
            tags: tags(&[("", "x")]),
        }))
        .await
        .expect_err("bad key");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("tag key must not be empty"), "{bad}");
    let seen = driver.await.expect("fake driver");
    assert_eq!(
        seen,
        [
            tags(&[("role", "gw")]),
            tags(&[("role", "gw")]),
            tags(&[("", "x")])
        ]
    );
}

#[tokio::test]
async fn set_tags_reports_unavailable_once_the_driver_is_gone() {
    let (svc, commands, _feed) = service(Access::loopback_only());
    drop(commands);
    let status = svc
        .set_tags(loopback(pb::SetTagsRequest::default()))
        .await
        .expect_err("no driver");
    assert_eq!(status.code(), Code::Unavailable);
}

/// One listener: HTTP/1.1 `/ha/status` and the JSON 404 still work, and a tonic client over
/// HTTP/2 lists members and starts a watch on the same port.
#[tokio::test]
async fn http_and_grpc_share_one_port() {
    let (svc, commands, feed) = service(Access::loopback_only());
    let _commands = commands;
    let (http_commands, _http_rx) = mpsc::channel(4);
    let state = ApiState {
        snapshots: feed.snapshots.clone(),
        commands: http_commands,
        events: tokio::sync::broadcast::channel(16).0,
        store_events: tokio::sync::broadcast::channel(16).0,
        load: tokio::sync::watch::channel(serde_json::Value::Null).0,
        access: Access::loopback_only(),
        metrics: Default::default(),
        server: Default::default(),
    };
    let listener = api::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(api::serve_with_grpc(
        listener,
        state,
        svc,
        None,
        std::future::pending(),
    ));

    let base = format!("http://{addr}");
    let http = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let status = agent
                .get(format!("{base}/ha/status"))
                .call()
                .expect("status answers");
            let missing = agent
                .get(format!("{base}/nope"))
                .call()
                .expect("404 answers");
            (status.status().as_u16(), missing.status().as_u16())
        }
    })
    .await
    .expect("http thread");
    assert_eq!(http, (200, 404));

    let channel = tonic::transport::Endpoint::from_shared(base)
        .expect("valid uri")
        .connect()
        .await
        .expect("h2c connection");
    let mut client = MembershipClient::new(channel);
    let list = tokio::time::timeout(WAIT, client.list_members(pb::ListMembersRequest {}))
        .await
        .expect("in time")
        .expect("list answered")
        .into_inner();
    assert_eq!(list.local_name, "n1");
    assert_eq!(list.members.len(), 1);
    assert_eq!(list.members[0].state(), pb::MemberState::Alive);

    let mut stream = client
        .watch_membership(pb::WatchMembershipRequest {})
        .await
        .expect("watch starts")
        .into_inner();
    let first = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("in time")
        .expect("no error")
        .expect("one message");
    assert!(matches!(
        first.event,
        Some(pb::watch_membership_response::Event::Snapshot(ref s)) if s.members.len() == 1
    ));
}

/// The gRPC service over a real runtime, for loopback callers.
fn loopback_service(runtime: &crate::runtime::Runtime) -> MembershipService {
    MembershipService::new(
        runtime.feed(),
        runtime.store_events(),
        runtime.commands(),
        Access::loopback_only(),
    )
}

/// A real runtime for a node "solo" on 127.0.0.1 with `meta`, alone (no seeds).
async fn solo_runtime(meta: NodeMeta) -> crate::runtime::Runtime {
    use crate::runtime::{Runtime, RuntimeConfig};
    use crate::swim::{self, Identity};

    let bind: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let config = RuntimeConfig {
        identity: Identity {
            name: "solo".into(),
            addr: bind,
            meta,
        },
        bind,
        swim: swim::Config::default(),
        seeds: Vec::new(),
        leave_timeout: Duration::from_secs(1),
        exchange_timeout: Duration::from_secs(1),
        trust: crate::runtime::TrustConfig::default(),
        stores: crate::store::StoreConfig::default(),
        data_dir: None,
        expect_nodes: None,
    };
    Runtime::start(config).await.expect("runtime starts")
}

/// Through a real driver: SetTags keeps region and zone, raises the incarnation by one, and a
/// watcher started before sees exactly that change next.
#[tokio::test]
async fn set_tags_through_the_driver_keeps_region_and_is_watched() {
    let meta = NodeMeta {
        region: "eu".into(),
        zone: "eu-1a".into(),
        tags: tags(&[("old", "1")]),
    };
    let runtime = solo_runtime(meta).await;
    let svc = loopback_service(&runtime);
    let mut snapshots = runtime.snapshots();
    tokio::time::timeout(
        WAIT,
        snapshots.wait_for(|s| s.local.state == MemberState::Alive),
    )
    .await
    .expect("alone node is ALIVE in time")
    .expect("driver runs");

    let (tx, mut rx) = mpsc::channel(super::watch::WATCH_QUEUE);
    tokio::spawn(super::watch::forward(runtime.feed(), tx));
    let first = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("in time");
    let Some(Ok(pb::WatchMembershipResponse {
        event: Some(pb::watch_membership_response::Event::Snapshot(snapshot)),
    })) = first
    else {
        panic!("snapshot first, got {first:?}");
    };

    let incarnation = svc
        .set_tags(loopback(pb::SetTagsRequest {
            tags: tags(&[("role", "gw")]),
        }))
        .await
        .expect("accepted")
        .into_inner()
        .incarnation;
    assert_eq!(incarnation, 2);
    let local = svc.feed.snapshot().local;
    assert_eq!(local.meta.tags, tags(&[("role", "gw")]));
    assert_eq!(
        (local.meta.region.as_str(), local.meta.zone.as_str()),
        ("eu", "eu-1a")
    );

    let next = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("in time");
    let Some(Ok(pb::WatchMembershipResponse {
        event: Some(pb::watch_membership_response::Event::Change(change)),
    })) = next
    else {
        panic!("a change next, got {next:?}");
    };
    assert_eq!(change.seq, snapshot.last_event_seq + 1);
    assert_eq!(change.reason, "metadata changed");
    let member = change.member.expect("member");
    assert_eq!((member.name.as_str(), member.incarnation), ("solo", 2));
    runtime.close().await;
}

/// The `Stores` service through a real driver: writes of every kind answer the new value, a
/// remote caller without the token is refused, reads see what was written, and a watcher gets
/// the snapshot and then exactly the later change.
#[tokio::test]
async fn stores_service_writes_reads_and_watches_through_the_driver() {
    use super::pb::stores_server::Stores as _;
    use super::pb::write_request::Op as WriteOp;
    let runtime = solo_runtime(NodeMeta::default()).await;
    let svc = stores::StoresService {
        commands: runtime.commands(),
        events: runtime.store_events(),
        snapshots: runtime.snapshots(),
        access: Access::loopback_only(),
    };
    let write = |store: &str, key: &str, op: WriteOp| pb::WriteRequest {
        store: store.into(),
        key: key.into(),
        op: Some(op),
    };
    let put = svc
        .write(loopback(write(
            "kv",
            "a",
            WriteOp::PutJson("{\"x\":1}".into()),
        )))
        .await
        .expect("put accepted")
        .into_inner();
    assert_eq!(
        (put.key.as_str(), put.value_json.as_str()),
        ("a", "{\"x\":1}")
    );
    let incr = svc
        .write(loopback(write("c", "hits", WriteOp::Incr(5))))
        .await
        .expect("incr accepted")
        .into_inner();
    assert_eq!(incr.value_json, "5");
    let refused = svc
        .write(from("192.0.2.1:5000", write("c", "hits", WriteOp::Incr(1))))
        .await
        .expect_err("a remote caller without a token is refused");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let wrong_kind = svc
        .write(loopback(write("kv", "a", WriteOp::Incr(1))))
        .await
        .expect_err("another kind");
    assert_eq!(wrong_kind.code(), Code::FailedPrecondition);
    let missing = svc
        .get_entry(Request::new(pb::GetEntryRequest {
            store: "kv".into(),
            key: "nope".into(),
        }))
        .await
        .expect_err("absent");
    assert_eq!(missing.code(), Code::NotFound);
    let listed = svc
        .list_stores(Request::new(pb::ListStoresRequest {}))
        .await
        .expect("list")
        .into_inner();
    let names: Vec<(&str, &str)> = listed
        .stores
        .iter()
        .map(|s| (s.name.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(names, [("c", "counter"), ("kv", "lww")]);

    let mut stream = svc
        .watch_store(Request::new(pb::WatchStoreRequest { store: "c".into() }))
        .await
        .expect("watch")
        .into_inner();
    use tokio_stream::StreamExt as _;
    let first = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("in time")
        .expect("a message")
        .expect("ok");
    let Some(pb::watch_store_response::Event::Snapshot(snapshot)) = first.event else {
        panic!("a snapshot first, got {first:?}");
    };
    assert_eq!(snapshot.entries.len(), 1);
    assert_eq!(snapshot.entries[0].value_json, "5");
    svc.write(loopback(write("c", "hits", WriteOp::Incr(-2))))
        .await
        .expect("incr accepted");
    let next = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("in time")
        .expect("a message")
        .expect("ok");
    let Some(pb::watch_store_response::Event::Change(change)) = next.event else {
        panic!("a change next, got {next:?}");
    };
    let entry = change.entry.expect("entry");
    assert_eq!(
        (entry.key.as_str(), entry.value_json.as_str()),
        ("hits", "3")
    );
    assert!(change.local);
    runtime.close().await;
}

/// Through a real driver: the node alone leads itself with a quorum of one, owns every key,
/// and an empty key is INVALID_ARGUMENT.
#[tokio::test]
async fn leader_and_owner_through_the_driver() {
    let runtime = solo_runtime(NodeMeta::default()).await;
    let svc = loopback_service(&runtime);
    let mut snapshots = runtime.snapshots();
    tokio::time::timeout(
        WAIT,
        snapshots.wait_for(|s| s.leader.leader.as_deref() == Some("solo")),
    )
    .await
    .expect("the node alone names itself leader in time")
    .expect("driver runs");
    let leader = svc
        .get_leader(Request::new(pb::GetLeaderRequest {}))
        .await
        .expect("leader answers")
        .into_inner();
    assert_eq!(leader.leader, "solo");
    assert!(leader.has_quorum);
    assert_eq!((leader.alive, leader.expected), (1, 1));
    let owner = svc
        .get_owner(Request::new(pb::GetOwnerRequest {
            key: "job-7".into(),
        }))
        .await
        .expect("owner answers")
        .into_inner();
    assert_eq!(
        (owner.key.as_str(), owner.owner.as_str()),
        ("job-7", "solo")
    );
    let empty = svc
        .get_owner(Request::new(pb::GetOwnerRequest { key: String::new() }))
        .await
        .expect_err("empty key");
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
}
