//! `GET /metrics`: the Prometheus text format, rendered from the latest snapshot.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiState;
use crate::metrics::CONTENT_TYPE;

/// Renders this node's metrics.
pub async fn get(State(state): State<ApiState>) -> impl IntoResponse {
    let snapshot = state.snapshots.borrow().clone();
    let body = state
        .metrics
        .render_with(&snapshot, || state.server.record());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}
