//! The driver's side of the replicated stores: it owns the [`Stores`] core beside the SWIM
//! core, hands store payloads between the two, answers the API's reads and writes, numbers the
//! changes for watchers, and (with `--data-dir`) acknowledges a write only once it is on disk.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, oneshot};

use super::persist::{Batch, Persister};
use crate::store::{
    Change, EntryView, Kind, Op, StoreStats, StoreSummary, Stores, SyncRound, WriteError, Written,
};
use crate::swim::Swim;

/// Store changes a slow watcher may fall behind by before it must start over.
pub const STORE_EVENT_QUEUE: usize = 1024;

/// Wall-clock milliseconds since the Unix epoch: what stamps writes.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A change of a store's key, numbered in the order the driver made it (the first is 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreEvent {
    /// Position in this node's store change stream.
    pub seq: u64,
    /// The change.
    pub change: Change,
}

/// A read of the stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreQuery {
    /// Every store.
    List,
    /// Every present key of one store, and the sequence number of the last change they hold.
    Entries(String),
    /// One key.
    Get(String, String),
}

/// The answer to a [`StoreQuery`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreAnswer {
    /// Every store.
    List(Vec<StoreSummary>),
    /// One store's kind and keys (`None`: no such store), as of change `seq`.
    Entries {
        /// The store's kind and present keys.
        entries: Option<(Kind, Vec<EntryView>)>,
        /// The last change these entries include: a watcher skips changes up to it.
        seq: u64,
    },
    /// One key (`None`: absent or deleted).
    Get(Option<EntryView>),
}

/// Why a write got no value back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreWriteError {
    /// The stores refused it; nothing changed.
    Refused(WriteError),
    /// Applied, but not on disk (the error says why): not acknowledged as durable, though it
    /// may still spread.
    NotDurable(String),
}

/// Counters and counts the snapshot publishes about the stores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Stores held.
    pub stores: usize,
    /// Present keys in the store `workers` (SMG's `worker_count`).
    pub workers: usize,
    /// Present keys in the store `policies`.
    pub policies: usize,
    /// Present keys in the store `apps`.
    pub apps: usize,
    /// Bytes of all stores.
    pub bytes: usize,
    /// The core's counters.
    pub stats: StoreStats,
}

/// See the module docs.
pub struct Replication {
    stores: Stores,
    persister: Option<Persister>,
    events: broadcast::Sender<Arc<StoreEvent>>,
    last_seq: u64,
    /// Replies to local writes that wait for the next commit.
    waiting: Vec<super::persist::Ack>,
}

impl Replication {
    /// Wraps `stores`, persisting through `persister` when given.
    pub fn new(
        stores: Stores,
        persister: Option<Persister>,
        events: broadcast::Sender<Arc<StoreEvent>>,
    ) -> Self {
        Replication {
            stores,
            persister,
            events,
            last_seq: 0,
            waiting: Vec::new(),
        }
    }

    /// Applies a write; `reply` hears the new value once it is durable (at once without a
    /// data directory), or why not.
    pub fn write(
        &mut self,
        store: &str,
        key: &str,
        op: Op,
        reply: oneshot::Sender<Result<Written, StoreWriteError>>,
    ) {
        match self.stores.write(wall_ms(), store, key, op) {
            Err(e) => {
                let _ = reply.send(Err(StoreWriteError::Refused(e)));
            }
            Ok(view) if self.persister.is_none() => {
                let _ = reply.send(Ok(view));
            }
            Ok(view) => self.waiting.push(Box::new(move |durable| {
                let _ = reply.send(durable.map(|()| view).map_err(StoreWriteError::NotDurable));
            })),
        }
    }

    /// Answers a read.
    pub fn read(&self, query: StoreQuery) -> StoreAnswer {
        match query {
            StoreQuery::List => StoreAnswer::List(self.stores.summaries()),
            StoreQuery::Entries(store) => StoreAnswer::Entries {
                entries: self.stores.entries(&store),
                seq: self.last_seq,
            },
            StoreQuery::Get(store, key) => StoreAnswer::Get(self.stores.view(&store, &key)),
        }
    }

