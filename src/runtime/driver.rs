//! The driver: the one task that owns the [`Swim`] core.
//!
//! It feeds the core every input (SWIM datagrams, its timer, commands, results of push-pull and
//! join tasks), then drains the core's outputs in the documented order and publishes a snapshot.
//! Nothing else touches the core, so there is no lock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::Endpoint;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::events::{log_event, SequencedEvent};
use super::heartbeats::Heartbeats;
use super::keys::{self, KeyOp, KeyReport, LocalKeys};
use super::notices;
use super::quic::{self, ExchangeError};
use super::replication::{self, Replication, StoreAnswer, StoreEvent, StoreQuery, StoreWriteError};
use super::seeds::{self, Seed};
use super::snapshot::{RuntimeCounters, Snapshot};
use super::socket::{SocketCounters, SwimDatagram};
use super::trust::{KeyChange, Offer, Trust};
use super::vitals;
use crate::coordination::{self, LeaderView};
use crate::seal::OpenError;
use crate::store::{Op, Written};
use crate::swim::limits::LimitError;
use crate::swim::{
    ExchangeOutcome, MemberState, MemberView, NodeMeta, Notice, Purpose, PushPullRequest, Swim,
};
use crate::wire;

/// Longest the driver sleeps when the core has no deadline, so it still re-checks its state.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// Why a key command is refused at a node without a keyring.
const NO_KEYRING: &str =
    "this agent runs without a keyring (start it with --encrypt-key or --keyring-file to use \
     key commands)";

