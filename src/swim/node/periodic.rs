//! Timer-driven work: probe rounds, ping-reqs, nack accounting, gossip ticks, push-pull ticks,
//! suspicion expiry, reaping and indirect-probe timeouts.

use std::time::{Duration, Instant};

use super::inbound::Origin;
use super::{Piggyback, Swim};
use crate::swim::codec::{self, Body};
use crate::swim::probe::{missing_nacks_delta, round_delta, NackWatch, ProbeRound};
use crate::swim::seeding::{Purpose, PushPullRequest};
use crate::swim::state::{is_reachable, Update};
use crate::swim::suspicion::Check;
use crate::swim::timers::{Deadline, Timer};
use crate::swim::{ChangeReason, Event, MemberState};

/// Every this many push-pull ticks, a DOWN member is picked instead (if any), so two halves of a
/// healed partition find each other again.
const PUSH_PULL_DOWN_EVERY: u64 = 4;

/// Pending updates beyond what about one datagram carries: the queue is saturated, and facts
/// wait behind newer ones.
const SATURATED_QUEUE: usize = 32;

/// After saturation, the next push-pull comes within interval / this.
const PUSH_PULL_SOON_DIVISOR: u32 = 8;

/// Smallest period a periodic timer is re-armed with, so a zero knob cannot spin forever.
const MIN_PERIOD: Duration = Duration::from_millis(1);

