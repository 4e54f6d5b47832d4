//! `POST /ha/shutdown`: start a graceful leave (behind [`super::auth::mutating`]).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::{ApiError, ApiState};
use crate::runtime::Command;

/// Body of the 202 answer.
#[derive(Debug, Serialize)]
pub struct Accepted {
    status: &'static str,
}

/// Handler.
pub async fn post(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    tracing::info!(%peer, "shutdown requested over HTTP");
    state.commands.send(Command::Leave).await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node is already shutting down",
        )
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            status: "shutdown initiated",
        }),
    ))
}
