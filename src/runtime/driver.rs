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
use super::join::{self, JoinState, RoundFailure};
use super::keys::{self, KeyOp, KeyReport, LocalKeys};
use super::quic::{self, ExchangeError};
use super::rejoin::{self, SeedRefresh};
use super::seeds::{self, Seed};
use super::snapshot::{RuntimeCounters, Snapshot};
use super::socket::{SocketCounters, SwimDatagram};
use super::trust::{KeyChange, Offer, Trust};
use crate::seal::OpenError;
use crate::swim::limits::LimitError;
use crate::swim::{MemberState, MemberView, NodeMeta, Swim};
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

/// Outcome of a task the driver spawned.
enum TaskResult {
    /// A periodic push-pull the core asked for.
    PushPull {
        peer: SocketAddr,
        result: Result<Vec<u8>, ExchangeError>,
    },
    /// A join round: the first seed that answered with its reply, or every address tried.
    Join(join::RoundResult),
    /// A seed refresh's DNS lookup finished (our own address excluded).
    SeedsResolved(Vec<SocketAddr>),
    /// A seed refresh's push-pull with an address no live member has.
    SeedExchange {
        peer: SocketAddr,
        result: Result<Vec<u8>, ExchangeError>,
    },
}

/// The driver's fixed settings.
pub struct DriverSettings {
    /// Seeds to join through; empty means start alone.
    pub seeds: Vec<Seed>,
    /// Our own advertised address, skipped among resolved seeds.
    pub advertise: SocketAddr,
    /// How long a leave may take before the driver stops anyway.
    pub leave_timeout: Duration,
    /// Bound on each push-pull exchange.
    pub exchange_timeout: Duration,
    /// How often seeds are resolved again once in a cluster; zero disables it.
    pub seed_refresh_interval: Duration,
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
    trust: Trust,
    io: DriverIo,
    settings: DriverSettings,
    counters: RuntimeCounters,
    results_tx: mpsc::UnboundedSender<TaskResult>,
    results_rx: mpsc::UnboundedReceiver<TaskResult>,
    join: JoinState,
    refresh: SeedRefresh,
    leave_deadline: Option<Instant>,
    last_publish: Option<Instant>,
    last_event_seq: u64,
    /// The member list of the last snapshot; rebuilt only after membership events, since
    /// copying every member (names, tags) is what a publish would otherwise cost.
    members: Arc<[MemberView]>,
    /// Datagrams that did not open since the last warning about them, and when it was.
    rejected_since_warning: u64,
    last_reject_warning: Option<Instant>,
    /// The one line about seeds refusing our keys has been logged.
    refusal_logged: bool,
}

impl Driver {
    /// Wraps a core in state INIT, sealing and authenticating with `trust`.
    pub fn new(core: Swim, trust: Trust, io: DriverIo, settings: DriverSettings) -> Self {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let refresh = SeedRefresh::new(settings.seed_refresh_interval);
        let members = core.members().into();
        Driver {
            core,
            trust,
            io,
            settings,
            counters: RuntimeCounters::default(),
            results_tx,
            results_rx,
            join: JoinState::Done,
            refresh,
            leave_deadline: None,
            last_publish: None,
            last_event_seq: 0,
            members,
            rejected_since_warning: 0,
            last_reject_warning: None,
            refusal_logged: false,
        }
    }

