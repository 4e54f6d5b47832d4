//! The sans-IO SWIM protocol core: no sockets, no clock reads, no tokio, no global RNG.
//!
//! [`Swim`] is a plain state machine. Its driving contract:
//! - Inputs: [`Swim::handle_datagram`], [`Swim::handle_timeout`], [`Swim::handle_push_pull`], and
//!   the commands [`Swim::start_alone`], [`Swim::leave`], [`Swim::set_meta`].
//! - After every input, the caller drains the outputs: [`Swim::poll_transmit`] until `None`,
//!   [`Swim::poll_push_pull`] until `None`, [`Swim::poll_event`] until `None`, then re-arms one
//!   timer at [`Swim::poll_timeout`] (an absolute deadline; the core keeps its timers itself).
//! - `now` is monotonic and never goes backwards between calls; randomness comes only from the
//!   seed given to [`Swim::new`], so a run is reproducible.

pub mod codec;
pub mod config;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

pub use config::Config;

/// Operator-supplied description of a node, carried with every ALIVE update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeMeta {
    /// Region label, e.g. "us-east-1". Empty when unset.
    pub region: String,
    /// Zone label, e.g. "us-east-1a". Empty when unset.
    pub zone: String,
    /// Free-form key=value tags.
    pub tags: BTreeMap<String, String>,
}

/// Who this node is: the name and address it announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Unique member name; a restarted node with the same name takes over its old entry.
    pub name: String,
    /// Address peers reach this node's SWIM/QUIC socket at.
    pub addr: SocketAddr,
    /// Region, zone and tags.
    pub meta: NodeMeta,
}

/// A member's lifecycle state. Discriminants are the `/ha/status` "status" codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberState {
    /// This node itself, before it has joined a cluster.
    Init = 0,
    /// Answering probes.
    Alive = 1,
    /// Missed a probe round; DOWN unless it refutes before its suspicion timer ends.
    Suspected = 2,
    /// Declared failed.
    Down = 3,
    /// Left gracefully.
    Leaving = 4,
}

/// One member as the core sees it now (a copy; holding it does not borrow the core).
#[derive(Clone, Debug, PartialEq)]
pub struct MemberView {
    /// Member name.
    pub name: String,
    /// Its SWIM/QUIC address.
    pub addr: SocketAddr,
    /// Current state.
    pub state: MemberState,
    /// Current incarnation.
    pub incarnation: u64,
    /// Region, zone and tags.
    pub meta: NodeMeta,
    /// When this node last saw the state change.
    pub since: Instant,
    /// True for the entry describing this node itself.
    pub is_local: bool,
}

/// A datagram the caller must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address.
    pub dst: SocketAddr,
    /// Bytes to send, header byte included.
    pub payload: Vec<u8>,
}

/// Why a member's state changed, for logs and events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeReason {
    /// This node joined or started alone.
    LocalStart,
    /// Learned from a piggybacked or gossiped update sent by this member.
    Gossip {
        /// Name of the member whose datagram carried the update.
        from: String,
    },
    /// Learned from a full-state push-pull exchange.
    PushPull,
    /// Our own probe round to it failed (direct and indirect).
    ProbeFailed,
    /// Its suspicion timer ran out without a refutation.
    SuspicionExpired,
    /// This node heard itself suspected or declared down and refuted with a higher incarnation.
    Refuted,
    /// This node is leaving gracefully.
    LocalLeave,
    /// This node's metadata changed (incarnation bumped).
    MetaChanged,
}

/// A membership change, drained with [`Swim::poll_event`].
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A member appeared or changed state, incarnation, address or metadata.
    Changed {
        /// The member after the change.
        member: MemberView,
        /// Its state before, or `None` if it was not known.
        previous: Option<MemberState>,
        /// Why it changed.
        reason: ChangeReason,
    },
    /// A DOWN or LEAVING member passed its retention time and was forgotten.
    Reaped {
        /// Name of the forgotten member.
        name: String,
    },
}

