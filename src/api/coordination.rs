//! `GET /ha/leader` and `GET /ha/owner/{key}`: the leader and owner views of this node's
//! latest snapshot (see [`crate::coordination`]).

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::{ApiError, ApiState, PathOf};
use crate::coordination;
use crate::runtime::Snapshot;

/// Longest key `GET /ha/owner/{key}` takes, in bytes.
pub const MAX_OWNER_KEY_BYTES: usize = 1024;

/// The leader document.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Leader {
    /// The leader's name; `None` when no member is ALIVE.
    pub leader: Option<String>,
    /// True when more than half of `expected` is ALIVE.
    pub has_quorum: bool,
    /// Members ALIVE, this node included.
    pub alive: usize,
    /// The size the quorum counts against.
    pub expected: usize,
    /// Milliseconds since this node last saw the leader change.
    pub since_ms: u64,
}

/// The owner document.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Owner {
    /// The key asked about.
    pub key: String,
    /// Its owner; `None` when no member is ALIVE.
    pub owner: Option<String>,
}

/// The leader document of `snapshot` as of `now`.
pub fn leader(snapshot: &Snapshot, now: Instant) -> Leader {
    let view = &snapshot.leader;
    let since = now.saturating_duration_since(snapshot.leader_since);
    Leader {
        leader: view.leader.clone(),
        has_quorum: view.has_quorum,
        alive: view.alive,
        expected: view.expected,
        since_ms: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The owner of `key` among the ALIVE members of `snapshot`; 400 for an empty or too long key.
pub fn owner(snapshot: &Snapshot, key: String) -> Result<Owner, ApiError> {
    if key.is_empty() || key.len() > MAX_OWNER_KEY_BYTES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "key is {} bytes; it must be 1 to {MAX_OWNER_KEY_BYTES}",
                key.len()
            ),
        ));
    }
    let owner = coordination::owner(&key, snapshot.members.iter()).map(str::to_string);
    Ok(Owner { key, owner })
}

/// Handler of `GET /ha/leader`.
pub async fn get_leader(State(state): State<ApiState>) -> Json<Leader> {
    Json(leader(&state.snapshots.borrow(), Instant::now()))
}

/// Handler of `GET /ha/owner/{key}`.
pub async fn get_owner(
    State(state): State<ApiState>,
    PathOf(key): PathOf<String>,
) -> Result<Json<Owner>, ApiError> {
    owner(&state.snapshots.borrow(), key).map(Json)
}
