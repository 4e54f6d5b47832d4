//! The simulator's event queue: what can happen to a node, and when.

use std::cmp::Ordering;
use std::net::SocketAddr;
use std::time::Duration;

use crate::swim::PushPullRequest;

/// What a node's core may be given.
#[derive(Debug)]
pub(super) enum Input {
    Datagram {
        from: SocketAddr,
        payload: Vec<u8>,
    },
    /// A peer's exchange arrives (a QUIC push-pull); the answer goes back to the node.
    PushPullRequest {
        from: usize,
        from_epoch: u32,
        request: PushPullRequest,
        from_addr: SocketAddr,
        payload: Vec<u8>,
    },
    /// How an exchange this node's core asked for ended: the peer's answer, or `None` when
    /// it got none.
    PushPullOutcome {
        request: PushPullRequest,
        answer: Option<Vec<u8>>,
    },
    /// The seed lookup this node's core asked for is answered.
    SeedsResolved,
    /// A step of another node's store anti-entropy; the answer goes back to it.
    StoreSyncRequest {
        from: usize,
        from_epoch: u32,
        request: Vec<u8>,
    },
    /// The answer to this node's last store anti-entropy step, from `peer`.
    StoreSyncReply {
        peer: SocketAddr,
        reply: Vec<u8>,
    },
    Wake,
    Resume,
}

/// Who an input is for: whoever holds an address on arrival, or one incarnation of a node.
#[derive(Debug)]
pub(super) enum Dest {
    Addr(SocketAddr),
    Node(usize, u32),
}

#[derive(Debug)]
pub(super) struct Scheduled {
    pub(super) at: Duration,
    pub(super) seq: u64,
    pub(super) dest: Dest,
    pub(super) input: Input,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
