//! The tokio runtime around the sans-IO core: one UDP socket shared by SWIM and QUIC, push-pull
//! over QUIC, DNS seeds with backoff, and the driver task that owns the core.
//!
//! [`Runtime::start`] binds the socket and spawns the tasks; callers read [`Snapshot`]s from a
//! `watch` channel and send [`Command`]s over an mpsc channel.

pub mod driver;
pub mod entropy;
pub mod events;
pub mod heartbeats;
pub mod keys;
pub mod notices;
pub mod persist;
pub mod quic;
pub mod replication;
pub mod seeds;
pub mod snapshot;
pub mod socket;
pub mod tls;
pub mod trust;
pub mod vitals;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::Endpoint;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use driver::Command;
pub use events::{EventFeed, SequencedEvent};
pub use seeds::Seed;
pub use snapshot::{RuntimeCounters, Snapshot};

use crate::swim::{self, Identity, Swim};
use driver::{Driver, DriverIo, DriverSettings};
use quic::Protocol;
use socket::SharedSocket;
use trust::Trust;
pub use trust::TrustConfig;

use std::path::PathBuf;

use crate::store::{StoreConfig, Stores};
use replication::{Replication, StoreEvent};

/// Depth of the socket → driver queue. Beyond it SWIM datagrams are dropped (and counted), as a
/// congested network would; SWIM tolerates loss, and the socket task must never block.
const SWIM_QUEUE: usize = 1024;

/// Depth of the command queue (API requests, push-pull replies).
const COMMAND_QUEUE: usize = 64;

/// Events a slow watcher may fall behind by before it must start over from a snapshot.
const EVENT_QUEUE: usize = 1024;

/// How long closing the QUIC endpoint may wait for peers to learn of the close.
const CLOSE_GRACE: Duration = Duration::from_millis(300);

/// Everything the runtime needs to start one node.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Name, advertised address and metadata. A port of 0 in the address is replaced by the
    /// bound port (handy in tests).
    pub identity: Identity,
    /// Local address the UDP socket binds to.
    pub bind: SocketAddr,
    /// Protocol knobs for the core.
    pub swim: swim::Config,
    /// Seeds to join through; empty starts a cluster of one.
    pub seeds: Vec<Seed>,
    /// Longest a graceful leave may take.
    pub leave_timeout: Duration,
    /// Bound on each periodic push-pull exchange (join attempts and seed refreshes are bounded
    /// by the core's `seed_attempt_timeout`).
    pub exchange_timeout: Duration,
    /// Keyring, keyring file and cluster label.
    pub trust: TrustConfig,
    /// The replicated stores' knobs and bounds.
    pub stores: StoreConfig,
    /// Where the stores are kept on disk (`--data-dir`); `None` keeps them in memory only.
    pub data_dir: Option<PathBuf>,
    /// The cluster size the leader view's quorum counts against (`--expect-nodes`); `None`
    /// counts the members ALIVE, SUSPECTED or DOWN and not yet reaped.
    pub expect_nodes: Option<usize>,
}

/// A running node: the driver task, the QUIC endpoint and the channels to talk to them.
#[derive(Debug)]
pub struct Runtime {
    snapshots: watch::Receiver<Snapshot>,
    events: broadcast::Sender<Arc<SequencedEvent>>,
    store_events: broadcast::Sender<Arc<StoreEvent>>,
    commands: mpsc::Sender<Command>,
    driver: JoinHandle<()>,
    endpoint: Endpoint,
    local_addr: SocketAddr,
}

