//! Watching one store: its entries, then every later change of its keys, with no gap and no
//! duplicate (the contract of the membership watch). Shared by the SSE route and gRPC
//! `WatchStore`.
//!
//! One task per watcher subscribes to the store change stream first, then reads the entries
//! through the driver, which answers with the number of the last change they hold; changes up
//! to it are skipped. A watcher that falls so far behind that the stream's buffer overflows
//! starts over with a fresh snapshot marked `resync`.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};

use crate::runtime::replication::{StoreAnswer, StoreEvent, StoreQuery};
use crate::runtime::{Command, Snapshot};
use crate::store::{Change, EntryView, Kind};

/// Messages a watcher's task may queue ahead of a slow client.
pub const WATCH_QUEUE: usize = 16;

/// What a store watcher receives.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchItem {
    /// The store's present entries (none yet: `kind` is `None` until the store exists).
    Snapshot {
        /// The store watched.
        store: String,
        /// Its kind, once it exists.
        kind: Option<Kind>,
        /// Its present keys.
        entries: Vec<EntryView>,
        /// Sent again because the watcher fell behind.
        resync: bool,
    },
    /// One change of a key.
    Change {
        /// Its position in the node's store change stream.
        seq: u64,
        /// The change.
        change: Change,
    },
}

/// Streams `store`'s snapshot and changes into `out` until the receiver is dropped or the
/// driver stops (its `snapshots` channel closes), so the HTTP server can drain.
pub async fn forward(
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Arc<StoreEvent>>,
    mut snapshots: watch::Receiver<Snapshot>,
    store: String,
    out: mpsc::Sender<WatchItem>,
) {
    let stopped = async move { while snapshots.changed().await.is_ok() {} };
    tokio::pin!(stopped);
    let mut resync = false;
    loop {
        // Subscribe before reading: a change after the read is then sure to reach us.
        let mut changes = events.subscribe();
        let Some((kind, entries, covered)) = read(&commands, &store).await else {
            return;
        };
        let snapshot = WatchItem::Snapshot {
            store: store.clone(),
            kind,
            entries,
            resync,
        };
        if out.send(snapshot).await.is_err() {
            return;
        }
        loop {
            let received = tokio::select! {
                _ = out.closed() => return,
                _ = &mut stopped => return,
                received = changes.recv() => received,
            };
            match received {
                Ok(event) if event.seq > covered && event.change.store == store => {
                    let item = WatchItem::Change {
                        seq: event.seq,
                        change: event.change.clone(),
                    };
                    if out.send(item).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, %store, "store watcher fell behind; resending a snapshot");
                    resync = true;
                    break;
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// The store's kind, entries and the last change they hold; `None` once the driver is gone.
async fn read(
    commands: &mpsc::Sender<Command>,
    store: &str,
) -> Option<(Option<Kind>, Vec<EntryView>, u64)> {
    let query = StoreQuery::Entries(store.to_owned());
    match super::stores::send_read(commands, query).await? {
        StoreAnswer::Entries { entries, seq } => match entries {
            Some((kind, entries)) => Some((Some(kind), entries, seq)),
            None => Some((None, Vec::new(), seq)),
        },
        _ => None,
    }
}
