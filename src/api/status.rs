//! `GET /ha/status`: every member with its state, in SMG's shape plus our fields.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::ApiState;
use crate::runtime::events::state_name;
use crate::runtime::Snapshot;
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

fn node(member: &MemberView, now: Instant) -> Node {
    let since = now.saturating_duration_since(member.since);
    Node {
        name: member.name.clone(),
        address: member.addr.to_string(),
        status: (member.state as u8).to_string(),
        version: member.incarnation,
        state: state_name(member.state),
        incarnation: member.incarnation,
        region: member.meta.region.clone(),
        zone: member.meta.zone.clone(),
        tags: member.meta.tags.clone(),
        since_ms: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
    }
}

/// Builds the status document from a snapshot as of `now`; nodes sorted by name.
pub fn status(snapshot: &Snapshot, now: Instant) -> Status {
    let mut nodes: Vec<Node> = snapshot.members.iter().map(|m| node(m, now)).collect();
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
