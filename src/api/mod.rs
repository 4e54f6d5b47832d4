//! The HTTP API (axum): `/ha/health`, `/ha/status`, `/ha/shutdown`, `/metrics`, and its own
//! OpenAPI description at `/ha/openapi.json`.
//!
//! Handlers read the latest [`Snapshot`] from a `watch` channel and send [`Command`]s to the
//! driver; they never touch the core. Every error is JSON `{"error": "..."}`.

mod error;
pub mod grpc;
mod health;
mod metrics;
mod shutdown;
mod status;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::runtime::{Command, Snapshot};

pub use error::ApiError;

/// What every handler can reach: snapshots to read, a command channel, and policy.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// Latest published snapshot of the node.
    pub snapshots: watch::Receiver<Snapshot>,
    /// Commands to the driver (leave).
    pub commands: mpsc::Sender<Command>,
    /// Accept `POST /ha/shutdown` from non-loopback callers.
    pub allow_remote_shutdown: bool,
    /// Prometheus series rendered at `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Builds the router over `state`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/ha/health", get(health::get))
        .route("/ha/status", get(status::get))
        .route("/ha/shutdown", post(shutdown::post))
        .route("/metrics", get(metrics::get))
        .route("/ha/openapi.json", get(openapi))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}

/// The OpenAPI 3.1 description of this API, embedded so the binary serves the spec it was built with.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON,
    )
}

/// Binds the HTTP listener; a readable error (e.g. address in use) on failure.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind HTTP API on {addr}: {e}"))
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Like [`serve`], with the gRPC client API ([`grpc::MembershipService`]) on the same port:
/// HTTP/1.1 and HTTP/2 requests to `/ha/*` reach the HTTP handlers, gRPC calls the service.
pub async fn serve_with_grpc(
    listener: TcpListener,
    state: ApiState,
    grpc: grpc::MembershipService,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app =
        grpc::add_routes(router(state), grpc).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
