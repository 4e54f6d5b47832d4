//! The HTTP API (axum): `/ha/health`, `/ha/status`, `/ha/leader`, `/ha/owner/{key}`,
//! `/ha/shutdown`, `/ha/keys`, the stores, `/metrics`,
//! its own OpenAPI description at `/ha/openapi.json`, and the gRPC client API on the same port.
//!
//! Handlers read the latest [`Snapshot`] from a `watch` channel and send [`Command`]s to the
//! driver; they never touch the core. Every error is JSON `{"error": "..."}`. Mutating routes
//! sit behind [`auth::mutating`]; every connection is bounded by [`server`].

pub mod auth;
pub(crate) mod coordination;
mod error;
mod events;
pub mod grpc;
mod health;
mod keys;
mod load;
mod membership_watch;
mod metrics;
pub mod server;
mod shutdown;
mod status;
mod store_watch;
mod stores;
#[cfg(test)]
mod tests;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::runtime::replication::StoreEvent;
use crate::runtime::{Command, SequencedEvent, Snapshot};

pub use auth::Access;
pub use error::{body_of, ApiError, PathOf};
pub use server::ServerCounters;

/// Largest request body accepted: a store value of the largest size the limits allow (64 KiB)
/// with room for its JSON wrapper.
pub const MAX_BODY_BYTES: usize = 80 * 1024;

/// What every handler can reach: snapshots to read, a command channel, and policy.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// Latest published snapshot of the node.
    pub snapshots: watch::Receiver<Snapshot>,
    /// Commands to the driver (leave, keys, store reads and writes).
    pub commands: mpsc::Sender<Command>,
    /// The membership event stream, for `/ha/events`.
    pub events: broadcast::Sender<Arc<SequencedEvent>>,
    /// The store change stream, for watchers.
    pub store_events: broadcast::Sender<Arc<StoreEvent>>,
    /// What this node's gateway last reported through `PUT /ha/self/load`.
    pub load: watch::Sender<serde_json::Value>,
    /// Who may make mutating calls.
    pub access: Access,
    /// Prometheus series rendered at `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The listener's own counters (refused connections, timeouts, denied calls).
    pub server: Arc<ServerCounters>,
}

/// Builds the router over `state`.
pub fn router(state: ApiState) -> Router {
    let mutating = Router::new()
        .route("/ha/shutdown", post(shutdown::post))
        .route("/ha/keys", get(keys::list))
        .route("/ha/keys/install", post(keys::install))
        .route("/ha/keys/use", post(keys::use_key))
        .route("/ha/keys/remove", post(keys::remove))
        .route(
            "/ha/stores/{store}/{key}",
            put(stores::put).delete(stores::delete),
        )
        .route("/ha/self/load", put(load::put))
        .route("/ha/stores/{store}/{key}/incr", post(stores::incr))
        .route("/ha/stores/{store}/{key}/add", post(stores::add))
        .route("/ha/stores/{store}/{key}/remove", post(stores::remove))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::mutating,
        ));
    Router::new()
        .route("/ha/health", get(health::get))
        .route("/ha/status", get(status::get))
        .route("/ha/events", get(events::get))
        .route("/ha/leader", get(coordination::get_leader))
        .route("/ha/owner/{key}", get(coordination::get_owner))
        .route("/metrics", get(metrics::get))
        .route("/ha/openapi.json", get(openapi))
        .route("/ha/stores", get(stores::list))
        .route("/ha/stores/{store}", get(stores::entries))
        .route("/ha/stores/{store}/watch", get(stores::watch))
        .route("/ha/stores/{store}/{key}", get(stores::get))
        .route("/ha/workers", get(stores::smg_workers))
        .route("/ha/policies", get(stores::smg_policies))
        .route("/ui", get(ui::page))
        .route("/ui/{asset}", get(ui::asset))
        .merge(mutating)
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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
    let counters = state.server.clone();
    server::serve(listener, router(state), None, counters, shutdown).await
}

/// Like [`serve`], with the gRPC client API ([`grpc::MembershipService`]) on the same port
/// (HTTP/1.1 and HTTP/2 requests to `/ha/*` reach the HTTP handlers, gRPC calls the service),
/// over TLS when `tls` is given.
pub async fn serve_with_grpc(
    listener: TcpListener,
    state: ApiState,
    grpc: grpc::MembershipService,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let counters = state.server.clone();
    let app = grpc::add_routes(router(state), grpc);
    server::serve(listener, app, tls, counters, shutdown).await
}
