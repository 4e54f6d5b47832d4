//! Watching membership: a snapshot, then every later event, with neither a gap nor a
//! duplicate. Shared by gRPC `WatchMembership` and the SSE route `/ha/events`, which differ
//! only in how they write a snapshot and an event.
//!
//! One task per watcher follows the node's [`EventFeed`] and forwards messages into a small
//! channel the response streams from. It skips events the snapshot already contains; if the
//! watcher falls so far behind that the event buffer overflows (`Lagged`), it starts over with
//! a fresh snapshot marked `resync` rather than silently skipping changes. It stops when the
//! client goes away, and ends the stream cleanly once the driver has stopped, e.g. after a
//! leave, so the HTTP server can drain instead of cutting the connection.

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::runtime::{EventFeed, SequencedEvent, Snapshot};

/// Streams `feed` into `out` until the receiver is dropped or the driver stops: `snapshot`
/// writes the first message (and each resync, with `true`), `event` every later change.
pub async fn forward<T: Send>(
    feed: EventFeed,
    out: mpsc::Sender<T>,
    snapshot: impl Fn(&Snapshot, bool) -> T,
    event: impl Fn(&SequencedEvent) -> T,
) {
    let stopped = feed.stopped();
    tokio::pin!(stopped);
    let mut resync = false;
    loop {
        let (current, mut events) = feed.subscribe();
        let covered = current.last_event_seq;
        if out.send(snapshot(&current, resync)).await.is_err() {
            return;
        }
        let newer = |e: &SequencedEvent| e.seq > covered;
        loop {
            let received = tokio::select! {
                _ = out.closed() => return,
                _ = &mut stopped => {
                    // Every event the driver produced was broadcast before it stopped: pass
                    // on what is still buffered, then end the stream.
                    while let Ok(e) = events.try_recv() {
                        if newer(&e) && out.send(event(&e)).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
                received = events.recv() => received,
            };
            match received {
                Ok(e) => {
                    if newer(&e) && out.send(event(&e)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "membership watcher fell behind; resending a snapshot"
                    );
                    resync = true;
                    break;
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}
