//! The simulator's event queue: what can happen to a node, and when.

use std::cmp::Ordering;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug)]
pub(super) enum Input {
    Datagram {
        from: SocketAddr,
        payload: Vec<u8>,
    },
    PushPullRequest {
        from: usize,
        from_epoch: u32,
        from_addr: SocketAddr,
        payload: Vec<u8>,
    },
    PushPullReply {
        from_addr: SocketAddr,
        payload: Vec<u8>,
    },
    Wake,
    Resume,
    JoinRetry {
        seed: SocketAddr,
    },
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
