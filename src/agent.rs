//! The agent: wires the runtime and the HTTP API together and owns shutdown.
//!
//! Shutdown is always a graceful leave: SIGTERM, SIGINT or `POST /ha/shutdown` sends
//! [`Command::Leave`]; the driver stops once the leave is announced (or `--leave-timeout`
//! passes); then the HTTP server drains and the QUIC endpoint closes. A second signal exits at
//! once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::api::grpc::MembershipService;
use crate::api::{self, Access, ApiState};
use crate::metrics::Metrics;
use crate::runtime::{vitals, Command, Runtime, RuntimeConfig};

/// How long in-flight HTTP requests may take once shutdown starts.
const HTTP_GRACE: Duration = Duration::from_millis(300);

/// Exit status after a second SIGINT/SIGTERM cut a leave short (128 + SIGINT, by convention).
const FORCED_EXIT_CODE: i32 = 130;

/// Everything the agent needs, already validated.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Mesh socket, identity, protocol knobs, seeds.
    pub runtime: RuntimeConfig,
    /// Address of the HTTP API.
    pub http: SocketAddr,
    /// Who may make mutating API calls.
    pub access: Access,
    /// The API's TLS certificate chain and key (PEM files), if it serves TLS.
    pub api_tls: Option<ApiTls>,
    /// How often this node publishes its vitals into the store `nodes`.
    pub vitals_interval: Duration,
}

/// Where the API's TLS certificate and key are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Runs the agent until it has left the cluster. Errors are one readable line.
pub async fn run(config: AgentConfig) -> Result<(), String> {
    let tls = match &config.api_tls {
        Some(paths) => Some(api::server::tls_acceptor(&paths.cert, &paths.key)?),
        None => None,
    };
    let listener = api::bind(config.http).await?;
    let http_addr = listener
        .local_addr()
        .map_err(|e| format!("HTTP listener: {e}"))?;
    let seeds: Vec<String> = config
        .runtime
        .seeds
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(
        name = %config.runtime.identity.name,
        advertise = %config.runtime.identity.addr,
        seeds = %seeds.join(","),
        "starting meshd agent"
    );
    let name = config.runtime.identity.name.clone();
    let mut runtime = Runtime::start(config.runtime).await?;
    let commands = runtime.commands();
    let (load, load_rx) = watch::channel(serde_json::Value::Null);
    tokio::spawn(vitals::run(
        name,
        config.vitals_interval,
        commands.clone(),
        runtime.snapshots(),
        load_rx,
    ));
    let metrics = Arc::new(Metrics::new());
    tokio::spawn(metrics.clone().follow(runtime.feed()));
    let server = Arc::new(api::ServerCounters::default());
    let state = ApiState {
        snapshots: runtime.snapshots(),
        commands: commands.clone(),
        events: runtime.events(),
        store_events: runtime.store_events(),
        load,
        access: config.access.clone(),
        metrics,
        server,
    };
    let grpc = MembershipService::new(
        runtime.feed(),
        runtime.store_events(),
        commands.clone(),
        config.access,
    );
    let (stop_http, http_stopped) = oneshot::channel::<()>();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut http = tokio::spawn(api::serve_with_grpc(listener, state, grpc, tls, async {
        let _ = http_stopped.await;
    }));
    tracing::info!(addr = %http_addr, scheme, "HTTP and gRPC API listening");
    tokio::spawn(forward_signals(commands.clone()));

    let mut result = tokio::select! {
        stopped = runtime.stopped() => stopped,
        served = &mut http => {
            // The API died on its own: leave the cluster cleanly, then report it.
            let message = match served {
                Ok(Ok(())) => "HTTP API stopped unexpectedly".to_string(),
                Ok(Err(e)) => format!("HTTP API failed: {e}"),
                Err(e) => format!("HTTP API task failed: {e}"),
            };
            tracing::error!("{message}; leaving the cluster");
            let _ = commands.send(Command::Leave).await;
            runtime.stopped().await.and(Err(message))
        }
    };
    let _ = stop_http.send(());
    if !http.is_finished() {
        match tokio::time::timeout(HTTP_GRACE, &mut http).await {
            Ok(Ok(Err(e))) if result.is_ok() => result = Err(format!("HTTP API failed: {e}")),
            Ok(_) => {}
            Err(_) => http.abort(),
        }
    }
    runtime.close().await;
    tracing::info!("meshd agent stopped");
    result
}

/// First SIGTERM/SIGINT starts a graceful leave; a second one exits immediately.
async fn forward_signals(commands: mpsc::Sender<Command>) {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!("cannot listen for signals: {e}");
            return;
        }
    };
    signals.next().await;
    tracing::info!("signal received: leaving the cluster (send again to exit at once)");
    let _ = commands.send(Command::Leave).await;
    signals.next().await;
    tracing::warn!("second signal: exiting without finishing the leave");
    std::process::exit(FORCED_EXIT_CODE);
}

/// SIGINT and SIGTERM listeners, registered once so no signal is missed between waits.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Ctrl-C listener where Unix signals are not available.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Signals)
    }

    /// Resolves on the next Ctrl-C.
    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
