//! Inputs from peers: datagrams (probe messages plus piggybacked facts) and the merge rule that
//! every fact goes through, including refutation of facts about ourselves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::{Piggyback, Swim};
use crate::swim::codec::{self, Body};
use crate::swim::limits::{MAX_INCARNATION, MAX_INCARNATION_JUMP};
use crate::swim::members::{share_meta, Member};
use crate::swim::probe::{record_nacker, AckKind, Served};
use crate::swim::state::{is_reachable, precedence, Precedence, Update};
use crate::swim::suspicion::{self, Confirmation, Suspicion};
use crate::swim::timers::Deadline;
use crate::swim::{ChangeReason, DropReason, MemberState, Refusal};
use crate::wire;

/// Most corrections sent back for one datagram (each is small; keeps the reply in budget).
const MAX_CORRECTIONS: usize = 8;

/// Where a fact came from: what decides whether it is passed on and what it may change.
#[derive(Clone, Copy, Debug)]
pub(super) struct Origin<'a> {
    /// Why the change happens, for its event.
    pub reason: &'a ChangeReason,
    /// Queue an accepted fact for re-gossip.
    pub regossip: bool,
    /// The fact is about its sender itself and was sent from the address it states: the only
    /// source that may move a live member to another address (memberlist's "conflicting
    /// address" rule), so nobody can steal a live member's traffic by gossiping about it.
    pub from_subject: bool,
}

