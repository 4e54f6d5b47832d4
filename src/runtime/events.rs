//! Human-readable names for states and change reasons, and the one log line per change.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::Snapshot;
use crate::swim::limits::Escaped;
use crate::swim::{ChangeReason, Event, MemberState};

/// A membership event, numbered in the order the driver produced it (the first is 1).
#[derive(Clone, Debug, PartialEq)]
pub struct SequencedEvent {
    /// Position in the node's event stream; [`Snapshot::last_event_seq`] names the newest one a
    /// snapshot already contains.
    pub seq: u64,
    /// The change itself.
    pub event: Event,
}

/// Snapshots and the event stream together, so a watcher can start from a snapshot and then
/// follow every later change with neither a gap nor a duplicate.
///
/// Events travel as `Arc`s: the broadcast channel holds a slot per queued event from the
/// start (1,024 of them), and a pointer-sized slot keeps that at ~32 KiB instead of ~230 KiB
/// of every process's memory.
#[derive(Clone, Debug)]
pub struct EventFeed {
    snapshots: watch::Receiver<Snapshot>,
    events: broadcast::Sender<Arc<SequencedEvent>>,
}

impl EventFeed {
    /// Joins the driver's snapshot and event channels.
    pub fn new(
        snapshots: watch::Receiver<Snapshot>,
        events: broadcast::Sender<Arc<SequencedEvent>>,
    ) -> Self {
        EventFeed { snapshots, events }
    }

    /// A snapshot and a receiver of every event after it. Skip received events whose `seq` is
    /// not above the snapshot's `last_event_seq`; a `Lagged` error means the receiver fell
    /// behind and must start over from a new snapshot.
    pub fn subscribe(&self) -> (Snapshot, broadcast::Receiver<Arc<SequencedEvent>>) {
        // Subscribe before reading: the driver publishes a snapshot before it broadcasts the
        // events that snapshot contains, so any event newer than what we read is sent after
        // we subscribed and reaches us.
        let receiver = self.events.subscribe();
        let snapshot = self.snapshots.borrow().clone();
        (snapshot, receiver)
    }

    /// A receiver of the snapshots (it sees the channel close when the driver stops).
    pub fn snapshot_receiver(&self) -> watch::Receiver<Snapshot> {
        self.snapshots.clone()
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshots.borrow().clone()
    }

    /// Resolves once the driver has stopped: no snapshot or event will follow.
    pub async fn stopped(&self) {
        let mut snapshots = self.snapshots.clone();
        while snapshots.changed().await.is_ok() {}
    }
}

/// Upper-case state name used in logs and the HTTP API ("ALIVE", "SUSPECTED", …).
pub fn state_name(state: MemberState) -> &'static str {
    match state {
        MemberState::Init => "INIT",
        MemberState::Alive => "ALIVE",
        MemberState::Suspected => "SUSPECTED",
        MemberState::Down => "DOWN",
        MemberState::Leaving => "LEAVING",
    }
}

/// Short lower-case reason for a log line ("probe failed", "gossip from node3").
pub fn reason_text(reason: &ChangeReason) -> String {
    match reason {
        ChangeReason::LocalStart => "local start".into(),
        ChangeReason::Gossip { from } => format!("gossip from {}", Escaped(from)),
        ChangeReason::PushPull => "push-pull".into(),
        ChangeReason::ProbeFailed => "probe failed".into(),
        ChangeReason::SuspicionExpired => "suspicion expired".into(),
        ChangeReason::Refuted => "refuted".into(),
        ChangeReason::LocalLeave => "local leave".into(),
        ChangeReason::MetaChanged => "metadata changed".into(),
    }
}

/// Logs one line for a membership change.
pub fn log_event(event: &Event) {
    match event {
        Event::Changed {
            member,
            previous,
            reason,
        } => tracing::info!(
            // Names were checked by the codec; escaped anyway, as everything from the network.
            member = %Escaped(&member.name),
            addr = %member.addr,
            from = %previous.map(state_name).unwrap_or("NEW"),
            to = %state_name(member.state),
            incarnation = member.incarnation,
            reason = %reason_text(reason),
            "membership changed"
        ),
        Event::Reaped { name } => {
            tracing::info!(member = %Escaped(name), "member forgotten after retention")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_api_contract() {
        let names: Vec<_> = [
            MemberState::Init,
            MemberState::Alive,
            MemberState::Suspected,
            MemberState::Down,
            MemberState::Leaving,
        ]
        .into_iter()
        .map(state_name)
        .collect();
        assert_eq!(names, ["INIT", "ALIVE", "SUSPECTED", "DOWN", "LEAVING"]);
        assert_eq!(
            reason_text(&ChangeReason::Gossip { from: "n3".into() }),
            "gossip from n3"
        );
    }

    fn reaped(seq: u64) -> SequencedEvent {
        SequencedEvent {
            seq,
            event: Event::Reaped {
                name: format!("m{seq}"),
            },
        }
    }

    /// Replays the driver's order (publish the snapshot, then broadcast its events) for three
    /// batches, with one watcher subscribing at each possible point: every watcher sees each
    /// event exactly once, counting the snapshot it started from.
    #[test]
    fn a_watcher_subscribing_anywhere_misses_and_repeats_nothing() {
        use crate::swim::{MemberView, NodeMeta};
        use std::time::Instant;
        let local = MemberView {
            name: "n1".into(),
            addr: "127.0.0.1:1".parse().expect("literal address"),
            state: MemberState::Alive,
            incarnation: 1,
            meta: NodeMeta::default(),
            since: Instant::now(),
            is_local: true,
        };
        let (snapshot_tx, snapshot_rx) = watch::channel(Snapshot::of_local(local, Instant::now()));
        let (events_tx, _) = broadcast::channel(64);
        let feed = EventFeed::new(snapshot_rx, events_tx.clone());
        let batches: [&[u64]; 3] = [&[1, 2], &[3], &[4, 5, 6]];

        let mut watchers = vec![feed.subscribe()];
        for batch in batches {
            let mut snapshot = snapshot_tx.borrow().clone();
            snapshot.last_event_seq = *batch.last().expect("batches are not empty");
            snapshot_tx.send_replace(snapshot);
            watchers.push(feed.subscribe());
            for &seq in batch {
                events_tx
                    .send(Arc::new(reaped(seq)))
                    .expect("watchers are listening");
                watchers.push(feed.subscribe());
            }
        }

        for (i, (snapshot, receiver)) in watchers.iter_mut().enumerate() {
            let mut seen: Vec<u64> = (1..=snapshot.last_event_seq).collect();
            while let Ok(event) = receiver.try_recv() {
                if event.seq > snapshot.last_event_seq {
                    seen.push(event.seq);
                }
            }
            assert_eq!(seen, [1, 2, 3, 4, 5, 6], "watcher {i}");
        }
    }
}