    /// Merges the store payloads SWIM received. Returns a member whose roots digest said its
    /// stores differ from ours: the caller starts an exchange with it.
    pub fn take_payloads(&mut self, swim: &mut Swim) -> Option<SocketAddr> {
        let now_ms = wall_ms();
        let mut differing = None;
        while let Some((from, payload)) = swim.poll_payload() {
            if self.stores.handle_payload(now_ms, &payload).stores_differ {
                differing = Some(from);
            }
        }
        differing
    }

    /// Answers a peer's anti-entropy step (`None`: it did not decode).
    pub fn serve_sync(&mut self, request: &[u8]) -> Option<Vec<u8>> {
        self.stores.serve_sync(wall_ms(), request).ok()
    }

    /// Appends the stores' roots to an encoded `PushPull` message.
    pub fn attach_roots(&self, push_pull: &mut Vec<u8>) {
        self.stores.attach_roots(push_pull);
    }

    /// True when a peer's push-pull carries store roots that are not ours.
    pub fn roots_differ(&self, push_pull: &[u8]) -> bool {
        self.stores.push_pull_roots_differ(push_pull)
    }

    /// The first step of an anti-entropy exchange this node starts, unless one runs.
    pub fn sync_start(&mut self) -> Option<Vec<u8>> {
        self.stores.sync_start(wall_ms())
    }

    /// The exchange this node started broke off.
    pub fn sync_failed(&mut self) {
        self.stores.sync_failed();
    }

    /// The peer's answer to our last step; the next step to send, if any.
    pub fn sync_reply(&mut self, reply: &[u8]) -> Option<Vec<u8>> {
        self.stores
            .handle_sync_reply(wall_ms(), reply)
            .ok()
            .flatten()
    }

    /// A member this node held DOWN is ALIVE again (a partition healed, a node came back):
    /// the stores may differ. True when an exchange with it should start now.
    pub fn member_returned(&mut self) -> bool {
        self.stores.member_returned(wall_ms())
    }

    /// Fires the stores' timers that are due.
    pub fn handle_timeout(&mut self) {
        self.stores.handle_timeout(wall_ms());
    }

    /// When the stores' next timer is due, as a monotonic instant.
    pub fn next_wake(&self, now: Instant) -> Instant {
        let due_in = self.stores.poll_timeout().saturating_sub(wall_ms());
        now + Duration::from_millis(due_in)
    }

    /// Drains the stores' outputs after an input: payloads to SWIM, keys to disk (with the
    /// writes waiting for them), changes to watchers, and when due our roots digest to a
    /// random member (which starts an exchange with us if its stores differ). Returns a member
    /// to start an exchange with when the round is one (after a member's return).
    pub fn drain(&mut self, swim: &mut Swim, now: Instant) -> Option<SocketAddr> {
        while let Some(b) = self.stores.poll_broadcast() {
            if !swim.broadcast_payload(now, b.payload, b.local) {
                tracing::debug!("store payload too large for a datagram; left to anti-entropy");
            }
        }
        let entries: Vec<_> = std::iter::from_fn(|| self.stores.poll_persist()).collect();
        if let Some(persister) = &self.persister {
            persister.submit(Batch {
                entries,
                acks: std::mem::take(&mut self.waiting),
            });
        }
        while let Some(change) = self.stores.poll_change() {
            self.last_seq += 1;
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(Arc::new(StoreEvent {
                seq: self.last_seq,
                change,
            }));
        }
        match self.stores.poll_sync()? {
            // A digest rather than an exchange: stores that agree cost one small datagram, not
            // a QUIC handshake (measured: ~560 B/s of QUIC per node with an exchange every 10 s).
            SyncRound::Digest => {
                let digest = self.stores.digest_payload();
                swim.send_payload_to_random(&digest);
                None
            }
            SyncRound::Exchange => swim.random_peer(),
        }
    }

    /// A receiver of every later store change.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoreEvent>> {
        self.events.subscribe()
    }

    /// What the snapshot publishes.
    pub fn counts(&self) -> StoreCounts {
        StoreCounts {
            stores: self.stores.summaries().len(),
            workers: self.stores.key_count("workers"),
            policies: self.stores.key_count("policies"),
            apps: self.stores.key_count("apps"),
            bytes: self.stores.bytes(),
            stats: self.stores.stats().clone(),
        }
    }

    /// Commits what is queued and stops the persistence thread.
    pub fn close(self) {
        if let Some(persister) = self.persister {
            persister.close();
        }
    }
}
