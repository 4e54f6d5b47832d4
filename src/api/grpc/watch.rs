//! The `WatchMembership` stream: a snapshot, then every later event, with no gap (the
//! contract [`membership_watch::forward`] keeps), as gRPC messages.

use std::time::Instant;

use tokio::sync::mpsc;
use tonic::Status;

use super::convert;
use super::pb::WatchMembershipResponse;
use crate::api::membership_watch;
use crate::runtime::EventFeed;

/// Messages a watcher's task may queue ahead of a slow client; beyond that the task waits (and
/// the node's event buffer absorbs changes until it overflows and forces a resync).
pub const WATCH_QUEUE: usize = 16;

/// What the gRPC response stream yields.
pub type WatchItem = Result<WatchMembershipResponse, Status>;

/// Streams `feed` into `out` as gRPC messages until the receiver is dropped or the driver
/// stops.
pub async fn forward(feed: EventFeed, out: mpsc::Sender<WatchItem>) {
    membership_watch::forward(
        feed,
        out,
        |snapshot, resync| Ok(convert::snapshot_message(snapshot, resync, Instant::now())),
        |event| Ok(convert::event_message(event, Instant::now())),
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::{broadcast, watch};

    use super::*;
    use crate::api::grpc::pb::watch_membership_response::Event as Message;
    use crate::runtime::{SequencedEvent, Snapshot};
    use crate::swim::{Event, MemberState, MemberView, NodeMeta};

    const WAIT: Duration = Duration::from_secs(5);

    fn local() -> MemberView {
        MemberView {
            name: "n1".into(),
            addr: "127.0.0.1:1".parse().expect("literal address"),
            state: MemberState::Alive,
            incarnation: 1,
            meta: NodeMeta::default(),
            since: Instant::now(),
            is_local: true,
        }
    }

    fn reaped(seq: u64) -> SequencedEvent {
        SequencedEvent {
            seq,
            event: Event::Reaped {
                name: format!("m{seq}"),
            },
        }
    }

    /// A fake driver: the snapshot sender, the event sender and a feed over them.
    fn fake(
        capacity: usize,
    ) -> (
        watch::Sender<Snapshot>,
        broadcast::Sender<Arc<SequencedEvent>>,
        EventFeed,
    ) {
        let (snapshots_tx, snapshots) = watch::channel(Snapshot::of_local(local(), Instant::now()));
        let (events, _) = broadcast::channel(capacity);
        let feed = EventFeed::new(snapshots, events.clone());
        (snapshots_tx, events, feed)
    }

    /// Publishes a snapshot covering up to `seq`, as the driver does before broadcasting.
    fn publish(snapshots: &watch::Sender<Snapshot>, seq: u64) {
        snapshots.send_modify(|s| s.last_event_seq = seq);
    }

    /// Describes a message: `S<seq>` (`R` if resync) for a snapshot, `E<seq>` for an event.
    fn describe(item: WatchItem) -> String {
        match item.expect("no errors on the stream").event {
            Some(Message::Snapshot(s)) if s.resync => format!("R{}", s.last_event_seq),
            Some(Message::Snapshot(s)) => format!("S{}", s.last_event_seq),
            Some(Message::Change(c)) => format!("E{}", c.seq),
            Some(Message::Reaped(r)) => format!("E{}", r.seq),
            None => "empty".into(),
        }
    }

    async fn next(rx: &mut mpsc::Receiver<WatchItem>) -> String {
        let item = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a message arrives in time")
            .expect("stream still open");
        describe(item)
    }

    #[tokio::test]
    async fn starts_with_the_snapshot_then_skips_what_it_contains() {
        let (snapshots, events, feed) = fake(16);
        publish(&snapshots, 2);
        let (tx, mut rx) = mpsc::channel(WATCH_QUEUE);
        let task = tokio::spawn(forward(feed, tx));
        // The watcher subscribes before it sends its snapshot.
        assert_eq!(next(&mut rx).await, "S2");
        // Events 1 and 2 are in the snapshot, yet still reach the receiver: skipped.
        for seq in 1..=2 {
            events
                .send(Arc::new(reaped(seq)))
                .expect("a receiver exists");
        }
        publish(&snapshots, 4);
        for seq in 3..=4 {
            events
                .send(Arc::new(reaped(seq)))
                .expect("a receiver exists");
        }
        assert_eq!(next(&mut rx).await, "E3");
        assert_eq!(next(&mut rx).await, "E4");
        drop(rx);
        // Dropping the client ends the task, even with no further events.
        tokio::time::timeout(WAIT, task)
            .await
            .expect("watcher stops once the client is gone")
            .expect("watcher did not panic");
    }

    #[tokio::test]
    async fn a_lagging_watcher_gets_a_fresh_snapshot_instead_of_a_gap() {
        let (snapshots, events, feed) = fake(4);
        // A client that does not read: the watcher blocks on its full queue of one.
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(forward(feed, tx));
        // Wait until the first snapshot is queued, so the watcher has subscribed.
        while rx.is_empty() {
            tokio::task::yield_now().await;
        }
        // Event 1 fills the client's queue; the watcher then waits with the rest buffered
        // until the buffer of 4 overflows.
        for seq in 1..=10 {
            publish(&snapshots, seq);
            events
                .send(Arc::new(reaped(seq)))
                .expect("a receiver exists");
            tokio::task::yield_now().await;
        }
        assert_eq!(next(&mut rx).await, "S0");
        let mut seen = Vec::new();
        loop {
            let message = next(&mut rx).await;
            let done = message == "R10";
            seen.push(message);
            if done {
                break;
            }
        }
        // Whatever arrived before the resync is gap-free from 1, and the resync covers all.
        let before: Vec<String> = seen[..seen.len() - 1].to_vec();
        let expected: Vec<String> = (1..=before.len()).map(|s| format!("E{s}")).collect();
        assert_eq!(before, expected, "seen {seen:?}");
        assert!(before.len() < 10, "some events were dropped: {seen:?}");

        // After the resync it follows new events again.
        publish(&snapshots, 11);
        events
            .send(Arc::new(reaped(11)))
            .expect("a receiver exists");
        assert_eq!(next(&mut rx).await, "E11");
        task.abort();
    }

    #[tokio::test]
    async fn the_stream_ends_after_the_last_events_once_the_driver_stops() {
        let (snapshots, events, feed) = fake(16);
        let (tx, mut rx) = mpsc::channel(WATCH_QUEUE);
        let task = tokio::spawn(forward(feed, tx));
        assert_eq!(next(&mut rx).await, "S0");
        // The driver's last batch, then it stops (its snapshot sender goes away).
        publish(&snapshots, 2);
        for seq in 1..=2 {
            events
                .send(Arc::new(reaped(seq)))
                .expect("a receiver exists");
        }
        drop(snapshots);
        assert_eq!(next(&mut rx).await, "E1");
        assert_eq!(next(&mut rx).await, "E2");
        let end = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("in time");
        assert!(end.is_none(), "stream ends, got {end:?}");
        tokio::time::timeout(WAIT, task)
            .await
            .expect("watcher stops with the driver")
            .expect("watcher did not panic");
    }
}
