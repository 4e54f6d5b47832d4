//! `PUT /ha/self/load`: what this node's gateway reports about itself (in-flight requests,
//! queue depth: any small JSON object), carried in this node's vitals to every member.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::{body_of, ApiError, ApiState};
use crate::runtime::vitals;

/// Handler: 200 `{"load": …}` once taken (published with the next vitals, at once); 400 for
/// anything beyond [`vitals::check_load`]'s bounds, the message naming the bound.
pub async fn put(
    State(state): State<ApiState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let load = body_of(&state, body, "a JSON object")?;
    vitals::check_load(&load).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    state.load.send_replace(load.clone());
    Ok(Json(json!({ "load": load })))
}
