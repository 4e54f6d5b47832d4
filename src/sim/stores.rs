//! The replicated stores in the simulator: every node gets a [`Stores`] core beside its SWIM
//! core, driven as the runtime drives it (payloads between the two, anti-entropy steps over the
//! simulated network, wall time from the virtual clock). Writes go through [`Sim::write`];
//! every change of a key's value at every node is recorded for the benches.

use std::net::SocketAddr;
use std::time::Duration;

use super::queue::{Dest, Input};
use super::Sim;
use crate::store::{Change, Op, StoreConfig, Stores, SyncRound, WriteError, Written};

/// Wall-clock milliseconds at virtual time zero: a plausible date, so stamps look real.
pub(super) const WALL_EPOCH_MS: u64 = 1_750_000_000_000;

/// A change of a key's value seen at one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSeen {
    /// Virtual time since the start of the run.
    pub at: Duration,
    /// The node that saw it.
    pub node: usize,
    /// The change.
    pub change: Change,
}

impl Sim {
    /// Gives every node added from now on replicated stores with `config` (nodes already
    /// added keep none). Call before adding nodes.
    pub fn enable_stores(&mut self, config: StoreConfig) {
        self.store_config = Some(config);
    }

    /// The wall time the stores of every node see now.
    pub(super) fn wall_ms(&self) -> u64 {
        WALL_EPOCH_MS + u64::try_from(self.now.as_millis()).unwrap_or(u64::MAX)
    }

    /// A write at node `i` now; its outputs go out as after any input.
    pub fn write(
        &mut self,
        i: usize,
        store: &str,
        key: &str,
        op: Op,
    ) -> Result<Written, WriteError> {
        let now_ms = self.wall_ms();
        let stores = self
            .nodes
            .get_mut(i)
            .filter(|n| n.core.is_some())
            .and_then(|n| n.stores.as_mut())
            .ok_or(WriteError::NotFound)?;
        let result = stores.write(now_ms, store, key, op);
        self.drain(i);
        result
    }

    /// The stores of node `i`, unless it crashed or the simulation has none.
    pub fn stores(&self, i: usize) -> Option<&Stores> {
        self.nodes
            .get(i)
            .filter(|n| n.core.is_some())
            .and_then(|n| n.stores.as_ref())
    }

    /// Every store change seen at any node since the last call, in order.
    pub fn take_store_changes(&mut self) -> Vec<StoreSeen> {
        std::mem::take(&mut self.store_changes)
    }

    /// Hands node `i`'s store outputs on: payloads to its SWIM core, changes to the record,
    /// and the anti-entropy round with a random member when one is due (as the driver does).
    pub(super) fn drain_stores(&mut self, i: usize) {
        let now = self.instant(self.now);
        let at = self.now;
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        let (Some(core), Some(stores)) = (node.core.as_mut(), node.stores.as_mut()) else {
            return;
        };
        while let Some(b) = stores.poll_broadcast() {
            core.broadcast_payload(now, b.payload, b.local);
        }
        while let Some(change) = stores.poll_change() {
            self.store_changes.push(StoreSeen {
                at,
                node: i,
                change,
            });
        }
        let peer = match stores.poll_sync() {
            Some(SyncRound::Digest) => {
                let digest = stores.digest_payload();
                core.send_payload_to_random(&digest);
                None
            }
            Some(SyncRound::Exchange) => core.random_peer(),
            None => None,
        };
        if let Some(peer) = peer {
            self.start_store_sync(i, peer);
        }
    }

    /// Appends node `i`'s store roots to its push-pull `payload`, as the driver does.
    pub(super) fn attach_roots(&self, i: usize, payload: &mut Vec<u8>) {
        if let Some(stores) = self.nodes.get(i).and_then(|n| n.stores.as_ref()) {
            stores.attach_roots(payload);
        }
    }

    /// Starts anti-entropy between node `i` and `peer` when the roots in the peer's push-pull
    /// `payload` are not node `i`'s.
    pub(super) fn sync_if_stores_differ(&mut self, i: usize, peer: SocketAddr, payload: &[u8]) {
        let differ = self
            .nodes
            .get(i)
            .and_then(|n| n.stores.as_ref())
            .is_some_and(|stores| stores.push_pull_roots_differ(payload));
        if differ {
            self.start_store_sync(i, peer);
        }
    }

    /// Starts an anti-entropy exchange of node `i`'s stores with the node at `peer`.
    pub(super) fn start_store_sync(&mut self, i: usize, peer: SocketAddr) {
        let now_ms = self.wall_ms();
        let request = self
            .nodes
            .get_mut(i)
            .and_then(|n| n.stores.as_mut())
            .and_then(|stores| stores.sync_start(now_ms));
        if let Some(request) = request {
            self.send_store_sync(i, peer, request);
        }
    }

    /// Sends one anti-entropy step of node `i` to `peer`; one the network cannot carry ends
    /// the exchange (as a QUIC exchange that fails; at once here, where QUIC would take its
    /// timeout).
    pub(super) fn send_store_sync(&mut self, i: usize, peer: SocketAddr, request: Vec<u8>) {
        let Some(epoch) = self.nodes.get(i).map(|n| n.epoch) else {
            return;
        };
        if !self.can_talk(i, peer) {
            if let Some(stores) = self.nodes.get_mut(i).and_then(|n| n.stores.as_mut()) {
                stores.sync_failed();
            }
            return;
        }
        let at = self.now + self.net.latency;
        let input = Input::StoreSyncRequest {
            from: i,
            from_epoch: epoch,
            request,
        };
        self.schedule(at, Dest::Addr(peer), input);
    }
}
