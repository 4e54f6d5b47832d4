//! `GET /ha/status`: every member with its state, in SMG's shape plus our fields.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::ApiState;
use crate::runtime::events::state_name;
use crate::runtime::replication;
use crate::runtime::{vitals, Snapshot};
use crate::swim::{MemberState, MemberView};

/// The status document.
#[derive(Debug, Serialize)]
pub struct Status {
    node_name: String,
    node_count: usize,
    nodes: Vec<Node>,
    stores: Stores,
}

/// One member.
#[derive(Debug, Serialize)]
pub struct Node {
    name: String,
    address: String,
    /// Stringified state discriminant ("0" INIT … "4" LEAVING), as SMG scripts expect.
    status: String,
    /// Incarnation under SMG's name.
    version: u64,
    state: &'static str,
    incarnation: u64,
    region: String,
    zone: String,
    tags: BTreeMap<String, String>,
    /// Milliseconds since this node saw the member's state change.
    since_ms: u64,
    /// Milliseconds since this node last heard from the member, directly or by its gossiped
    /// vitals (0 for this node itself; `None`: not heard from since this node started).
    last_heartbeat_ms: Option<u64>,
    /// The member's vitals from the store `nodes` (`None` until its first arrive).
    vitals: Option<Value>,
}

/// Member counts by state, and SMG's store counts: keys present in the replicated stores
/// `workers`, `policies` and `apps`, and how many stores there are.
#[derive(Debug, Serialize)]
pub struct Stores {
    membership_count: usize,
    alive_count: usize,
    suspected_count: usize,
    down_count: usize,
    leaving_count: usize,
    worker_count: usize,
    policy_count: usize,
    app_count: usize,
    store_count: usize,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn node(member: &MemberView, snapshot: &Snapshot, wall_now_ms: u64, now: Instant) -> Node {
    let since = now.saturating_duration_since(member.since);
    let last_heartbeat_ms = if member.is_local {
        Some(0)
    } else {
        let heard = snapshot.last_heard.get(&member.name);
        heard.map(|at| millis(now.saturating_duration_since(*at)))
    };
    Node {
        last_heartbeat_ms,
        vitals: snapshot
            .vitals
            .get(&member.name)
            .map(|doc| vitals::with_uptime(doc.clone(), wall_now_ms)),
        name: member.name.clone(),
        address: member.addr.to_string(),
        status: (member.state as u8).to_string(),
        version: member.incarnation,
        state: state_name(member.state),
        incarnation: member.incarnation,
        region: member.meta.region.clone(),
        zone: member.meta.zone.clone(),
        tags: member.meta.tags.clone(),
        since_ms: millis(since),
    }
}

/// Builds the status document from a snapshot as of `now`; nodes sorted by name.
pub fn status(snapshot: &Snapshot, now: Instant) -> Status {
    let wall_now_ms = replication::wall_ms();
    let mut nodes: Vec<Node> = snapshot
        .members
        .iter()
        .map(|m| node(m, snapshot, wall_now_ms, now))
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Status {
        node_name: snapshot.local.name.clone(),
        node_count: nodes.len(),
        stores: Stores {
            membership_count: nodes.len(),
            alive_count: snapshot.count(MemberState::Alive),
            suspected_count: snapshot.count(MemberState::Suspected),
            down_count: snapshot.count(MemberState::Down),
            leaving_count: snapshot.count(MemberState::Leaving),
            worker_count: snapshot.stores.workers,
            policy_count: snapshot.stores.policies,
            app_count: snapshot.stores.apps,
            store_count: snapshot.stores.stores,
        },
        nodes,
    }
}

/// Handler.
pub async fn get(State(state): State<ApiState>) -> Json<Status> {
    // Ages are measured at request time, not snapshot time, so they never lag behind.
    Json(status(&state.snapshots.borrow(), Instant::now()))
}
