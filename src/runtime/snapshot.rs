//! The read-only picture of the node the driver publishes after its inputs (via `watch`).
//!
//! The member list is shared ([`Arc`]) and rebuilt only when membership changes; everything
//! else (counters, health, this node's own entry) is small and copied at every publish. So
//! republishing to keep counters fresh costs the same at 10 members as at 10,000.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::replication::StoreCounts;
use crate::coordination::{self, LeaderView};
use crate::swim::{MemberState, MemberView, Stats};

/// Counters kept by the runtime itself (the core keeps its own in [`Stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeCounters {
    /// SWIM datagrams dropped because the driver's channel was full.
    pub datagrams_dropped_full: u64,
    /// QUIC packets dropped because they exceeded quinn's receive buffer.
    pub quic_dropped_oversize: u64,
    /// Socket receive errors swallowed so the shared receive loop keeps running.
    pub recv_errors: u64,
    /// UDP payload bytes of QUIC packets sent: push-pull messages plus QUIC's own overhead
    /// (handshake, TLS, packet headers, acks), which the stream counters below leave out.
    pub quic_bytes_sent: u64,
    /// UDP payload bytes of QUIC packets received.
    pub quic_bytes_received: u64,
    /// Datagrams the core produced but the socket failed to send.
    pub send_errors: u64,
    /// Push-pull exchanges (both directions) that completed and merged.
    pub push_pull_ok: u64,
    /// Push-pull exchanges that failed (timeout, connection, rejected payload).
    pub push_pull_failed: u64,
    /// Push-pull messages handed to QUIC streams (requests, replies, one per join round).
    pub stream_messages_sent: u64,
    /// Bytes of those messages.
    pub stream_bytes_sent: u64,
    /// Push-pull messages read from QUIC streams (requests and replies, merged or rejected).
    pub stream_messages_received: u64,
    /// Bytes of those messages.
    pub stream_bytes_received: u64,
    /// UDP payload bytes of SWIM datagrams sent (sealed size when a keyring is configured).
    pub swim_udp_bytes_sent: u64,
    /// UDP payload bytes of SWIM datagrams received, opened or not.
    pub swim_udp_bytes_received: u64,
    /// Datagrams dropped because no installed key opens them.
    pub rejected_decrypt: u64,
    /// Plain (unsealed) datagrams dropped because this node requires sealing.
    pub rejected_unsealed: u64,
    /// Authentic sealed datagrams dropped for a send time outside the replay window.
    pub rejected_stale: u64,
    /// QUIC handshakes this node's server refused (no common key, a foreign certificate).
    pub quic_handshakes_failed: u64,
    /// This node's keyring version (0 without a keyring or before any change).
    pub keyring_version: u64,
}

impl RuntimeCounters {
    /// Counts one push-pull message of `len` bytes sent on a QUIC stream.
    pub fn stream_sent(&mut self, len: usize) {
        self.stream_messages_sent += 1;
        self.stream_bytes_sent += len as u64;
    }

    /// Counts one push-pull message of `len` bytes received on a QUIC stream.
    pub fn stream_received(&mut self, len: usize) {
        self.stream_messages_received += 1;
        self.stream_bytes_received += len as u64;
    }
}

/// Everything the API needs, copied out of the core at `taken_at`.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// This node's own entry.
    pub local: MemberView,
    /// Every known member, this node included, sorted by name. Shared between snapshots until
    /// the next membership event replaces it.
    pub members: Arc<[MemberView]>,
    /// The core's counters.
    pub stats: Stats,
    /// The replicated stores: counts and counters.
    pub stores: StoreCounts,
    /// Lifeguard local health score (0 is healthy).
    pub health_score: u32,
    /// Updates waiting to be piggybacked.
    pub pending_broadcasts: usize,
    /// The runtime's own counters.
    pub counters: RuntimeCounters,
    /// When this snapshot was taken (its age tells how fresh the counters are).
    pub taken_at: Instant,
    /// Sequence number of the newest event this snapshot already reflects (0: none yet).
    pub last_event_seq: u64,
    /// Who leads in this node's view, and whether it sees a quorum.
    pub leader: LeaderView,
    /// When this node last saw the leader change (to `leader.leader`, or to none).
    pub leader_since: Instant,
    /// When this node last heard from each member, directly or by its gossiped vitals
    /// (refreshed once a second; members never heard from are absent).
    pub last_heard: Arc<HashMap<String, Instant>>,
    /// Every member's vitals (the JSON documents of the store `nodes`, refreshed at most once a
    /// second), by name.
    pub vitals: Arc<HashMap<String, serde_json::Value>>,
}

impl Snapshot {
    /// A snapshot of a node that knows only itself, e.g. before the driver starts.
    pub fn of_local(local: MemberView, taken_at: Instant) -> Self {
        Snapshot {
            leader: coordination::leader([&local], None),
            leader_since: taken_at,
            last_heard: Arc::default(),
            vitals: Arc::default(),
            members: Arc::new([local.clone()]),
            local,
            stats: Stats::default(),
            stores: StoreCounts::default(),
            health_score: 0,
            pending_broadcasts: 0,
            counters: RuntimeCounters::default(),
            taken_at,
            last_event_seq: 0,
        }
    }

    /// How many members are in `state`.
    pub fn count(&self, state: MemberState) -> usize {
        self.members.iter().filter(|m| m.state == state).count()
    }

    /// Members (self included) that are ALIVE or SUSPECTED: the cluster as far as we can tell.
    pub fn cluster_size(&self) -> usize {
        self.count(MemberState::Alive) + self.count(MemberState::Suspected)
    }
}