/// Why an incoming datagram or push-pull message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Empty, or the protobuf body does not decode.
    Malformed,
    /// Header byte names a wire version this node does not speak.
    UnknownVersion,
    /// Larger than the size limit, or more entries than the count limit.
    Oversized,
    /// Decodes, but a field is invalid (bad address, empty name, unknown state).
    InvalidField,
    /// Addressed to another member name (stale address).
    NotForUs,
}

/// Running counters kept by the core, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams accepted and processed.
    pub datagrams_received: u64,
    /// Bytes of accepted datagrams.
    pub bytes_received: u64,
    /// Datagrams handed out by `poll_transmit`.
    pub datagrams_sent: u64,
    /// Bytes handed out by `poll_transmit`.
    pub bytes_sent: u64,
    /// Dropped datagrams and push-pull messages, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Probe rounds answered by a direct ack.
    pub probes_acked: u64,
    /// Probe rounds answered only through an indirect prober.
    pub probes_indirect_acked: u64,
    /// Probe rounds that got no ack at all.
    pub probes_failed: u64,
    /// Suspicions this node raised.
    pub suspicions_raised: u64,
    /// Times this node refuted a suspicion (or DOWN) about itself.
    pub refutations: u64,
    /// Full-state exchanges merged.
    pub push_pulls: u64,
}

/// The SWIM state machine for one node. See the module docs for the driving contract.
#[derive(Debug)]
pub struct Swim {
    // Filled in by the implementation.
}

impl Swim {
    /// Creates a node in state INIT, holding only itself. `rng_seed` seeds all randomness.
    pub fn new(config: Config, identity: Identity, rng_seed: u64, now: Instant) -> Self {
        let _ = (config, identity, rng_seed, now);
        todo!("implemented in the core")
    }

    /// Starts as a cluster of one (no seeds given): INIT → ALIVE, probing begins.
    pub fn start_alone(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Processes one received SWIM datagram (header byte included). Bad input is dropped and
    /// counted in [`Stats::dropped`], never a panic.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let _ = (now, from, data);
        todo!()
    }

    /// Fires every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Encodes this node's full member table as a `PushPull` message to send to a peer.
    /// While INIT, the message is marked `join` and lists this node as ALIVE.
    pub fn push_pull_payload(&self) -> Vec<u8> {
        todo!()
    }

    /// Merges a peer's `PushPull` message. If this node is INIT, it is now joined (→ ALIVE) and
    /// announces itself. Errors when the message is dropped (also counted in stats).
    pub fn handle_push_pull(&mut self, now: Instant, data: &[u8]) -> Result<(), DropReason> {
        let _ = (now, data);
        todo!()
    }

    /// Begins a graceful leave: this node → LEAVING, broadcast at once to several members.
    pub fn leave(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// True once the LEAVING announcement has been sent to enough members (or there are none),
    /// so the process may exit.
    pub fn leave_announced(&self) -> bool {
        todo!()
    }

    /// Replaces this node's metadata; bumps the incarnation and broadcasts ALIVE.
    pub fn set_meta(&mut self, now: Instant, meta: NodeMeta) {
        let _ = (now, meta);
        todo!()
    }

    /// Next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }

    /// Next peer address the caller should run a full-state push-pull exchange with, if any.
    pub fn poll_push_pull(&mut self) -> Option<SocketAddr> {
        todo!()
    }

    /// Next membership change, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// Earliest deadline at which [`Swim::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// This node's own entry.
    pub fn local(&self) -> MemberView {
        todo!()
    }

    /// Every known member including this node, sorted by name.
    pub fn members(&self) -> Vec<MemberView> {
        todo!()
    }

    /// Running counters.
    pub fn stats(&self) -> &Stats {
        todo!()
    }

    /// Lifeguard local health score, 0 (healthy) up to `awareness_max_multiplier - 1`.
    pub fn health_score(&self) -> u32 {
        todo!()
    }

    /// Updates waiting to be piggybacked (broadcast queue depth).
    pub fn pending_broadcasts(&self) -> usize {
        todo!()
    }
}