/// At most one warning per this long about datagrams that do not open (each is counted).
const REJECT_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Snapshots are republished at least this often while inputs arrive, so counters stay fresh
/// without a publish (and a wake-up of every snapshot watcher) per datagram. Membership changes
/// publish at once.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// A request to the driver from the API, the agent or the QUIC server.
#[derive(Debug)]
pub enum Command {
    /// Start a graceful leave; the driver stops once it is announced or the leave timeout passes.
    Leave,
    /// A peer's push-pull payload received by the QUIC server; `reply` gets our payload to send
    /// back, or `None` when the peer's payload was rejected.
    PushPull {
        /// The peer's address.
        from: SocketAddr,
        /// The peer's `PushPull` message.
        payload: Vec<u8>,
        /// Where to send our answer.
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// A keyring command from an operator: list the keys every member holds, or change the
    /// keyring here and then at every live member. `reply` gets the report, or why the command
    /// was refused.
    Keys {
        /// What to do; `None` lists.
        change: Option<KeyChange>,
        /// Where to send the report.
        reply: oneshot::Sender<Result<KeyReport, String>>,
    },
    /// A peer's keyring command received by the QUIC server; `reply` gets our encoded answer.
    KeyRequest {
        /// The peer's address.
        from: SocketAddr,
        /// The encoded `KeyCommand`.
        payload: Vec<u8>,
        /// Where to send the encoded `KeyCommandReply`.
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// A write to a replicated store; `reply` gets the key's new value once it is durable, or
    /// why not.
    StoreWrite {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// What to do.
        op: Op,
        /// Where to send the outcome.
        reply: oneshot::Sender<Result<Written, StoreWriteError>>,
    },
    /// A read of the replicated stores.
    StoreRead {
        /// What to read.
        query: StoreQuery,
        /// Where to send the answer.
        reply: oneshot::Sender<StoreAnswer>,
    },
    /// A peer's anti-entropy step received by the QUIC server; `reply` gets our answer, or
    /// `None` when the step was malformed.
    StoreSync {
        /// The encoded `StoreSync`.
        payload: Vec<u8>,
        /// Where to send the answer.
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// Replace this node's tags, keeping region and zone (bumps the incarnation). `reply` gets
    /// the new incarnation, or an error while the node is leaving.
    SetTags {
        /// The new tags; the core checks them against the limits.
        tags: BTreeMap<String, String>,
        /// Where to send the outcome.
        reply: oneshot::Sender<Result<u64, SetTagsRefused>>,
    },
}

/// Why the driver refused [`Command::SetTags`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetTagsRefused {
    /// The node is leaving; its LEAVING entry is final.
    Leaving,
    /// The tags break a limit (the message names it).
    Invalid(LimitError),
}

/// Outcome of a task the driver spawned for the core.
enum TaskResult {
    /// A push-pull exchange the core asked for ended.
    Exchange {
        request: PushPullRequest,
        result: Result<Vec<u8>, ExchangeError>,
    },
    /// The seed lookup the core asked for finished.
    SeedsResolved(Vec<SocketAddr>),
    /// A step of the stores' anti-entropy with `peer` was answered (or not).
    StoreSync {
        peer: SocketAddr,
        result: Result<Vec<u8>, ExchangeError>,
    },
}

/// The driver's fixed settings.
pub struct DriverSettings {
    /// Seeds to join through; empty means start alone.
    pub seeds: Vec<Seed>,
    /// How long a leave may take before the driver stops anyway.
    pub leave_timeout: Duration,
    /// Bound on each periodic push-pull exchange.
    pub exchange_timeout: Duration,
    /// Bound on each exchange of a join attempt or a seed refresh (the core gives up on the
    /// address after the same time).
    pub seed_attempt_timeout: Duration,
    /// Seeds are resolved again once joined (for the log line of a node alone).
    pub seeds_refreshed: bool,
    /// The cluster size the leader view's quorum counts against (`--expect-nodes`); `None`
    /// counts the members not yet reaped.
    pub expect_nodes: Option<usize>,
}

/// Channels and handles the driver works with.
pub struct DriverIo {
    /// Socket for sending SWIM datagrams.
    pub udp: Arc<UdpSocket>,
    /// QUIC endpoint for outgoing push-pull exchanges.
    pub endpoint: Endpoint,
    /// Counters updated by the socket layer.
    pub socket_counters: Arc<SocketCounters>,
    /// SWIM datagrams from the socket.
    pub swim_rx: mpsc::Receiver<SwimDatagram>,
    /// Commands from the API, agent and QUIC server.
    pub commands: mpsc::Receiver<Command>,
    /// Where snapshots are published.
    pub snapshots: watch::Sender<Snapshot>,
    /// Where membership events are broadcast, after the snapshot that contains them.
    pub events: broadcast::Sender<Arc<SequencedEvent>>,
}

/// The task state; see the module docs.
pub struct Driver {
    core: Swim,
    replication: Replication,
    trust: Trust,
    io: DriverIo,
    settings: DriverSettings,
    counters: RuntimeCounters,
    results_tx: mpsc::UnboundedSender<TaskResult>,
    results_rx: mpsc::UnboundedReceiver<TaskResult>,
    leave_deadline: Option<Instant>,
    last_publish: Option<Instant>,
    last_event_seq: u64,
    /// The member list of the last snapshot; rebuilt only after membership events, since
    /// copying every member (names, tags) is what a publish would otherwise cost.
    members: Arc<[MemberView]>,
    /// The leader view of `members`, and since when its leader is the one it names.
    leader: LeaderView,
    leader_since: Instant,
    /// When each member was last heard from, and the store changes that tell of its vitals.
    heartbeats: Heartbeats,
    store_changes: broadcast::Receiver<Arc<StoreEvent>>,
    /// Every member's vitals, copied out of the store `nodes` for the snapshot.
    vitals: vitals::VitalsBook,
    /// Datagrams that did not open since the last warning about them, and when it was.
    rejected_since_warning: u64,
    last_reject_warning: Option<Instant>,
}

impl Driver {
    /// Wraps a core in state INIT, sealing and authenticating with `trust`.
    pub fn new(
        core: Swim,
        replication: Replication,
        trust: Trust,
        io: DriverIo,
        settings: DriverSettings,
    ) -> Self {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let members: Arc<[MemberView]> = core.members().into();
        let leader = coordination::leader(members.iter(), settings.expect_nodes);
        let mut heartbeats = Heartbeats::default();
        heartbeats.members_changed(&members);
        let store_changes = replication.subscribe();
        Driver {
            heartbeats,
            store_changes,
            vitals: vitals::VitalsBook::default(),
            leader,
            leader_since: Instant::now(),
            core,
            replication,
            trust,
            io,
            settings,
            counters: RuntimeCounters::default(),
            results_tx,
            results_rx,
            leave_deadline: None,
            last_publish: None,
            last_event_seq: 0,
            members,
            rejected_since_warning: 0,
            last_reject_warning: None,
        }
    }

    /// Runs until a leave completes (or times out) or every command sender is gone.
    pub async fn run(mut self) {
        let now = Instant::now();
        if self.settings.seeds.is_empty() {
            tracing::info!("no seeds configured: starting as a cluster of one");
            self.core.start_alone(now);
        } else {
            self.core.join(now);
        }
        self.after_input(true).await;

        loop {
            if self.leave_finished(Instant::now()) {
                break;
            }
            let wake = self.next_wake(Instant::now());
            tokio::select! {
                Some(datagram) = self.io.swim_rx.recv() => self.on_datagram(datagram),
                _ = tokio::time::sleep_until(wake.into()) => self.on_timer(Instant::now()),
                command = self.io.commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => {
                        tracing::debug!("all command senders dropped: driver stops");
                        break;
                    }
                },
                Some(result) = self.results_rx.recv() => self.on_result(result),
            }
            self.after_input(false).await;
        }
        self.refresh_members(Instant::now());
        self.publish(Instant::now());
        self.replication.close();
    }

    /// The earliest of the cores' deadlines and the leave deadline.
    fn next_wake(&self, now: Instant) -> Instant {
        let wake = self.core.poll_timeout().unwrap_or(now + IDLE_WAKE);
        let wake = wake.min(self.replication.next_wake(now));
        match self.leave_deadline {
            Some(deadline) => wake.min(deadline),
            None => wake,
        }
    }

    fn leave_finished(&self, now: Instant) -> bool {
        let Some(deadline) = self.leave_deadline else {
            return false;
        };
        if self.core.leave_announced() {
            tracing::info!("leave announced to peers");
            true
        } else if now >= deadline {
            tracing::warn!(
                timeout = ?self.settings.leave_timeout,
                "leave not fully announced before the leave timeout; stopping anyway"
            );
            true
        } else {
            false
        }
    }

    /// Opens a received datagram and hands it to the core; one that does not open is counted
    /// and otherwise ignored (no answer, at most one warning a minute).
    fn on_datagram(&mut self, datagram: SwimDatagram) {
        self.counters.swim_udp_bytes_received += datagram.bytes.len() as u64;
        let from = datagram.from;
        let now = Instant::now();
        match self.trust.open(from, datagram.bytes, now) {
            Ok(plain) => {
                self.heartbeats.datagram_from(from, now);
                self.core.handle_datagram(now, from, &plain);
                if let Some(peer) = self.replication.take_payloads(&mut self.core) {
                    self.start_store_sync(peer);
                }
            }
            Err(reason) => self.count_rejected(from, reason),
        }
    }

    fn count_rejected(&mut self, from: SocketAddr, reason: OpenError) {
        match reason {
            OpenError::NotSealed => self.counters.rejected_unsealed += 1,
            OpenError::Truncated | OpenError::Unauthenticated => {
                self.counters.rejected_decrypt += 1
            }
            OpenError::Stale(skew) => {
                self.counters.rejected_stale += 1;
                if self.counters.rejected_stale == 1 {
                    tracing::warn!(
                        %from,
                        seconds = skew,
                        "a sealed datagram was sent further from our clock than the replay \
                         window allows: replayed, or this host's clock and the sender's are \
                         that far apart (check NTP)"
                    );
                }
            }
        }
        self.rejected_since_warning += 1;
        let now = Instant::now();
        let due = self
            .last_reject_warning
            .is_none_or(|at| now.duration_since(at) >= REJECT_WARNING_EVERY);
        if due {
            tracing::warn!(
                %from,
                dropped = self.rejected_since_warning,
                "dropped datagrams that do not open with this node's keys (from a node \
                 without the key, with another key or --cluster-label, or forged); see \
                 meshd_datagrams_rejected_total"
            );
            self.last_reject_warning = Some(now);
            self.rejected_since_warning = 0;
        }
    }

    fn on_timer(&mut self, now: Instant) {
        // Calling early is harmless: the cores fire only timers that are due.
        self.core.handle_timeout(now);
        self.replication.handle_timeout();
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Leave => {
                if self.leave_deadline.is_none() {
                    tracing::info!("leaving: announcing LEAVING to peers");
                    self.core.leave(now);
                    self.leave_deadline = Some(now + self.settings.leave_timeout);
                }
            }
            Command::PushPull {
                from,
                payload,
                reply,
            } => {
                self.counters.stream_received(payload.len());
                self.offer_keyring(from, &payload);
                let answer = match self.core.handle_push_pull(now, from, &payload) {
                    Ok(()) => {
                        self.counters.push_pull_ok += 1;
                        Some(self.push_pull_payload())
                    }
                    Err(reason) => {
                        self.counters.push_pull_failed += 1;
                        tracing::debug!(peer = %from, ?reason, "rejected push-pull from peer");
                        None
                    }
                };
                if let Some(answer) = &answer {
                    self.counters.stream_sent(answer.len());
                }
                // The QUIC task may have timed out meanwhile; nothing to do then.
                let _ = reply.send(answer);
            }
            Command::StoreWrite {
                store,
                key,
                op,
                reply,
            } => self.replication.write(&store, &key, op, reply),
            Command::StoreRead { query, reply } => {
                let _ = reply.send(self.replication.read(query));
            }
            Command::StoreSync { payload, reply } => {
                let _ = reply.send(self.replication.serve_sync(&payload));
            }
            Command::SetTags { tags, reply } => {
                let _ = reply.send(self.set_tags(now, tags));
            }
            Command::Keys { change, reply } => self.run_key_command(change, reply),
            Command::KeyRequest {
                from,
                payload,
                reply,
            } => {
                let (answer, offer) = self.trust.answer(&payload);
                tracing::debug!(peer = %from, version = answer.version, "keyring command answered");
                if let Offer::Adopted(version) = offer {
                    tracing::info!(peer = %from, version, "adopted the keyring of a key command");
                    self.after_keyring_change();
                }
                let _ = reply.send(Some(prost::Message::encode_to_vec(&answer)));
            }
        }
    }