impl Swim {
    /// Processes one received SWIM datagram (header byte included). Bad input is dropped and
    /// counted in [`crate::swim::Stats::dropped`], never a panic.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let datagram = match codec::decode_datagram(data) {
            Ok(d) => d,
            Err(reason) => return self.count_drop(reason),
        };
        if let Some(Body::Ping { target, .. }) = &datagram.body {
            if !target.is_empty() && *target != self.local_name {
                // Sent to an address that now belongs to someone else: do not answer for them.
                return self.count_drop(DropReason::NotForUs);
            }
        }
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += data.len() as u64;
        let sender = datagram.sender;
        // Judged before the datagram's own facts are merged, so a stranger cannot make itself
        // known with the very datagram it wants answered.
        let known = self.is_live_member_at(&sender, from);
        self.take_payloads(known, from, datagram.payloads);
        let mut corrections = Vec::new();
        let reason = ChangeReason::Gossip {
            from: sender.clone(),
        };
        for update in datagram.updates {
            let (incarnation, state) = (update.incarnation, update.state);
            // Only accusations can need a correction: keep the name only for those.
            let accused = matches!(state, MemberState::Suspected | MemberState::Down)
                .then(|| update.name.clone());
            let origin = Origin {
                reason: &reason,
                regossip: !self.is_join_announcement(&sender, &update),
                from_subject: update.name == sender && update.addr == from,
            };
            self.apply(now, update, origin);
            // Checked after merging, so a refutation we just made goes straight back too.
            if let Some(name) = accused {
                if let Some(newer) = self.correction_for(&name, incarnation, state) {
                    corrections.push(newer);
                }
            }
        }
        // Nothing but a bare answer goes to an address that is not a member's: whoever forged
        // the sender address must not be able to make us send a third party more than it sent.
        if !known {
            corrections.clear();
        }
        corrections.truncate(MAX_CORRECTIONS);
        match datagram.body {
            None => {}
            Some(Body::Ping { seq, .. }) if known => {
                // Corrections ride on the ack rather than in a datagram of their own.
                let piggyback = Piggyback::first(std::mem::take(&mut corrections));
                self.send(from, Some(&sender), Some(Body::Ack { seq }), piggyback);
            }
            Some(Body::Ping { seq, .. }) => self.ack_stranger(from, &sender, seq, data.len()),
            Some(Body::Ack { seq }) => self.on_ack(now, seq, &sender),
            Some(Body::Nack { seq }) => self.on_nack(now, seq, &sender),
            Some(Body::PingReq {
                seq,
                target,
                target_addr,
            }) if known && self.is_live_member_at(&target, target_addr) => {
                self.on_ping_req(now, from, seq, target, target_addr)
            }
            Some(Body::PingReq { .. }) => self.count_refusal(Refusal::PingReqUnknown),
        }
        if !corrections.is_empty() {
            // The sender spreads an accusation we know is outdated: tell it what we know, or it
            // may declare a live member DOWN after missing a refutation.
            self.send(from, Some(&sender), None, Piggyback::first(corrections));
        }
    }

    /// Keeps the payloads of a datagram for `poll_payload` when its sender is a live member at
    /// the address it sent from; drops (and counts) those of anyone else.
    fn take_payloads(&mut self, known: bool, from: SocketAddr, payloads: Vec<Vec<u8>>) {
        if payloads.is_empty() {
            return;
        }
        if known {
            self.stats.payloads_received += payloads.len() as u64;
            self.payload_inbox
                .extend(payloads.into_iter().map(|payload| (from, payload)));
        } else {
            self.stats.payloads_dropped += payloads.len() as u64;
        }
    }

    /// Answers a ping from an address that is no member's with a bare ack, and only if the ack
    /// is no bigger than the ping: a forged source address then gets back no more than the
    /// forger sent. A real ping names us as its target, so it is always bigger than our ack.
    fn ack_stranger(&mut self, from: SocketAddr, sender: &str, seq: u32, ping_len: usize) {
        let ack = wire::Envelope {
            sender: self.local_name.clone(),
            payloads: Vec::new(),
            body: Some(codec::body_to_wire(Body::Ack { seq })),
            updates: Vec::new(),
        };
        if 1 + prost::Message::encoded_len(&ack) > ping_len {
            return self.count_refusal(Refusal::AckLargerThanPing);
        }
        self.send(
            from,
            Some(sender),
            Some(Body::Ack { seq }),
            Piggyback::Only(&[]),
        );
    }

    /// True when `name` is another member we hold ALIVE or SUSPECTED at exactly `addr`.
    fn is_live_member_at(&self, name: &str, addr: SocketAddr) -> bool {
        self.members
            .get(name)
            .is_some_and(|m| !m.is_local && m.addr == addr && is_reachable(m.state))
    }

    /// A member we do not know yet telling us itself that it is ALIVE, in a cluster small enough
    /// that its announcement went to every member it knows of (see `announce_fanout`). Passing
    /// it on would be redundant: a mass join would then make every node re-gossip every
    /// joiner (N² log N updates, seconds of traffic after the cluster converged). Members that
    /// joined after it learn it from the seed; its own queue and the seed's still gossip it.
    fn is_join_announcement(&self, sender: &str, u: &Update) -> bool {
        u.name == sender
            && u.state == MemberState::Alive
            && self.members.get(&u.name).is_none()
            && self.members.live_count() <= self.config.announce_fanout.saturating_add(1)
    }

    /// Our newer fact about a member that `u` accuses (SUSPECTED or DOWN) at an older
    /// incarnation, when we hold it reachable (or it is us).
    fn correction_for(
        &self,
        name: &str,
        incarnation: u64,
        state: MemberState,
    ) -> Option<wire::MemberUpdate> {
        if !matches!(state, MemberState::Suspected | MemberState::Down) {
            return None;
        }
        let held = self.members.get(name)?;
        let reachable = held.state == MemberState::Alive
            || (!held.is_local && held.state == MemberState::Suspected);
        (reachable && held.incarnation > incarnation).then(|| {
            let fact = held.to_update();
            codec::update_to_wire(&fact, fact.state == MemberState::Alive)
        })
    }

    fn on_ack(&mut self, now: Instant, seq: u32, sender: &str) {
        if let Some(round) = self.round.as_mut().filter(|r| r.seq == seq) {
            if round.acked.is_some() {
                return;
            }
            let kind = if sender == round.target {
                AckKind::Direct
            } else {
                AckKind::Indirect
            };
            round.acked = Some(kind);
            match kind {
                AckKind::Direct => {
                    self.stats.probes_acked += 1;
                    let rtt = now.saturating_duration_since(round.sent_at);
                    self.stats.probe_rtt.record(rtt);
                }
                AckKind::Indirect => self.stats.probes_indirect_acked += 1,
            }
            self.awareness.apply(crate::swim::probe::round_delta(true));
            self.timers.stop(crate::swim::timers::Timer::ProbeTimeout);
            return;
        }
        if let Some(served) = self.served.take(seq) {
            let body = Body::Ack {
                seq: served.requester_seq,
            };
            self.send(served.requester, None, Some(body), Piggyback::queue(None));
        }
        // Any other ack is late or unknown: nothing to do.
    }

    /// A nack: an indirect prober could not reach the target of our round either. Counted for
    /// local health and, once the round has raised its suspicion, as a witness to it.
    fn on_nack(&mut self, now: Instant, seq: u32, sender: &str) {
        if let Some(round) = self.round.as_mut().filter(|r| r.seq == seq) {
            // The suspicion is raised when the round ends; its witnesses are added then.
            record_nacker(&mut round.nackers, sender);
            return;
        }
        let Some(watch) = self.nack_watch.as_mut().filter(|w| w.seq == seq) else {
            return;
        };
        if record_nacker(&mut watch.nackers, sender) {
            let (target, incarnation) = (watch.target.clone(), watch.incarnation);
            self.witness(now, &target, incarnation, sender);
        }
    }

    /// Counts `witness` as a confirmation of our suspicion of `name` at `incarnation` (if we
    /// still hold exactly that), without gossiping it: the nack was sent to us alone, and
    /// others keep their own, longer timers until our verdict reaches them.
    pub(super) fn witness(&mut self, now: Instant, name: &str, incarnation: u64, witness: &str) {
        let outcome = self.members.update(name, |m| match m.suspicion.as_mut() {
            Some(s) if m.state == MemberState::Suspected && m.incarnation == incarnation => {
                s.confirm(now, witness)
            }
            _ => Confirmation::Ignored,
        });
        if let Some(Confirmation::Accepted(deadline)) = outcome {
            self.schedule_suspicion(name, deadline);
        }
    }

    /// Queues the (new) deadline of the suspicion of `name` and its next direct check.
    fn schedule_suspicion(&mut self, name: &str, deadline: Instant) {
        let (shared, check) = match self.members.get(name) {
            Some(m) => (
                m.name.clone(),
                m.suspicion.as_ref().and_then(|s| s.check_at()),
            ),
            None => (Arc::from(name), None),
        };
        self.deadlines
            .push(deadline, Deadline::Suspicion(shared.clone()));
        if let Some(at) = check {
            self.deadlines.push(at, Deadline::SuspicionCheck(shared));
        }
    }

    fn on_ping_req(
        &mut self,
        now: Instant,
        from: SocketAddr,
        seq: u32,
        target: String,
        target_addr: SocketAddr,
    ) {
        let our_seq = self.seqs.next_seq();
        self.served.insert(
            our_seq,
            Served {
                requester: from,
                requester_seq: seq,
            },
        );
        let timeout = self.awareness.scale(self.config.probe_timeout);
        self.deadlines
            .push(now + timeout, Deadline::IndirectProbe(our_seq));
        let body = Body::Ping {
            seq: our_seq,
            target: target.clone(),
        };
        let piggyback = Piggyback::queue(Some(&target));
        self.send(target_addr, Some(&target), Some(body), piggyback);
    }

    /// Merges one fact with the precedence rules. Accepted changes become events and, when
    /// `origin.regossip`, are queued for re-broadcast. Returns true when something changed.
    pub(super) fn apply(&mut self, now: Instant, u: Update, origin: Origin<'_>) -> bool {
        if u.name == self.local_name {
            return self.apply_about_self(now, u);
        }
        let Some(held) = self.members.get(&u.name) else {
            return self.add_member(now, u, origin);
        };
        if u.incarnation > held.incarnation.saturating_add(MAX_INCARNATION_JUMP) {
            // Nobody honest raises an incarnation that far at once; believing it would leave
            // the member almost nothing to refute with.
            self.count_refusal(Refusal::IncarnationJump);
            return false;
        }
        match precedence((held.incarnation, held.state), (u.incarnation, u.state)) {
            Precedence::Older => false,
            Precedence::Same => {
                if u.state == MemberState::Suspected {
                    self.confirm_suspicion(now, &u, origin.regossip)
                } else {
                    false
                }
            }
            Precedence::Newer => {
                // A suspicion says nothing about where the member is.
                let moves = u.state != MemberState::Suspected && u.addr != held.addr;
                if moves && is_reachable(held.state) && !origin.from_subject {
                    // A live member moves only by its own word (a restart at a new address
                    // announces itself); others must see it DOWN or LEAVING first.
                    self.count_refusal(Refusal::AddressConflict);
                    return false;
                }
                self.replace_member(now, u, origin);
                true
            }
        }
    }

    fn add_member(&mut self, now: Instant, u: Update, origin: Origin<'_>) -> bool {
        if self.members.len() >= self.config.max_members {
            self.count_refusal(Refusal::TableFull);
            return false;
        }
        let name = self.members.name_arc(&u.name);
        let member = Member::remote(name, u.addr, u.state, u.incarnation, &u.meta, now);
        self.members.insert(member, &mut self.rng);
        self.enter_state(now, &u);
        self.push_event(&u.name, None, origin.reason.clone());
        if origin.regossip {
            self.broadcast(now, &u);
        }
        true
    }

    fn replace_member(&mut self, now: Instant, u: Update, origin: Origin<'_>) {
        let Some(prev) = self.members.update(&u.name, |m| {
            let prev = m.state;
            // `apply` has checked that this fact may move the member; a suspicion never does,
            // and only ALIVE facts carry metadata.
            if u.state != MemberState::Suspected {
                m.addr = u.addr;
            }
            // Compare before allocating: most ALIVE facts repeat the metadata we hold.
            if u.state == MemberState::Alive && *m.meta != u.meta {
                m.meta = share_meta(&u.meta);
            }
            if prev != u.state {
                m.since = now;
            }
            m.state = u.state;
            m.incarnation = u.incarnation;
            m.suspicion = None;
            prev
        }) else {
            return;
        };
        // Suspected again at a newer incarnation also needs a fresh suspicion.
        if prev != u.state || u.state == MemberState::Suspected {
            self.enter_state(now, &u);
        }
        self.push_event(&u.name, Some(prev), origin.reason.clone());
        if origin.regossip {
            let current = self.members.get(&u.name).map(Member::to_update);
            if let Some(current) = current {
                self.broadcast(now, &current);
            }
        }
    }

    /// Starts what a member's new state needs: a suspicion timer or a reap deadline.
    fn enter_state(&mut self, now: Instant, u: &Update) {
        match u.state {
            MemberState::Suspected => {
                let n = self.members.live_count();
                let bounds = suspicion::bounds(&self.config, n);
                let k = suspicion::expected_confirmations(self.config.indirect_checks, n);
                // An unknown accuser stays empty: whatever stands in for it travels in every
                // copy of the suspicion, and must be something every codec accepts.
                let step = self.config.gossip_interval;
                let s = Suspicion::new(now, &u.accuser, bounds, k, step);
                let deadline = s.deadline();
                self.members
                    .update(&u.name, |m| m.suspicion = Some(Box::new(s)));
                self.schedule_suspicion(&u.name, deadline);
            }
            MemberState::Down | MemberState::Leaving => {
                self.deadlines.push(
                    now + self.config.retention,
                    Deadline::Reap(self.shared_name(&u.name)),
                );
            }
            MemberState::Alive | MemberState::Init => {}
        }
    }

    /// A SUSPECTED fact at the incarnation we already suspect: maybe a new confirmation.
    fn confirm_suspicion(&mut self, now: Instant, u: &Update, gossip: bool) -> bool {
        let outcome = self
            .members
            .update(&u.name, |m| match m.suspicion.as_mut() {
                Some(s) if !u.accuser.is_empty() => s.confirm(now, &u.accuser),
                _ => Confirmation::Ignored,
            });
        match outcome {
            Some(Confirmation::Accepted(deadline)) => {
                self.schedule_suspicion(&u.name, deadline);
                if gossip {
                    // Pass the confirmation on so others shorten their timers too.
                    self.broadcast(now, u);
                }
                true
            }
            _ => false,
        }
    }

    /// A fact about ourselves: refute anything that would make others think we are not ALIVE
    /// here, by outbidding its incarnation.
    fn apply_about_self(&mut self, now: Instant, u: Update) -> bool {
        let local = self.members.local();
        if local.state == MemberState::Leaving {
            return false;
        }
        // While joining, anything goes: the cluster may remember a long previous life of ours.
        let joined = local.state != MemberState::Init;
        if joined && u.incarnation > local.incarnation.saturating_add(MAX_INCARNATION_JUMP) {
            self.count_refusal(Refusal::IncarnationJump);
            return false;
        }
        let conflict = u.incarnation > local.incarnation
            || (u.incarnation == local.incarnation
                && (u.state != MemberState::Alive
                    || u.addr != local.addr
                    || u.meta != *local.meta));
        if !conflict {
            return false;
        }
        let name = self.local_name.clone();
        let Some(prev) = self.members.update(&name, |m| {
            // The codec caps what anyone may claim, so this outbids every believable fact.
            m.incarnation = u.incarnation.saturating_add(1).min(MAX_INCARNATION);
            m.state
        }) else {
            return false;
        };
        self.stats.refutations += 1;
        if matches!(u.state, MemberState::Suspected | MemberState::Down) {
            self.awareness.apply(1);
        }
        self.push_event(&name, Some(prev), ChangeReason::Refuted);
        if prev == MemberState::Init {
            // While INIT the ALIVE announcement follows when we join.
            return true;
        }
        self.broadcast_local(now);
        let fact = self.members.local().to_update();
        match u.state {
            // Everyone may hold us DOWN or LEAVING, and nobody probes such a member; or they
            // hold us at another address, and a live member moves only by its own word: tell
            // many at once, ourselves.
            MemberState::Down | MemberState::Leaving => {
                self.announce(&fact, self.config.announce_fanout);
            }
            MemberState::Alive if u.addr != fact.addr => {
                self.announce(&fact, self.config.announce_fanout);
            }
            // The accuser's timer is the one that runs out first (it may hold witnesses that
            // nobody else knows of): tell it directly, besides the gossip.
            MemberState::Suspected => {
                let accuser = self
                    .members
                    .get(&u.accuser)
                    .filter(|m| !m.is_local && is_reachable(m.state))
                    .map(|m| (m.name.clone(), m.addr));
                if let Some((accuser, addr)) = accuser {
                    let wire_fact = codec::update_to_wire(&fact, true);
                    self.send(addr, Some(&accuser), None, Piggyback::Only(&[wire_fact]));
                }
            }
            _ => {}
        }
        true
    }
}
