//! `POST /ha/shutdown`: start a graceful leave. Loopback callers only, unless allowed.

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

/// Whether `peer` may ask this node to leave.
fn allowed(peer: SocketAddr, allow_remote: bool) -> bool {
    allow_remote || peer.ip().is_loopback()
}

/// Handler.
pub async fn post(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    if !allowed(peer, state.allow_remote_shutdown) {
        tracing::warn!(%peer, "refused shutdown request from a remote caller");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "shutdown is only accepted from loopback (start with --allow-remote-shutdown)",
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn only_loopback_unless_remote_allowed() {
        let local = "127.0.0.1:5000".parse().expect("addr");
        let local6 = "[::1]:5000".parse().expect("addr");
        let remote = "10.1.2.3:5000".parse().expect("addr");
        assert!(allowed(local, false));
        assert!(allowed(local6, false));
        assert!(!allowed(remote, false));
        assert!(allowed(remote, true));
    }
}