    /// Our push-pull payload: the core's table, plus our keyring when we have one, and the
    /// roots of our stores.
    fn push_pull_payload(&self) -> Vec<u8> {
        let mut payload = self.core.push_pull_payload();
        self.trust.attach(&mut payload);
        self.replication.attach_roots(&mut payload);
        payload
    }

    /// Starts the stores' anti-entropy with `peer` when its push-pull answer says our stores
    /// differ. Only the side that started the push-pull does: the peer saw the same roots, and
    /// one exchange repairs both sides.
    fn sync_if_stores_differ(&mut self, peer: SocketAddr, push_pull: &[u8]) {
        if self.replication.roots_differ(push_pull) {
            self.start_store_sync(peer);
        }
    }

    /// Adopts the keyring a peer's push-pull carries if it is newer than ours.
    fn offer_keyring(&mut self, peer: SocketAddr, push_pull: &[u8]) {
        match self.trust.offer_from_push_pull(push_pull) {
            Offer::Adopted(version) => {
                tracing::info!(%peer, version, "adopted a newer keyring from a peer");
                self.after_keyring_change();
            }
            Offer::Refused(reason) => {
                tracing::warn!(%peer, %reason, "refused the keyring a peer sent")
            }
            Offer::Kept => {}
        }
    }

    /// The QUIC server answers with the (maybe new) keyring's certificates from now on.
    fn after_keyring_change(&mut self) {
        self.io
            .endpoint
            .set_server_config(Some(self.trust.tls().server.clone()));
        self.counters.keyring_version = self.trust.version();
    }

