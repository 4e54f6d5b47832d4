//! The sans-IO SWIM protocol core: no sockets, no clock reads, no tokio, no global RNG.
//!
//! [`Swim`] is a plain state machine. Its driving contract:
//! - Inputs: [`Swim::handle_datagram`], [`Swim::handle_timeout`], [`Swim::handle_push_pull`] (a
//!   peer's exchange), [`Swim::handle_push_pull_reply`] (how an exchange we asked for ended),
//!   [`Swim::handle_seeds_resolved`], and the commands [`Swim::join`] (through seeds),
//!   [`Swim::start_alone`] (without), [`Swim::leave`], [`Swim::set_meta`].
//! - After every input, the caller drains the outputs: [`Swim::poll_transmit`] until `None`,
//!   [`Swim::poll_push_pull`] until `None` (run each exchange, report its outcome once),
//!   [`Swim::poll_seed_lookup`] (resolve the seeds when true, report them once),
//!   [`Swim::poll_event`] and [`Swim::poll_notice`] until `None`, then re-arms one timer at
//!   [`Swim::poll_timeout`] (an absolute deadline; the core keeps its timers itself).
//! - `now` is monotonic and never goes backwards between calls; randomness comes only from the
//!   seed given to [`Swim::new`], so a run is reproducible.

#![warn(missing_docs)]

pub mod awareness;
pub mod broadcast;
pub mod codec;
pub mod config;
pub mod limits;
pub mod members;
mod node;
pub mod payloads;
pub mod probe;
pub mod seeding;
pub mod state;
pub mod suspicion;
pub mod timers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

pub use config::{Config, ProbeSchedule};
pub use node::{push_pull_scale, KnownMember, Swim};
pub use seeding::{ExchangeOutcome, Notice, Purpose, PushPullRequest};

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

impl Event {
    /// The address of a member this node held DOWN that is ALIVE again (a partition healed,
    /// or a node came back); `None` for any other change.
    pub fn returned(&self) -> Option<SocketAddr> {
        match self {
            Event::Changed {
                member,
                previous: Some(MemberState::Down),
                ..
            } if member.state == MemberState::Alive => Some(member.addr),
            _ => None,
        }
    }
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

/// Why a fact or a request in a valid datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// A new member while the table already holds [`Config::max_members`].
    TableFull,
    /// A fact that would move a live member to another address, not sent by the member itself.
    AddressConflict,
    /// An incarnation more than [`limits::MAX_INCARNATION_JUMP`] above the one held.
    IncarnationJump,
    /// A ping-req from a sender that is not a live member at its address, or for a target that
    /// is not a live member at the address given: served only for members, so nobody can use
    /// the cluster to send datagrams to a third party.
    PingReqUnknown,
    /// A ping from an address that is no member's, too small for our ack (a real ping names
    /// us, so it never is): answering would send a forged source more than it sent.
    AckLargerThanPing,
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
    /// Facts and requests refused in otherwise valid datagrams, by reason.
    pub refused: BTreeMap<Refusal, u64>,
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
    /// Join rounds in which no seed answered.
    pub join_rounds_failed: u64,
    /// Payloads of other cores received from members (handed out by `poll_payload`).
    pub payloads_received: u64,
    /// Payloads dropped: from a sender that is not a member at its address, or waiting in a
    /// full queue.
    pub payloads_dropped: u64,
    /// Pending updates dropped from a full gossip queue (the most-sent, oldest first).
    pub updates_dropped: u64,
    /// Round trips of probes answered by a direct ack.
    pub probe_rtt: probe::RttHistogram,
}
