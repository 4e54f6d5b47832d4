//! The gRPC client API against real `meshd agent` processes on loopback (subnets 40–49): a
//! tonic client on the HTTP port lists members, watches a kill -9 become SUSPECTED then DOWN,
//! sets tags that spread to peers, and makes a node leave. Every wait has a deadline.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::time::{timeout, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Streaming};

use common::*;
use meshd::api::grpc::pb::membership_client::MembershipClient;
use meshd::api::grpc::pb::watch_membership_response::Event as Message;
use meshd::api::grpc::pb::{
    self, ListMembersRequest, MemberState, SetTagsRequest, WatchMembershipRequest,
    WatchMembershipResponse,
};

/// How often polling loops re-ask.
const POLL: Duration = Duration::from_millis(100);

/// Connects a gRPC client to the node at `ip`, retrying while the process starts.
async fn connect(ip: Ipv4Addr) -> MembershipClient<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{ip}:{HTTP_PORT}"))
        .expect("valid uri")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match endpoint.connect().await {
            Ok(channel) => return MembershipClient::new(channel),
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {ip}: {e}"),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// This node's member list, or None if the call failed.
async fn members(client: &mut MembershipClient<Channel>) -> Option<Vec<pb::Member>> {
    let response = client.list_members(ListMembersRequest {}).await.ok()?;
    Some(response.into_inner().members)
}

/// Polls `ListMembers` until `check` holds; panics with the last list after `limit`.
async fn wait_members(
    client: &mut MembershipClient<Channel>,
    what: &str,
    limit: Duration,
    check: impl Fn(&[pb::Member]) -> bool,
) -> Vec<pb::Member> {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(list) = members(client).await {
            if check(&list) {
                return list;
            }
            last = Some(list);
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("not within {limit:?}: {what}; last list {last:#?}")
}

fn state_of(list: &[pb::Member], name: &str) -> Option<MemberState> {
    list.iter().find(|m| m.name == name).map(|m| m.state())
}

fn all_alive(list: &[pb::Member], count: usize) -> bool {
    list.len() == count && list.iter().all(|m| m.state() == MemberState::Alive)
}

/// The next stream message within `limit`.
async fn next(stream: &mut Streaming<WatchMembershipResponse>, limit: Duration) -> Message {
    timeout(limit, stream.message())
        .await
        .expect("a watch message in time")
        .expect("stream without error")
        .expect("stream still open")
        .event
        .expect("message carries an event")
}

/// ListMembers shows a converged cluster; a watcher starts with a snapshot of it and then sees
/// a kill -9'd member become SUSPECTED, then DOWN, with consecutive sequence numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_watch_see_a_crash_as_suspected_then_down() {
    let mut nodes = start_cluster("gw", 40, 3, FAST);
    let mut client = connect(nodes[0].ip).await;
    let list = wait_members(
        &mut client,
        "3 members ALIVE",
        Duration::from_secs(20),
        |l| all_alive(l, 3),
    )
    .await;
    let names: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["gw1", "gw2", "gw3"], "sorted by name");
    assert!(list[0].is_local && !list[1].is_local);
    assert_eq!(list[2].address, format!("{}:{MESH_PORT}", nodes[2].ip));

    let mut stream = client
        .watch_membership(WatchMembershipRequest {})
        .await
        .expect("watch starts")
        .into_inner();
    let Message::Snapshot(snapshot) = next(&mut stream, Duration::from_secs(5)).await else {
        panic!("the first message is a snapshot");
    };
    assert!(!snapshot.resync);
    assert_eq!(snapshot.local_name, "gw1");
    assert!(all_alive(&snapshot.members, 3), "{snapshot:#?}");

    nodes[2].kill9();
    let crashed_at = Instant::now();
    let mut expected_seq = snapshot.last_event_seq + 1;
    let mut states = Vec::new();
    while states.last() != Some(&MemberState::Down) {
        let left = Duration::from_secs(40).saturating_sub(crashed_at.elapsed());
        match next(&mut stream, left).await {
            Message::Change(change) => {
                assert_eq!(change.seq, expected_seq, "no gap, no duplicate");
                expected_seq += 1;
                let member = change.member.expect("a change names its member");
                if member.name == "gw3" {
                    states.push(member.state());
                }
            }
            Message::Reaped(reaped) => {
                assert_eq!(reaped.seq, expected_seq, "no gap, no duplicate");
                expected_seq += 1;
            }
            Message::Snapshot(s) => panic!("unexpected resync {s:#?}"),
        }
    }
    assert_eq!(
        states,
        [MemberState::Suspected, MemberState::Down],
        "gw3 goes SUSPECTED then DOWN"
    );
    eprintln!(
        "MEASURED gRPC watch: kill -9 → DOWN on the stream in {:.2}s",
        crashed_at.elapsed().as_secs_f64()
    );
}