    /// Applies a keyring change here, then sends the command to every live member in a task
    /// that answers `reply` with the report.
    fn run_key_command(
        &mut self,
        change: Option<KeyChange>,
        reply: oneshot::Sender<Result<KeyReport, String>>,
    ) {
        if !self.trust.is_sealed() {
            let _ = reply.send(Err(NO_KEYRING.into()));
            return;
        }
        let (op, command) = match &change {
            None => (
                KeyOp::List,
                wire::key_command::Command::List(wire::ListKeys {}),
            ),
            Some(change) => {
                let op = match change {
                    KeyChange::Install(_) => KeyOp::Install,
                    KeyChange::Use(_) => KeyOp::Use,
                    KeyChange::Remove(_) => KeyOp::Remove,
                };
                match self.trust.change(change) {
                    Ok(state) => {
                        tracing::info!(
                            ?op,
                            version = state.version,
                            "keyring changed by an operator"
                        );
                        self.after_keyring_change();
                        (op, wire::key_command::Command::Adopt(state))
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
            }
        };
        let members: Vec<(String, SocketAddr)> = self
            .core
            .members()
            .into_iter()
            .filter(|m| {
                !m.is_local && matches!(m.state, MemberState::Alive | MemberState::Suspected)
            })
            .map(|m| (m.name, m.addr))
            .collect();
        let local = LocalKeys {
            version: self.trust.version(),
            ids: self.trust.key_ids(),
        };
        let command = prost::Message::encode_to_vec(&wire::KeyCommand {
            command: Some(command),
        });
        let endpoint = self.io.endpoint.clone();
        let dial = self.trust.keys_dial();
        let timeout = self.settings.exchange_timeout;
        tokio::spawn(async move {
            let answers = keys::fan_out(endpoint, dial, members, command, timeout).await;
            let _ = reply.send(Ok(keys::report(op, &local, &answers)));
        });
    }

    fn set_tags(
        &mut self,
        now: Instant,
        tags: BTreeMap<String, String>,
    ) -> Result<u64, SetTagsRefused> {
        if self.leave_deadline.is_some() {
            return Err(SetTagsRefused::Leaving);
        }
        let meta = NodeMeta {
            tags,
            ..self.core.local().meta
        };
        self.core
            .set_meta(now, meta)
            .map_err(SetTagsRefused::Invalid)?;
        Ok(self.core.local().incarnation)
    }

    fn on_result(&mut self, result: TaskResult) {
        let now = Instant::now();
        match result {
            TaskResult::Exchange { request, result } => self.on_exchange(now, request, result),
            TaskResult::SeedsResolved(resolved) => {
                tracing::debug!(resolved = %notices::comma_list(&resolved), "seeds resolved");
                self.core.handle_seeds_resolved(now, &resolved);
            }
            TaskResult::StoreSync { peer, result } => match result {
                Ok(reply) => {
                    self.counters.stream_received(reply.len());
                    if let Some(next) = self.replication.sync_reply(&reply) {
                        self.spawn_store_sync(peer, next);
                    }
                }
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "store sync failed");
                    self.replication.sync_failed();
                }
            },
        }
    }

