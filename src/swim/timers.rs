//! Absolute deadlines held inside the core: a fixed table for the periodic timers and a queue
//! for the per-member ones. The driver only ever sees the earliest instant.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

/// The periodic timers of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// When to end the current probe round and start the next one.
    Probe = 0,
    /// When to give up on a direct ack and send ping-reqs.
    ProbeTimeout = 1,
    /// When to count the nacks of the last failed round that never came.
    NackCheck = 2,
    /// When to send the next piggyback-only gossip datagrams.
    Gossip = 3,
    /// When to ask the driver for the next full-state exchange.
    PushPull = 4,
    /// When to start the next join round, or to give up on the seed address being tried.
    Join = 5,
    /// When to resolve the seeds again and contact addresses no live member has.
    SeedRefresh = 6,
}

impl Timer {
    /// Every timer kind, in table order.
    pub const ALL: [Timer; 7] = [
        Timer::Probe,
        Timer::ProbeTimeout,
        Timer::NackCheck,
        Timer::Gossip,
        Timer::PushPull,
        Timer::Join,
        Timer::SeedRefresh,
    ];
}

/// One optional deadline per [`Timer`] kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimerTable {
    data: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// Arms (or re-arms) `timer` at `at`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.data[timer as usize] = Some(at);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.data[timer as usize] = None;
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer as usize]
    }

    /// Earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest timer due at `now`, if any.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let timer = Timer::ALL
            .into_iter()
            .filter(|t| self.get(*t).is_some_and(|at| at <= now))
            .min_by_key(|t| self.get(*t))?;
        self.stop(timer);
        Some(timer)
    }
}

/// Per-member deadlines. Entries are never removed early: each is checked against the member's
/// current state when it fires, so a stale one is simply ignored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deadline {
    /// When a suspect's suspicion may have run out.
    Suspicion(Arc<str>),
    /// When to send a suspect our accusation directly, so it can correct us if we missed its
    /// refutation.
    SuspicionCheck(Arc<str>),
    /// When a DOWN or LEAVING member may be forgotten.
    Reap(Arc<str>),
    /// When an indirect probe we serve (our seq) should be answered with a nack.
    IndirectProbe(u32),
}

/// A min-queue of [`Deadline`]s.
#[derive(Clone, Debug, Default)]
pub struct DeadlineQueue {
    heap: BinaryHeap<Reverse<(Instant, u64, Deadline)>>,
    seq: u64,
}

impl DeadlineQueue {
    /// Adds a deadline; equal instants fire in insertion order.
    pub fn push(&mut self, at: Instant, deadline: Deadline) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, deadline)));
    }

    /// Earliest deadline (possibly a stale one: waking early is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Removes and returns the earliest deadline due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Deadline> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse((_, _, d))| d)
    }

    /// Queued deadlines, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn table_set_stop_next() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        table.set(Timer::Gossip, t0 + s(3));
        table.set(Timer::Probe, t0 + s(1));
        table.set(Timer::PushPull, t0 + s(2));
        assert_eq!(table.next(), Some(t0 + s(1)));
        table.stop(Timer::Probe);
        assert_eq!(table.next(), Some(t0 + s(2)));
        table.set(Timer::Gossip, t0 + s(5));
        assert_eq!(table.get(Timer::Gossip), Some(t0 + s(5)));
    }

    #[test]
    fn pop_expired_in_deadline_order() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut table = TimerTable::default();
        table.set(Timer::Gossip, t0 + s(2));
        table.set(Timer::Probe, t0 + s(1));
        table.set(Timer::PushPull, t0 + s(9));
        let cases = [
            (t0, None),
            (t0 + s(3), Some(Timer::Probe)),
            (t0 + s(3), Some(Timer::Gossip)),
            (t0 + s(3), None),
            (t0 + s(9), Some(Timer::PushPull)),
        ];
        for (now, want) in cases {
            assert_eq!(table.pop_expired(now), want);
        }
    }

    #[test]
    fn deadline_queue_orders_by_instant_then_insertion() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = DeadlineQueue::default();
        q.push(t0 + s(2), Deadline::Reap("b".into()));
        q.push(t0 + s(1), Deadline::Suspicion("a".into()));
        q.push(t0 + s(2), Deadline::IndirectProbe(7));
        assert_eq!(q.next(), Some(t0 + s(1)));
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.pop_due(t0 + s(5)), Some(Deadline::Suspicion("a".into())));
        assert_eq!(q.pop_due(t0 + s(5)), Some(Deadline::Reap("b".into())));
        assert_eq!(q.pop_due(t0 + s(5)), Some(Deadline::IndirectProbe(7)));
        assert!(q.is_empty());
    }
}