    /// Runs until a leave completes (or times out) or every command sender is gone.
    pub async fn run(mut self) {
        let now = Instant::now();
        if self.settings.seeds.is_empty() {
            tracing::info!("no seeds configured: starting as a cluster of one");
            self.core.start_alone(now);
        } else {
            self.join = JoinState::start(now);
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
        self.members = self.core.members().into();
        self.publish(Instant::now());
    }

    /// The earliest of the core's deadline, the next join round and the leave deadline.
    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = self.core.poll_timeout().unwrap_or(now + IDLE_WAKE);
        if let Some(at) = self.join.wake_at() {
            wake = wake.min(at);
        }
        if let Some(deadline) = self.leave_deadline {
            wake = wake.min(deadline);
        }
        if let Some(at) = self.refresh.wake_at() {
            wake = wake.min(at);
        }
        wake
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
        match self.trust.open(from, datagram.bytes) {
            Ok(plain) => self.core.handle_datagram(Instant::now(), from, &plain),
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
        // Calling early is harmless: the core fires only timers that are due.
        self.core.handle_timeout(now);
        if self.join.wake_at().is_some_and(|at| at <= now) {
            self.start_join_round();
        }
        if self.refresh.poll(now, self.refresh_applies()) {
            self.start_seed_refresh();
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Leave => {
                if self.leave_deadline.is_none() {
                    tracing::info!("leaving: announcing LEAVING to peers");
                    self.core.leave(now);
                    self.leave_deadline = Some(now + self.settings.leave_timeout);
                    self.join = JoinState::Done;
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

    /// Our push-pull payload: the core's table, plus our keyring when we have one.
    fn push_pull_payload(&self) -> Vec<u8> {
        let mut payload = self.core.push_pull_payload();
        self.trust.attach(&mut payload);
        payload
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
        if let TaskResult::PushPull {
            result: Ok(reply), ..
        }
        | TaskResult::Join(Ok((_, reply))) = &result
        {
            self.counters.stream_received(reply.len());
        }
        match &result {
            TaskResult::PushPull {
                peer,
                result: Ok(reply),
            }
            | TaskResult::SeedExchange {
                peer,
                result: Ok(reply),
            }
            | TaskResult::Join(Ok((peer, reply))) => self.offer_keyring(*peer, reply),
            _ => {}
        }
        match result {
            TaskResult::PushPull {
                peer,
                result: Ok(reply),
            } => match self.core.handle_push_pull(now, peer, &reply) {
                Ok(()) => self.counters.push_pull_ok += 1,
                Err(reason) => {
                    self.counters.push_pull_failed += 1;
                    tracing::debug!(%peer, ?reason, "rejected push-pull reply");
                }
            },
            TaskResult::PushPull {
                peer,
                result: Err(err),
            } => {
                self.counters.push_pull_failed += 1;
                tracing::debug!(%peer, error = %err, "push-pull failed");
            }
            // A round that ends after a leave began is moot.
            TaskResult::Join(_) if !self.join.in_flight() => {}
            TaskResult::Join(Ok((seed, reply))) => {
                match self.core.handle_push_pull(now, seed, &reply) {
                    Ok(()) => {
                        self.counters.push_pull_ok += 1;
                        tracing::info!(%seed, "joined cluster");
                        self.join = JoinState::Done;
                    }
                    Err(reason) => {
                        self.counters.push_pull_failed += 1;
                        tracing::warn!(%seed, ?reason, "seed answered with an unusable payload");
                        self.join_round_failed(now, vec![seed]);
                    }
                }
            }
            TaskResult::Join(Err(tried)) => self.join_round_failed(now, tried),
            TaskResult::SeedsResolved(resolved) => self.on_seeds_resolved(resolved),
            TaskResult::SeedExchange { peer, result } => self.on_seed_exchange(now, peer, result),
        }
    }

    fn join_round_failed(&mut self, now: Instant, failure: impl Into<RoundFailure>) {
        let failure = failure.into();
        let JoinState::InFlight(backoff) = &self.join else {
            return;
        };
        let mut backoff = backoff.clone();
        self.counters.join_rounds_failed += 1;
        if self.core.local().state != MemberState::Init {
            // A peer joined us through its own push-pull meanwhile: we are in a cluster.
            tracing::info!("joined cluster (a peer reached us first)");
            self.join = JoinState::Done;
            return;
        }
        if !failure.refused.is_empty() && !self.refusal_logged {
            tracing::warn!("{}", join::refused_line(&failure.refused));
            self.refusal_logged = true;
        }
        if failure.only_self {
            if self.settings.seed_refresh_interval.is_zero() {
                tracing::info!("seeds resolve only to this node: starting as a cluster of one");
            } else {
                tracing::info!("{}", join::ONLY_SELF_LINE);
            }
            self.core.start_alone(now);
            self.join = JoinState::Done;
            return;
        }
        let delay = backoff.next_delay();
        tracing::info!(
            "{}",
            join::progress_line(&failure.tried, &self.settings.seeds, delay)
        );
        self.join = JoinState::WaitUntil(now + delay, backoff);
    }

    fn start_join_round(&mut self) {
        let JoinState::WaitUntil(_, backoff) = &self.join else {
            return;
        };
        if self.core.local().state != MemberState::Init {
            tracing::info!("joined cluster (a peer reached us first)");
            self.join = JoinState::Done;
            return;
        }
        self.join = JoinState::InFlight(backoff.clone());
        let payload = self.push_pull_payload();
        self.counters.stream_sent(payload.len());
        let seeds = self.settings.seeds.clone();
        let own = self.settings.advertise;
        let timeout = self.settings.exchange_timeout.min(join::ATTEMPT_TIMEOUT);
        let endpoint = self.io.endpoint.clone();
        let dial = self.trust.push_pull_dial();
        let results = self.results_tx.clone();
        tokio::spawn(async move {
            let result = join::round(&endpoint, &dial, &seeds, own, &payload, timeout).await;
            let _ = results.send(TaskResult::Join(result));
        });
    }

    /// Seed refresh runs once this node is in a cluster through seeds, until it leaves.
    fn refresh_applies(&self) -> bool {
        !self.settings.seeds.is_empty()
            && self.leave_deadline.is_none()
            && matches!(
                self.core.local().state,
                MemberState::Alive | MemberState::Suspected
            )
    }

    /// Resolves the seeds in a task; [`Self::on_seeds_resolved`] picks whom to contact.
    fn start_seed_refresh(&self) {
        let seeds = self.settings.seeds.clone();
        let own = self.settings.advertise;
        let results = self.results_tx.clone();
        tokio::spawn(async move {
            let resolved = seeds::resolve(&seeds, own).await;
            let _ = results.send(TaskResult::SeedsResolved(resolved));
        });
    }

    fn on_seeds_resolved(&mut self, resolved: Vec<SocketAddr>) {
        let cursor = self.refresh.resolved();
        if !self.refresh_applies() {
            return;
        }
        let chosen = rejoin::choose(
            &self.refresh.not_in_flight(&resolved),
            self.settings.advertise,
            &self.core.members(),
            rejoin::MAX_CONTACTS_PER_REFRESH,
            cursor,
        );
        tracing::debug!(
            resolved = %join_addrs(&resolved),
            contacting = %join_addrs(&chosen),
            "seed refresh"
        );
        let payload = self.push_pull_payload();
        let timeout = self.settings.exchange_timeout.min(join::ATTEMPT_TIMEOUT);
        for peer in chosen {
            self.refresh.contact_started(peer);
            let payload = payload.clone();
            let endpoint = self.io.endpoint.clone();
            let dial = self.trust.push_pull_dial();
            let results = self.results_tx.clone();
            tokio::spawn(async move {
                let result = quic::exchange(&endpoint, &dial, peer, &payload, timeout).await;
                let _ = results.send(TaskResult::SeedExchange { peer, result });
            });
        }
    }

    fn on_seed_exchange(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        result: Result<Vec<u8>, ExchangeError>,
    ) {
        self.refresh.contact_ended(peer);
        let reply = match result {
            Ok(reply) => reply,
            Err(err) => {
                self.counters.push_pull_failed += 1;
                tracing::debug!(%peer, error = %err, "seed refresh: address did not answer");
                return;
            }
        };
        let entry = |m: &MemberView| (m.name.clone(), m.addr, m.state, m.incarnation);
        let before: Vec<_> = self.core.members().iter().map(entry).collect();
        match self.core.handle_push_pull(now, peer, &reply) {
            Ok(()) => {
                self.counters.push_pull_ok += 1;
                let changed = self
                    .core
                    .members()
                    .iter()
                    .filter(|m| !before.contains(&entry(m)))
                    .count();
                tracing::info!(
                    %peer,
                    members_new_or_changed = changed,
                    "seed refresh: merged with an address no live member had"
                );
            }
            Err(reason) => {
                self.counters.push_pull_failed += 1;
                tracing::debug!(%peer, ?reason, "seed refresh: rejected push-pull reply");
            }
        }
    }

    /// Drains the core's outputs in contract order, then publishes a snapshot if due.
    async fn after_input(&mut self, force_publish: bool) {
        while let Some(transmit) = self.core.poll_transmit() {
            let bytes = self.trust.seal(transmit.dst, transmit.payload);
            self.counters.swim_udp_bytes_sent += bytes.len() as u64;
            if let Err(err) = self.io.udp.send_to(&bytes, transmit.dst).await {
                self.counters.send_errors += 1;
                tracing::debug!(dst = %transmit.dst, error = %err, "udp send failed");
            }
        }
        while let Some(peer) = self.core.poll_push_pull() {
            self.spawn_push_pull(peer);
        }
        let mut fresh = Vec::new();
        while let Some(event) = self.core.poll_event() {
            log_event(&event);
            self.last_event_seq += 1;
            fresh.push(SequencedEvent {
                seq: self.last_event_seq,
                event,
            });
        }
        let now = Instant::now();
        let stale = match self.last_publish {
            Some(at) => now.duration_since(at) >= PUBLISH_INTERVAL,
            None => true,
        };
        if force_publish || !fresh.is_empty() {
            // Every change to the member list comes with an event (a member appeared, changed
            // state, incarnation, address or metadata, or was reaped).
            self.members = self.core.members().into();
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

    fn spawn_push_pull(&mut self, peer: SocketAddr) {
        let payload = self.push_pull_payload();
        self.counters.stream_sent(payload.len());
        let endpoint = self.io.endpoint.clone();
        let dial = self.trust.push_pull_dial();
        let timeout = self.settings.exchange_timeout;
        let results = self.results_tx.clone();
        tokio::spawn(async move {
            let result = quic::exchange(&endpoint, &dial, peer, &payload, timeout).await;
            let _ = results.send(TaskResult::PushPull { peer, result });
        });
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
            health_score: self.core.health_score(),
            pending_broadcasts: self.core.pending_broadcasts(),
            counters: self.counters.clone(),
            taken_at: now,
            last_event_seq: self.last_event_seq,
        };
        self.io.snapshots.send_replace(snapshot);
        self.last_publish = Some(now);
    }
}

/// Addresses as one comma-separated log field.
fn join_addrs(addrs: &[SocketAddr]) -> String {
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    list.join(",")
}