    /// Reports how an exchange the core asked for ended; an answer may carry a newer keyring.
    fn on_exchange(
        &mut self,
        now: Instant,
        request: PushPullRequest,
        result: Result<Vec<u8>, ExchangeError>,
    ) {
        let peer = request.peer;
        let outcome = match &result {
            Ok(reply) => {
                self.counters.stream_received(reply.len());
                self.offer_keyring(peer, reply);
                self.sync_if_stores_differ(peer, reply);
                ExchangeOutcome::Answered(reply)
            }
            Err(err) => {
                self.counters.push_pull_failed += 1;
                tracing::debug!(%peer, purpose = ?request.purpose, error = %err, "push-pull failed");
                if err.is_handshake_refusal() {
                    ExchangeOutcome::Refused
                } else {
                    ExchangeOutcome::Unanswered
                }
            }
        };
        let answered = result.is_ok();
        match self.core.handle_push_pull_reply(now, &request, outcome) {
            Ok(()) if answered => self.counters.push_pull_ok += 1,
            Ok(()) => {}
            Err(reason) => {
                self.counters.push_pull_failed += 1;
                tracing::debug!(%peer, ?reason, "rejected push-pull reply");
            }
        }
    }

    /// Drains the core's outputs in contract order, then publishes a snapshot if due.
    async fn after_input(&mut self, force_publish: bool) {
        // The stores first: their payloads become SWIM datagrams below.
        if let Some(peer) = self.replication.drain(&mut self.core, Instant::now()) {
            self.start_store_sync(peer);
        }
        self.note_vitals_heard();
        while let Some(transmit) = self.core.poll_transmit() {
            let bytes = self.trust.seal(transmit.dst, transmit.payload);
            self.counters.swim_udp_bytes_sent += bytes.len() as u64;
            if let Err(err) = self.io.udp.send_to(&bytes, transmit.dst).await {
                self.counters.send_errors += 1;
                tracing::debug!(dst = %transmit.dst, error = %err, "udp send failed");
            }
        }
        while let Some(request) = self.core.poll_push_pull() {
            self.spawn_exchange(request);
        }
        if self.core.poll_seed_lookup() {
            self.spawn_seed_lookup();
        }
        while let Some(notice) = self.core.poll_notice() {
            notices::log(&notice, &self.settings.seeds, self.settings.seeds_refreshed);
            // A node that just joined, or just met a cluster it had formed apart from, brings
            // its stores together with that peer's at once.
            if let Notice::Joined { seed: peer } | Notice::RefreshMerged { peer, .. } = notice {
                self.start_store_sync(peer);
            }
        }
        let mut fresh = Vec::new();
        let mut returned = Vec::new();
        while let Some(event) = self.core.poll_event() {
            log_event(&event);
            if let Some(addr) = event.returned() {
                returned.push(addr);
            }
            self.last_event_seq += 1;
            fresh.push(SequencedEvent {
                seq: self.last_event_seq,
                event,
            });
        }
        // Members back from DOWN: their side of a healed partition may hold writes ours lack.
        for peer in returned {
            if self.replication.member_returned() {
                self.start_store_sync(peer);
            }
        }
        let now = Instant::now();
        let stale = match self.last_publish {
            Some(at) => now.duration_since(at) >= PUBLISH_INTERVAL,
            None => true,
        };
        if force_publish || !fresh.is_empty() {
            // Every change to the member list comes with an event (a member appeared, changed
            // state, incarnation, address or metadata, or was reaped).
            self.refresh_members(now);
        }
        if force_publish || stale || !fresh.is_empty() {
            self.publish(now);
        }
        // Only after the snapshot that contains them: see `EventFeed::subscribe`.
        for event in fresh {
            // No receivers is fine: nobody is watching.
            let _ = self.io.events.send(Arc::new(event));
        }
    }

