//! `GET /ha/health`: 200 when this node is a working member, 503 while joining or leaving.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::ApiState;
use crate::runtime::events::state_name;
use crate::runtime::Snapshot;
use crate::swim::MemberState;

/// The health document (SMG's fields plus ours).
#[derive(Debug, Serialize)]
pub struct Health {
    status: &'static str,
    node_name: String,
    cluster_size: usize,
    stores_healthy: bool,
    state: &'static str,
    incarnation: u64,
    health_score: u32,
}

/// The status word and HTTP code for this node's own state.
fn verdict(state: MemberState) -> (&'static str, StatusCode) {
    match state {
        // Self is SUSPECTED only in others' eyes until our refutation lands; we still serve.
        MemberState::Alive | MemberState::Suspected => ("healthy", StatusCode::OK),
        MemberState::Init => ("joining", StatusCode::SERVICE_UNAVAILABLE),
        MemberState::Leaving => ("leaving", StatusCode::SERVICE_UNAVAILABLE),
        MemberState::Down => ("down", StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// Builds the health document from a snapshot.
pub fn health(snapshot: &Snapshot) -> (StatusCode, Health) {
    let (status, code) = verdict(snapshot.local.state);
    let body = Health {
        status,
        node_name: snapshot.local.name.clone(),
        cluster_size: snapshot.cluster_size(),
        stores_healthy: true,
        state: state_name(snapshot.local.state),
        incarnation: snapshot.local.incarnation,
        health_score: snapshot.health_score,
    };
    (code, body)
}

/// Handler.
pub async fn get(State(state): State<ApiState>) -> (StatusCode, Json<Health>) {
    let (code, body) = health(&state.snapshots.borrow());
    (code, Json(body))
}