impl Swim {
    /// Fires every timer whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            if let Some(timer) = self.timers.pop_expired(now) {
                self.on_timer(now, timer);
            } else if let Some(deadline) = self.deadlines.pop_due(now) {
                self.on_deadline(now, deadline);
            } else {
                break;
            }
        }
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Probe => {
                self.finish_round(now);
                self.start_round(now);
                let next = self
                    .awareness
                    .scale(self.config.probe_interval)
                    .max(MIN_PERIOD);
                self.timers.set(Timer::Probe, now + next);
            }
            Timer::ProbeTimeout => self.send_ping_reqs(),
            Timer::NackCheck => self.check_nacks(),
            Timer::Gossip => {
                self.gossip(now);
                // Idle ticks cost a wake-up each (5 a second) and do nothing: the timer stays
                // off until `broadcast` queues the next fact.
                if self.broadcasts.is_empty() && self.payloads.is_empty() && !self.saturated {
                    return;
                }
                let next = self.config.gossip_interval.max(MIN_PERIOD);
                self.timers.set(Timer::Gossip, now + next);
            }
            Timer::PushPull => {
                self.push_pull_tick();
                let next = self.push_pull_interval().max(MIN_PERIOD);
                self.timers.set(Timer::PushPull, now + next);
            }
            Timer::Join => self.on_join_timer(now),
            Timer::SeedRefresh => self.on_seed_refresh_timer(now),
        }
    }

    fn start_round(&mut self, now: Instant) {
        if self.members.local().state != MemberState::Alive {
            return;
        }
        let slot = self
            .config
            .probe_schedule
            .slot(now, self.config.probe_interval);
        let target = match slot {
            Some(slot) => self.members.aligned_probe_target(slot),
            None => self.members.next_probe_target(&mut self.rng),
        };
        let Some(target) = target else {
            return;
        };
        let (name, addr, incarnation) = (target.name.clone(), target.addr, target.incarnation);
        // Probing a suspect: always tell it (like memberlist), even if our suspicion is no longer
        // queued, so it can refute, or correct us if we missed its refutation.
        let accusation = (target.state == MemberState::Suspected).then(|| {
            let fact = target.to_update();
            codec::update_to_wire(&fact, false)
        });
        let seq = self.seqs.next_seq();
        self.round = Some(ProbeRound {
            seq,
            target: name.to_string(),
            target_addr: addr,
            incarnation,
            indirect_sent: 0,
            nackers: Vec::new(),
            acked: None,
            sent_at: now,
        });
        let body = Body::Ping {
            seq,
            target: name.to_string(),
        };
        // The fact about the target still queued goes first anyway (it is the buddy); only if
        // none is queued any more does the accusation ride ahead of the queue. Either way the
        // queued fact stays queued for everyone else: a suspicion must spread, not only reach
        // the suspect.
        let piggyback = match accusation {
            Some(fact) if !self.broadcasts.contains(&name) => Piggyback::first(vec![fact]),
            _ => Piggyback::queue(Some(&name)),
        };
        self.send(addr, Some(&name), Some(body), piggyback);
        let timeout = self.awareness.scale(self.config.probe_timeout);
        self.timers.set(Timer::ProbeTimeout, now + timeout);
    }

    /// No direct ack in time: ask `indirect_checks` random ALIVE members to probe for us.
    fn send_ping_reqs(&mut self) {
        let Some(round) = self.round.as_ref().filter(|r| r.acked.is_none()) else {
            return;
        };
        let (seq, target, target_addr) = (round.seq, round.target.clone(), round.target_addr);
        let helpers = self.pick(self.config.indirect_checks, |m| {
            m.state == MemberState::Alive && *m.name != *target
        });
        for (name, addr) in &helpers {
            let body = Body::PingReq {
                seq,
                target: target.clone(),
                target_addr,
            };
            self.send(*addr, Some(name), Some(body), Piggyback::queue(None));
        }
        if let Some(round) = self.round.as_mut() {
            round.indirect_sent = helpers.len();
        }
    }

    /// Ends the current round: nothing to do if it was answered, else suspect the target.
    fn finish_round(&mut self, now: Instant) {
        self.timers.stop(Timer::ProbeTimeout);
        let Some(round) = self.round.take() else {
            return;
        };
        if round.acked.is_some() {
            return;
        }
        self.stats.probes_failed += 1;
        self.awareness.apply(round_delta(false));
        if round.indirect_sent > 0 {
            // Indirect probers nack only after their own timeout: count the missing ones later.
            self.check_nacks();
            self.nack_watch = Some(NackWatch {
                seq: round.seq,
                expected: round.indirect_sent,
                target: round.target.clone(),
                incarnation: round.incarnation,
                nackers: round.nackers.clone(),
            });
            let grace = self.awareness.scale(self.config.probe_timeout);
            self.timers.set(Timer::NackCheck, now + grace);
        }
        let Some(target) = self.members.get(&round.target) else {
            return;
        };
        // A refutation during the round (higher incarnation) means the target is fine.
        if !is_reachable(target.state) || target.incarnation != round.incarnation {
            return;
        }
        let mut update = target.to_update();
        update.state = MemberState::Suspected;
        update.accuser = self.local_name.clone();
        let origin = Origin {
            reason: &ChangeReason::ProbeFailed,
            regossip: true,
            from_subject: false,
        };
        if !self.apply(now, update, origin) {
            return;
        }
        self.stats.suspicions_raised += 1;
        // Nacks that came before the round ended are witnesses too (later ones are added as
        // they arrive, see `on_nack`).
        for nacker in &round.nackers {
            self.witness(now, &round.target, round.incarnation, nacker);
        }
        // Buddy system: tell the suspect at once, not at someone's next probe of it, so it can
        // refute well before our timer (short if the nacks confirm it) runs out.
        self.tell_suspect(&round.target);
    }

    /// Applies the health penalty for nacks of the last failed round that never arrived.
    fn check_nacks(&mut self) {
        self.timers.stop(Timer::NackCheck);
        if let Some(watch) = self.nack_watch.take() {
            self.awareness
                .apply(missing_nacks_delta(watch.expected, watch.nackers.len()));
        }
    }

    /// Sends pending updates to `gossip_nodes` random members (recently DOWN or LEAVING ones
    /// included).
    fn gossip(&mut self, now: Instant) {
        if self.broadcasts.len() > SATURATED_QUEUE {
            self.saturated = true;
        }
        if self.broadcasts.is_empty() && std::mem::take(&mut self.saturated) {
            self.push_pull_soon(now);
        }
        if self.broadcasts.is_empty() && self.payloads.is_empty() {
            return;
        }
        let to_the_dead = self.config.gossip_to_the_dead;
        // LEAVING ones too: a member wrongly held LEAVING (a forged or replayed leave) is probed
        // by nobody either, and must hear of it to refute.
        let targets = self.pick(self.config.gossip_nodes, |m| {
            is_reachable(m.state)
                || (matches!(m.state, MemberState::Down | MemberState::Leaving)
                    && now.saturating_duration_since(m.since) < to_the_dead)
        });
        for (name, addr) in targets {
            if self.send(addr, Some(&name), None, Piggyback::queue(None)) == 0 {
                break;
            }
        }
    }

    /// After a burst of changes, bring the next push-pull forward to a random point of the next
    /// eighth of the interval. While the queue was saturated, older facts waited behind newer
    /// ones and went out late, to whoever was a member by then, so some members may have missed
    /// them; one full-state exchange per node closes those gaps far sooner than the regular,
    /// N-scaled interval (minutes at N = 1000).
    fn push_pull_soon(&mut self, now: Instant) {
        if self.timers.get(Timer::PushPull).is_none() {
            return; // not joined, or leaving
        }
        let soon = now + self.jitter(self.push_pull_interval() / PUSH_PULL_SOON_DIVISOR);
        if self.timers.get(Timer::PushPull).is_some_and(|at| at > soon) {
            self.timers.set(Timer::PushPull, soon);
        }
    }

    /// Picks the next push-pull peer: a random ALIVE (or SUSPECTED) member, now and then a DOWN one.
    fn push_pull_tick(&mut self) {
        self.push_pull_ticks += 1;
        let mut target = None;
        if self.push_pull_ticks.is_multiple_of(PUSH_PULL_DOWN_EVERY)
            && self.members.count(MemberState::Down) > 0
        {
            target = self.pick(1, |m| m.state == MemberState::Down).pop();
        }
        if target.is_none() {
            target = self.pick(1, |m| is_reachable(m.state)).pop();
        }
        if let Some((_, peer)) = target {
            let id = self.seeding.exchange_id();
            self.push_pulls.push_back(PushPullRequest {
                id,
                peer,
                purpose: Purpose::AntiEntropy,
            });
        }
    }

    fn on_deadline(&mut self, now: Instant, deadline: Deadline) {
        match deadline {
            Deadline::Suspicion(name) => self.expire_suspicion(now, &name),
            Deadline::SuspicionCheck(name) => self.check_suspect(now, &name),
            Deadline::Reap(name) => self.reap(now, &name),
            Deadline::IndirectProbe(seq) => {
                if let Some(served) = self.served.take(seq) {
                    let body = Body::Nack {
                        seq: served.requester_seq,
                    };
                    self.send(served.requester, None, Some(body), Piggyback::queue(None));
                }
            }
        }
    }

    /// SUSPECTED → DOWN if this suspicion (not an older, superseded one) ran out.
    fn expire_suspicion(&mut self, now: Instant, name: &str) {
        let due = self.members.get(name).is_some_and(|m| {
            m.state == MemberState::Suspected
                && m.suspicion.as_ref().is_some_and(|s| s.deadline() <= now)
        });
        if !due {
            return;
        }
        self.members.update(name, |m| {
            m.state = MemberState::Down;
            m.since = now;
            m.suspicion = None;
        });
        self.push_event(
            name,
            Some(MemberState::Suspected),
            ChangeReason::SuspicionExpired,
        );
        let down: Option<Update> = self.members.get(name).map(|m| m.to_update());
        if let Some(down) = down {
            self.broadcast(now, &down);
            // Every survivor should stop routing to it now, not when gossip gets round.
            self.announce(&down, self.config.announce_fanout);
        }
        self.deadlines.push(
            now + self.config.retention,
            Deadline::Reap(self.shared_name(name)),
        );
    }

    /// Sends a suspect our accusation directly when a check is due (see
    /// [`Deadline::SuspicionCheck`]).
    fn check_suspect(&mut self, now: Instant, name: &str) {
        let check = self.members.update(name, |m| match m.suspicion.as_mut() {
            Some(s) if m.state == MemberState::Suspected => s.poll_check(now),
            _ => Check::NotDue,
        });
        let Some(Check::Due { next }) = check else {
            return;
        };
        self.tell_suspect(name);
        if let Some(at) = next {
            self.deadlines
                .push(at, Deadline::SuspicionCheck(self.shared_name(name)));
        }
    }

    /// Sends a suspect the accusation we hold, alone in a datagram: it refutes if it is alive,
    /// or answers with its newer incarnation if we missed its refutation.
    fn tell_suspect(&mut self, name: &str) {
        let held = self
            .members
            .get(name)
            .filter(|m| m.state == MemberState::Suspected)
            .map(|m| (m.addr, m.to_update()));
        let Some((addr, fact)) = held else {
            return;
        };
        let fact = codec::update_to_wire(&fact, false);
        self.send(addr, Some(name), None, Piggyback::Only(&[fact]));
    }

    /// Forgets a DOWN or LEAVING member whose retention time has passed.
    fn reap(&mut self, now: Instant, name: &str) {
        let due = self.members.get(name).is_some_and(|m| {
            !m.is_local
                && matches!(m.state, MemberState::Down | MemberState::Leaving)
                && m.since + self.config.retention <= now
        });
        if due && self.members.remove(name).is_some() {
            self.events.push_back(Event::Reaped {
                name: name.to_owned(),
            });
        }
    }
}