    /// Runs an exchange the core asked for in a task; its outcome comes back as a result.
    fn spawn_exchange(&mut self, request: PushPullRequest) {
        let payload = self.push_pull_payload();
        self.counters.stream_sent(payload.len());
        let endpoint = self.io.endpoint.clone();
        let dial = self.trust.push_pull_dial();
        let timeout = match request.purpose {
            Purpose::AntiEntropy => self.settings.exchange_timeout,
            Purpose::Join | Purpose::SeedRefresh => self.settings.seed_attempt_timeout,
        };
        let results = self.results_tx.clone();
        tokio::spawn(async move {
            let peer = request.peer;
            let result = quic::exchange(&endpoint, &dial, peer, &payload, timeout).await;
            let _ = results.send(TaskResult::Exchange { request, result });
        });
    }

    /// Starts the stores' anti-entropy with `peer`, unless an exchange this node started runs.
    fn start_store_sync(&mut self, peer: SocketAddr) {
        if let Some(start) = self.replication.sync_start() {
            self.spawn_store_sync(peer, start);
        }
    }

    /// Runs one step of the stores' anti-entropy with `peer` in a task; the answer comes back
    /// as a result, and the next step (if any) starts from there.
    fn spawn_store_sync(&mut self, peer: SocketAddr, step: Vec<u8>) {
        self.counters.stream_sent(step.len());
        let endpoint = self.io.endpoint.clone();
        let dial = self.trust.store_dial();
        let timeout = self.settings.exchange_timeout;
        let results = self.results_tx.clone();
        tokio::spawn(async move {
            let result = quic::exchange(&endpoint, &dial, peer, &step, timeout).await;
            let _ = results.send(TaskResult::StoreSync { peer, result });
        });
    }