impl Runtime {
    /// Binds the socket and starts the QUIC endpoint, the push-pull server and the driver.
    /// Fails with a readable message (e.g. address in use).
    pub async fn start(config: RuntimeConfig) -> Result<Runtime, String> {
        let udp = UdpSocket::bind(config.bind)
            .await
            .map_err(|e| format!("cannot bind mesh socket {}: {e}", config.bind))?;
        let local_addr = udp
            .local_addr()
            .map_err(|e| format!("mesh socket has no local address: {e}"))?;
        match socket::enlarge_recv_buffer(&udp) {
            Ok(granted) => tracing::debug!(granted, "mesh socket receive buffer"),
            Err(e) => tracing::warn!(error = %e, "cannot enlarge the mesh socket receive buffer"),
        }
        let udp = Arc::new(udp);
        let (swim_tx, swim_rx) = mpsc::channel(SWIM_QUEUE);
        let shared = Arc::new(SharedSocket::new(udp.clone(), swim_tx));
        let socket_counters = shared.counters().clone();
        let trust = Trust::new(config.trust)?;
        if !trust.is_sealed() {
            tracing::warn!(
                "no --encrypt-key or --keyring-file: gossip is neither encrypted nor \
                 authenticated, and anyone who can reach the mesh port can join or disturb \
                 the cluster"
            );
        }
        let endpoint = quic::endpoint(shared, trust.tls())?;

        let mut identity = config.identity;
        if identity.addr.port() == 0 {
            identity.addr.set_port(local_addr.port());
        }
        let advertise = identity.addr;
        let settings = DriverSettings {
            seeds: config.seeds,
            leave_timeout: config.leave_timeout,
            exchange_timeout: config.exchange_timeout,
            seed_attempt_timeout: config.swim.seed_attempt_timeout,
            seeds_refreshed: !config.swim.seed_refresh_interval.is_zero(),
            expect_nodes: config.expect_nodes,
        };
        let rng_seed = entropy::random_u64();
        tracing::debug!(rng_seed, "core RNG seeded");
        let now = Instant::now();
        let core = Swim::new(config.swim, identity, rng_seed, now)
            .map_err(|e| format!("this node's identity is refused: {e}"))?;
        let (snapshot_tx, snapshots) = watch::channel(Snapshot::of_local(core.local(), now));
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let (store_events, _) = broadcast::channel(replication::STORE_EVENT_QUEUE);
        let replication = start_stores(
            config.stores,
            config.data_dir.as_deref(),
            &core.local().name,
            store_events.clone(),
        )?;

        tokio::spawn(quic::serve(
            endpoint.clone(),
            push_pull_responder(commands.clone()),
            config.exchange_timeout,
            socket_counters.quic_handshakes_failed.clone(),
        ));
        let io = DriverIo {
            udp,
            endpoint: endpoint.clone(),
            socket_counters,
            swim_rx,
            commands: command_rx,
            snapshots: snapshot_tx,
            events: events.clone(),
        };
        let driver = tokio::spawn(Driver::new(core, replication, trust, io, settings).run());
        tracing::info!(bind = %local_addr, advertise = %advertise, "mesh socket ready (SWIM + QUIC)");
        Ok(Runtime {
            snapshots,
            events,
            store_events,
            commands,
            driver,
            endpoint,
            local_addr,
        })
    }

    /// A receiver of the snapshots the driver publishes.
    pub fn snapshots(&self) -> watch::Receiver<Snapshot> {
        self.snapshots.clone()
    }

    /// Snapshots plus the event stream, for watchers that must not miss a change.
    pub fn feed(&self) -> EventFeed {
        EventFeed::new(self.snapshots.clone(), self.events.clone())
    }

    /// The membership event stream (see [`EventFeed`] for how to follow it without a gap).
    pub fn events(&self) -> broadcast::Sender<Arc<SequencedEvent>> {
        self.events.clone()
    }

    /// The store change stream: subscribe, then read a store's entries with
    /// [`Command::StoreRead`] and skip changes up to the `seq` they came with.
    pub fn store_events(&self) -> broadcast::Sender<Arc<StoreEvent>> {
        self.store_events.clone()
    }

    /// A sender of commands to the driver.
    pub fn commands(&self) -> mpsc::Sender<Command> {
        self.commands.clone()
    }

    /// The address the mesh socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the driver stops (after a leave). Errors if the driver panicked.
    pub async fn stopped(&mut self) -> Result<(), String> {
        (&mut self.driver)
            .await
            .map_err(|e| format!("driver task failed: {e}"))
    }

    /// Closes the QUIC endpoint (and with it the socket's receive loop), waiting briefly.
    pub async fn close(self) {
        self.driver.abort();
        self.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(CLOSE_GRACE, self.endpoint.wait_idle()).await;
    }
}

/// The stores, loaded from `data_dir` when given (with the thread that keeps them there).
fn start_stores(
    config: StoreConfig,
    data_dir: Option<&std::path::Path>,
    name: &str,
    events: broadcast::Sender<Arc<StoreEvent>>,
) -> Result<Replication, String> {
    let now_ms = replication::wall_ms();
    let mut config = StoreConfig {
        persist: data_dir.is_some(),
        ..config
    };
    config.unrelayed.push(vitals::STORE.to_string());
    let mut stores = Stores::new(config, name, now_ms);
    let persister = match data_dir {
        None => None,
        Some(dir) => {
            let (persister, entries) = persist::open(dir)?;
            let (loaded, errors) = stores.load(now_ms, entries.iter().map(Vec::as_slice));
            for error in &errors {
                tracing::warn!(error = %error, "a stored entry could not be loaded; skipped");
            }
            tracing::info!(
                dir = %dir.display(),
                keys = loaded,
                skipped = errors.len(),
                "stores loaded"
            );
            Some(persister)
        }
    };
    Ok(Replication::new(stores, persister, events))
}

/// Future answering one push-pull request: our payload, or `None` to refuse.
type ReplyFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>>;

/// The QUIC server's handler: pass the peer's request to the driver, wait for its answer.
fn push_pull_responder(
    commands: mpsc::Sender<Command>,
) -> impl Fn(SocketAddr, Protocol, Vec<u8>) -> ReplyFuture + Clone + Send + Sync + 'static {
    move |from, protocol, payload| {
        let commands = commands.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let command = match protocol {
                Protocol::PushPull => Command::PushPull {
                    from,
                    payload,
                    reply,
                },
                Protocol::Keys => Command::KeyRequest {
                    from,
                    payload,
                    reply,
                },
                Protocol::Store => Command::StoreSync { payload, reply },
            };
            commands.send(command).await.ok()?;
            answer.await.ok().flatten()
        })
    }
}

#[cfg(test)]
mod tests;