/// SetTags on one node reaches another's ListMembers; bad keys are refused; Leave answers,
/// then the process exits 0 (even with a watch stream open on it) and its peers list it
/// LEAVING (over gRPC and HTTP/1.1 alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_tags_spreads_and_leave_exits_cleanly() {
    let mut nodes = start_cluster(
        "gt",
        41,
        3,
        &[FAST, &["--region", "eu", "--tag", "old=1"]].concat(),
    );
    let mut first = connect(nodes[0].ip).await;
    let mut second = connect(nodes[1].ip).await;
    let mut third = connect(nodes[2].ip).await;
    let list = wait_members(
        &mut first,
        "3 members ALIVE",
        Duration::from_secs(20),
        |l| all_alive(l, 3),
    )
    .await;
    let before = list
        .iter()
        .find(|m| m.name == "gt2")
        .expect("gt2 listed")
        .incarnation;

    let tags = [("role", "gateway"), ("tier", "edge")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let incarnation = second
        .set_tags(SetTagsRequest { tags })
        .await
        .expect("tags accepted")
        .into_inner()
        .incarnation;
    assert!(incarnation > before, "{incarnation} > {before}");
    let list = wait_members(
        &mut first,
        "gt1 lists gt2's new tags",
        Duration::from_secs(10),
        |l| {
            l.iter().any(|m| {
                m.name == "gt2"
                    && m.incarnation == incarnation
                    && m.tags.get("role").map(String::as_str) == Some("gateway")
            })
        },
    )
    .await;
    let gt2 = list.iter().find(|m| m.name == "gt2").expect("gt2 listed");
    assert_eq!(gt2.tags.len(), 2, "old tags replaced: {:?}", gt2.tags);
    assert_eq!(gt2.region, "eu", "region kept");
    assert_eq!(gt2.state(), MemberState::Alive);

    let empty_key = [(String::new(), "x".to_string())].into();
    let refused = second
        .set_tags(SetTagsRequest { tags: empty_key })
        .await
        .expect_err("empty key refused");
    assert_eq!(refused.code(), Code::InvalidArgument);

    // A watcher on the leaving node itself must not hold its exit up.
    let mut own_watch = third
        .watch_membership(WatchMembershipRequest {})
        .await
        .expect("watch starts")
        .into_inner();
    assert!(matches!(
        next(&mut own_watch, Duration::from_secs(5)).await,
        Message::Snapshot(_)
    ));
    third
        .leave(pb::LeaveRequest {})
        .await
        .expect("leave answers before the process exits");
    let leaver = &mut nodes[2];
    let exit = tokio::task::block_in_place(|| leaver.wait_exit(Duration::from_secs(5)))
        .expect("gt3 exits within 5 s");
    assert!(exit.success(), "graceful leave exits 0, got {exit}");
    // Its own watcher saw itself LEAVING, then the stream ended cleanly (status OK).
    let mut saw_leaving = false;
    loop {
        let message = timeout(Duration::from_secs(5), own_watch.message())
            .await
            .expect("the leaving node's stream ends in time")
            .expect("the stream ends without an error");
        let Some(message) = message else { break };
        if let Some(Message::Change(change)) = message.event {
            let member = change.member.expect("a change names its member");
            saw_leaving |= member.name == "gt3" && member.state() == MemberState::Leaving;
        }
    }
    assert!(saw_leaving, "the leaving node's watcher saw LEAVING");
    for client in [&mut first, &mut second] {
        wait_members(client, "gt3 LEAVING", Duration::from_secs(5), |l| {
            state_of(l, "gt3") == Some(MemberState::Leaving)
        })
        .await;
    }
    let peers = [&nodes[0], &nodes[1]];
    let http = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(5), || {
            peers
                .iter()
                .all(|n| n.state_of("gt3").as_deref() == Some("LEAVING"))
        })
    });
    assert!(
        http.is_some(),
        "HTTP/1.1 /ha/status on the same port agrees"
    );
}