    /// Resolves the seeds in a task, as the core asked; a lookup that hangs counts as one that
    /// resolved nothing, so joining goes on.
    fn spawn_seed_lookup(&self) {
        let seeds = self.settings.seeds.clone();
        let results = self.results_tx.clone();
        tokio::spawn(async move {
            let lookup = seeds::resolve(&seeds);
            let resolved = tokio::time::timeout(seeds::LOOKUP_TIMEOUT, lookup)
                .await
                .unwrap_or_default();
            let _ = results.send(TaskResult::SeedsResolved(resolved));
        });
    }

    /// Members' vitals that arrived from the network count as hearing from them.
    fn note_vitals_heard(&mut self) {
        let now = Instant::now();
        loop {
            let event = match self.store_changes.try_recv() {
                Ok(event) => event,
                // Missed changes only leave some heartbeats older than they could be; the
                // vitals are read again from the store.
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    self.vitals.changed();
                    continue;
                }
                Err(_) => return,
            };
            let change = &event.change;
            if change.store != vitals::STORE {
                continue;
            }
            self.vitals.changed();
            if change.local || change.value.is_none() {
                continue;
            }
            if let Some(version) = &change.version {
                let wall_now = replication::wall_ms();
                self.heartbeats
                    .vitals_from(&change.key, version.wall_ms, wall_now, now);
            }
        }
    }

    /// Copies the member list out of the core and recomputes the leader view from it.
    fn refresh_members(&mut self, now: Instant) {
        self.members = self.core.members().into();
        self.heartbeats.members_changed(&self.members);
        let view = coordination::leader(self.members.iter(), self.settings.expect_nodes);
        if view.leader != self.leader.leader {
            self.leader_since = now;
        }
        self.leader = view;
    }

    fn publish(&mut self, now: Instant) {
        let socket = &self.io.socket_counters;
        self.counters.datagrams_dropped_full = socket.swim_dropped_full.load(Ordering::Relaxed);
        self.counters.quic_dropped_oversize = socket.quic_dropped_oversize.load(Ordering::Relaxed);
        self.counters.recv_errors = socket.recv_errors.load(Ordering::Relaxed);
        self.counters.quic_bytes_sent = socket.quic_bytes_sent.load(Ordering::Relaxed);
        self.counters.quic_bytes_received = socket.quic_bytes_received.load(Ordering::Relaxed);
        self.counters.quic_handshakes_failed =
            socket.quic_handshakes_failed.load(Ordering::Relaxed);
        // The cached list must be what the core holds; checked in debug builds (every test).
        debug_assert_eq!(
            &self.members[..],
            &self.core.members()[..],
            "member list changed without an event"
        );
        let snapshot = Snapshot {
            local: self.core.local(),
            members: self.members.clone(),
            stats: self.core.stats().clone(),
            stores: self.replication.counts(),
            health_score: self.core.health_score(),
            pending_broadcasts: self.core.pending_broadcasts(),
            counters: self.counters.clone(),
            taken_at: now,
            last_event_seq: self.last_event_seq,
            leader: self.leader.clone(),
            leader_since: self.leader_since,
            last_heard: self.heartbeats.view(now),
            vitals: self.vitals.view(now, &self.replication),
        };
        self.io.snapshots.send_replace(snapshot);
        self.last_publish = Some(now);
    }
}
