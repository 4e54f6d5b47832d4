//! The [`Swim`] state machine: ties the member table, probing, suspicion, awareness and the
//! broadcast queue together behind the driving contract documented on the `swim` module.
//!
//! Split by input: `inbound` handles datagrams and merges facts, `periodic` handles timers,
//! `seeding` joins through seeds and refreshes them.

mod inbound;
mod periodic;
mod seeding;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::awareness::Awareness;
use super::broadcast::{retransmit_limit, BroadcastQueue};
use super::codec::{self, Body};
use super::limits::{self, LimitError};
use super::members::{share_meta, Member, Members, NameInterner};
use super::payloads::{self, PayloadQueue};
use super::probe::{IndirectProbes, NackWatch, ProbeRound, SeqGen};
use super::seeding::{JoinPhase, Notice, PushPullRequest, Seeding};
use super::state::{is_reachable, Update};
use super::timers::{DeadlineQueue, Timer, TimerTable};
use super::{
    ChangeReason, Config, DropReason, Event, Identity, MemberState, MemberView, NodeMeta, Refusal,
    Stats, Transmit,
};
use crate::wire;
use inbound::Origin;

/// The leave announcement still being spread.
#[derive(Clone, Debug)]
struct LeaveProgress {
    /// Distinct members the LEAVING update was sent to.
    told: HashSet<String>,
    /// How many must be told before the process may exit.
    needed: usize,
}

/// A member a node starts with in [`Swim::start_converged`]: ALIVE at `incarnation`.
#[derive(Clone, Debug)]
pub struct KnownMember {
    /// Member name; an `Arc` so thousands of simulated tables can share one copy.
    pub name: Arc<str>,
    /// Its SWIM/QUIC address.
    pub addr: SocketAddr,
    /// Its current incarnation (1 for a node that joined once).
    pub incarnation: u64,
    /// Its region, zone and tags.
    pub meta: NodeMeta,
}

/// What a datagram carries besides its body.
#[derive(Debug)]
enum Piggyback<'a> {
    /// `first`, then pending updates from the broadcast queue (the one about `buddy` first),
    /// up to the datagram size; only the queued ones count as transmissions of the queue.
    Queue {
        first: Vec<wire::MemberUpdate>,
        buddy: Option<&'a str>,
    },
    /// Exactly these facts and nothing from the queue: an urgent fact stays a small datagram
    /// however full the queue is, and an answer to a stranger carries no gossip.
    Only(&'a [wire::MemberUpdate]),
    /// Exactly this payload of another core, alone: a fresh local write sent at once.
    Payload(&'a [u8]),
}

impl<'a> Piggyback<'a> {
    /// Pending updates only, the one about `buddy` first.
    fn queue(buddy: Option<&'a str>) -> Self {
        Piggyback::Queue {
            first: Vec::new(),
            buddy,
        }
    }

    /// `first` ahead of the pending updates.
    fn first(first: Vec<wire::MemberUpdate>) -> Self {
        Piggyback::Queue { first, buddy: None }
    }
}

/// Fewest members a leave is announced to at once (if that many are alive), even with
/// `announce_fanout` 0: the process waits until they have it.
const LEAVE_FANOUT_MIN: usize = 3;

/// The SWIM state machine for one node. See the module docs for the driving contract.
#[derive(Debug)]
pub struct Swim {
    config: Config,
    rng: StdRng,
    local_name: String,
    members: Members,
    broadcasts: BroadcastQueue,
    payloads: PayloadQueue,
    payload_inbox: VecDeque<(SocketAddr, Vec<u8>)>,
    timers: TimerTable,
    deadlines: DeadlineQueue,
    awareness: Awareness,
    seqs: SeqGen,
    round: Option<ProbeRound>,
    nack_watch: Option<NackWatch>,
    served: IndirectProbes,
    leave: Option<LeaveProgress>,
    push_pull_ticks: u64,
    /// The broadcast queue overflowed a datagram since it last ran empty.
    saturated: bool,
    seeding: Seeding,
    transmits: VecDeque<Transmit>,
    push_pulls: VecDeque<PushPullRequest>,
    events: VecDeque<Event>,
    notices: VecDeque<Notice>,
    stats: Stats,
}

impl Swim {
    /// Creates a node in state INIT, holding only itself. `rng_seed` seeds all randomness.
    /// Refuses an identity whose name or metadata breaks a [limit](super::limits): peers would
    /// drop every fact about it, and the node could never join.
    pub fn new(
        config: Config,
        identity: Identity,
        rng_seed: u64,
        now: Instant,
    ) -> Result<Self, LimitError> {
        limits::check_name(&identity.name)?;
        limits::check_meta(&identity.meta)?;
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let local = Member {
            name: identity.name.as_str().into(),
            addr: identity.addr,
            state: MemberState::Init,
            incarnation: 1,
            meta: share_meta(&identity.meta),
            since: now,
            suspicion: None,
            is_local: true,
        };
        Ok(Swim {
            awareness: Awareness::new(config.awareness_max_multiplier),
            seqs: SeqGen::new(rng.random()),
            config,
            rng,
            local_name: identity.name,
            members: Members::new(local),
            broadcasts: BroadcastQueue::default(),
            payloads: PayloadQueue::default(),
            payload_inbox: VecDeque::new(),
            timers: TimerTable::default(),
            deadlines: DeadlineQueue::default(),
            round: None,
            nack_watch: None,
            served: IndirectProbes::default(),
            leave: None,
            push_pull_ticks: 0,
            saturated: false,
            seeding: Seeding::default(),
            transmits: VecDeque::new(),
            push_pulls: VecDeque::new(),
            events: VecDeque::new(),
            notices: VecDeque::new(),
            stats: Stats::default(),
        })
    }

    /// Shares member names with the other cores of this process (a simulator running
    /// thousands of nodes): each name is then stored once, not once per core. Optional.
    pub fn share_names(&mut self, names: NameInterner) {
        self.members.share_names(names);
    }

    /// Starts as a cluster of one (no seeds given): INIT → ALIVE, probing begins.
    pub fn start_alone(&mut self, now: Instant) {
        self.become_alive(now);
    }

    /// Starts as a member of an already converged cluster (INIT → ALIVE), holding every one of
    /// `known` ALIVE, as if it had joined and every join announcement had reached everyone.
    /// Lets a simulator build a large cluster without its O(N² log N) join wave.
    ///
    /// The table is reserved to its exact size first. `known` may list this node (skipped) but
    /// no name twice (a repeated name is ignored). No event is emitted for the seeded members
    /// (the caller knows them) and nothing is gossiped: every member already holds the same
    /// table. The periodic timers start as after a join, at random phases. A no-op unless
    /// this node is INIT.
    pub fn start_converged(&mut self, now: Instant, known: &[KnownMember]) {
        if self.members.local().state != MemberState::Init {
            return;
        }
        // Exactly the others: reserving one slot too many would leave a table's worth of
        // slack to shrink away (10^4 tables of 10^4 entries in a 10,000-node simulation).
        let others = known.iter().filter(|k| *k.name != *self.local_name).count();
        self.members.reserve_exact(others);
        for k in known {
            if *k.name == *self.local_name {
                continue;
            }
            let member = Member::remote(
                k.name.clone(),
                k.addr,
                MemberState::Alive,
                k.incarnation,
                &k.meta,
                now,
            );
            self.members.insert(member, &mut self.rng);
        }
        self.members.shrink_to_fit();
        if self.set_local_state(now, MemberState::Alive).is_none() {
            return;
        }
        let name = self.local_name.clone();
        self.push_event(&name, Some(MemberState::Init), ChangeReason::LocalStart);
        self.start_timers(now);
    }

    /// The member's own copy of `name` (shared, not copied) for queues that outlive a call;
    /// a fresh one if the member is unknown.
    pub(super) fn shared_name(&self, name: &str) -> Arc<str> {
        self.members
            .get(name)
            .map_or_else(|| Arc::from(name), |m| m.name.clone())
    }

    /// Encodes this node's full member table as a `PushPull` message to send to a peer.
    /// While INIT, the message is marked `join` and lists this node as ALIVE.
    pub fn push_pull_payload(&self) -> Vec<u8> {
        let joining = self.members.local().state == MemberState::Init;
        let members = self
            .members
            .iter()
            .map(|m| {
                let mut u = m.to_update();
                if m.is_local && joining {
                    u.state = MemberState::Alive;
                }
                codec::update_to_wire(&u, true)
            })
            .collect();
        codec::encode_push_pull(&wire::PushPull {
            sender: self.local_name.clone(),
            join: joining,
            members,
            keyring: None,
            store_roots: None,
        })
    }

    /// Merges the `PushPull` message of a peer at `from` that started an exchange with us (the
    /// caller answers with [`Swim::push_pull_payload`]). If this node is INIT, it is now joined
    /// (→ ALIVE) and announces itself. Errors when the message is dropped (also counted in
    /// stats). Answers to exchanges the core asked for go to [`Swim::handle_push_pull_reply`].
    pub fn handle_push_pull(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), DropReason> {
        let joining = self.seeding.join != JoinPhase::Off;
        self.merge_push_pull(now, from, data)?;
        if joining && self.seeding.join == JoinPhase::Off {
            self.notices.push_back(Notice::JoinedByPeer);
        }
        Ok(())
    }

    /// Merges a peer's `PushPull` message; an INIT node is joined by it (→ ALIVE).
    fn merge_push_pull(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), DropReason> {
        let msg = match codec::decode_push_pull(data) {
            Ok(msg) => msg,
            Err(reason) => {
                self.count_drop(reason);
                return Err(reason);
            }
        };
        self.stats.push_pulls += 1;
        // A joiner's copy of the seed's table is news to nobody: merge it without re-gossip.
        let regossip = self.members.local().state != MemberState::Init;
        for update in msg.members {
            let update = self.as_suspicion_if_live(update, &msg.sender);
            let origin = Origin {
                reason: &ChangeReason::PushPull,
                regossip,
                from_subject: update.name == msg.sender && update.addr == from,
            };
            self.apply(now, update, origin);
        }
        self.become_alive(now);
        Ok(())
    }

    /// A DOWN entry of a peer's table about a member we hold ALIVE or SUSPECTED, taken as the
    /// peer's suspicion of it (memberlist's `mergeState` does the same). After a partition each
    /// half holds the other DOWN; merging that verbatim would make members DOWN that this node
    /// never stopped reaching, while a suspicion lets a live member refute before anyone acts.
    fn as_suspicion_if_live(&self, update: Update, sender: &str) -> Update {
        let live = self
            .members
            .get(&update.name)
            .is_some_and(|m| !m.is_local && is_reachable(m.state));
        if update.state != MemberState::Down || !live {
            return update;
        }
        Update {
            state: MemberState::Suspected,
            accuser: sender.to_owned(),
            ..update
        }
    }

    /// Begins a graceful leave: this node → LEAVING, broadcast at once to several members.
    pub fn leave(&mut self, now: Instant) {
        let Some(prev) = self.set_local_state(now, MemberState::Leaving) else {
            return;
        };
        self.push_event(
            &self.local_name.clone(),
            Some(prev),
            ChangeReason::LocalLeave,
        );
        self.stop_joining();
        for timer in [
            Timer::Probe,
            Timer::ProbeTimeout,
            Timer::NackCheck,
            Timer::PushPull,
            Timer::SeedRefresh,
        ] {
            self.timers.stop(timer);
        }
        self.round = None;
        // We are LEAVING now, so every live member is another one.
        let others = self.members.live_count();
        self.leave = Some(LeaveProgress {
            told: HashSet::new(),
            needed: others.min(LEAVE_FANOUT_MIN),
        });
        if prev == MemberState::Init {
            return;
        }
        self.broadcast_local(now);
        let fact = self.members.local().to_update();
        self.announce(&fact, self.config.announce_fanout.max(LEAVE_FANOUT_MIN));
        if self.timers.get(Timer::Gossip).is_none() {
            self.timers
                .set(Timer::Gossip, now + self.config.gossip_interval);
        }
    }

    /// True once the LEAVING announcement has been sent to enough members (or there are none),
    /// so the process may exit.
    pub fn leave_announced(&self) -> bool {
        self.leave
            .as_ref()
            .is_some_and(|l| l.told.len() >= l.needed)
    }

    /// Replaces this node's metadata; bumps the incarnation and broadcasts ALIVE. Refuses
    /// metadata that breaks a [limit](super::limits), changing nothing.
    pub fn set_meta(&mut self, now: Instant, meta: NodeMeta) -> Result<(), LimitError> {
        limits::check_meta(&meta)?;
        let name = self.local_name.clone();
        let prev = self.members.update(&name, |m| {
            m.meta = share_meta(&meta);
            m.incarnation = m.incarnation.saturating_add(1);
            m.state
        });
        if let Some(prev) = prev {
            self.push_event(&name, Some(prev), ChangeReason::MetaChanged);
            if prev != MemberState::Init {
                self.broadcast_local(now);
            }
        }
        Ok(())
    }

    /// Next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        if self.transmits.is_empty() && self.transmits.capacity() > 64 {
            self.transmits = VecDeque::new();
        }
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += t.payload.len() as u64;
        Some(t)
    }

    /// Next push-pull exchange the caller should run, if any; its outcome goes back through
    /// [`Swim::handle_push_pull_reply`].
    pub fn poll_push_pull(&mut self) -> Option<PushPullRequest> {
        self.push_pulls.pop_front()
    }

    /// Hands a payload of another core (an encoded store delta, at most
    /// [`payloads::MAX_PAYLOAD_BYTES`]) to SWIM to carry to every member. A `local` one (a write
    /// made here) goes at once, alone, to up to `announce_fanout` reachable members; then every
    /// payload, local or received, rides piggyback and gossip like a membership update, up to
    /// the retransmit limit, so it spreads in O(log N) gossip rounds and a datagram lost on the
    /// direct send is repaired within a few gossip ticks. Relaying is best effort: it takes
    /// only the room membership updates leave, least-sent first, and a full queue drops the
    /// most-sent payload (the stores' anti-entropy repairs what it misses).
    /// Refuses (false) a payload too large for a datagram.
    pub fn broadcast_payload(&mut self, now: Instant, payload: Vec<u8>, local: bool) -> bool {
        if payload.len() > payloads::MAX_PAYLOAD_BYTES {
            return false;
        }
        if local {
            let targets = self.pick(self.config.announce_fanout, |m| is_reachable(m.state));
            for (name, addr) in &targets {
                self.send(*addr, Some(name), None, Piggyback::Payload(&payload));
            }
        }
        let dropped = self.payloads.dropped();
        self.payloads.push(payload);
        self.stats.payloads_dropped += self.payloads.dropped() - dropped;
        self.wake_gossip(now);
        true
    }

    /// Sends a payload of another core alone, in a datagram of its own, to one random
    /// reachable member (the stores' periodic digest, which only that member is to compare).
    /// Returns the member's address; `None` when there is no reachable member or the payload
    /// is too large for a datagram.
    pub fn send_payload_to_random(&mut self, payload: &[u8]) -> Option<SocketAddr> {
        if payload.len() > payloads::MAX_PAYLOAD_BYTES {
            return None;
        }
        let addr = self.random_peer()?;
        // No name: a payload alone carries no membership fact, so no leave to note as told.
        self.send(addr, None, None, Piggyback::Payload(payload));
        Some(addr)
    }

    /// Next payload of another core received from a member, with the address it came from.
    pub fn poll_payload(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.payload_inbox.pop_front()
    }

    /// Payloads waiting to be gossiped.
    pub fn pending_payloads(&self) -> usize {
        self.payloads.len()
    }

    /// A random reachable member other than this node, for an exchange the caller starts
    /// (the stores' anti-entropy).
    pub fn random_peer(&mut self) -> Option<SocketAddr> {
        self.pick(1, |m| is_reachable(m.state))
            .pop()
            .map(|(_, addr)| addr)
    }

    /// Next membership change, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        // A merged push-pull can queue one event per member; don't keep that capacity (there
        // is one core per node in the simulator, so it would cost O(N²) in all).
        if self.events.is_empty() && self.events.capacity() > 64 {
            self.events = VecDeque::new();
        }
        e
    }

    /// Earliest deadline at which [`Swim::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.deadlines.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// This node's own entry.
    pub fn local(&self) -> MemberView {
        self.members.local().view()
    }

    /// Every known member including this node, sorted by name.
    pub fn members(&self) -> Vec<MemberView> {
        let mut out: Vec<MemberView> = self.members.iter().map(Member::view).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// One member by name, without copying the whole table.
    pub fn member(&self, name: &str) -> Option<MemberView> {
        self.members.get(name).map(Member::view)
    }

    /// Number of known members, this node and DOWN/LEAVING ones included.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Number of known members in `state`.
    pub fn count_in_state(&self, state: MemberState) -> usize {
        self.members.count(state)
    }

    /// Running counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Lifeguard local health score, 0 (healthy) up to `awareness_max_multiplier - 1`.
    pub fn health_score(&self) -> u32 {
        self.awareness.score()
    }

    /// Updates waiting to be piggybacked (broadcast queue depth).
    pub fn pending_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    // ---- helpers shared by the submodules ----

    /// INIT → ALIVE: announce ourselves, stop joining and start the periodic timers. No-op
    /// otherwise.
    fn become_alive(&mut self, now: Instant) {
        if self.set_local_state(now, MemberState::Alive).is_none() {
            return;
        }
        self.stop_joining();
        let name = self.local_name.clone();
        self.push_event(&name, Some(MemberState::Init), ChangeReason::LocalStart);
        self.broadcast_local(now);
        // Tell the members we just learned of from the seed ourselves, at once: gossip alone
        // misses some of those that joined shortly before us (the seed's copy of our ALIVE
        // waits in a queue full of the other joiners), leaving a tail of seconds.
        let fact = self.members.local().to_update();
        self.announce(&fact, self.config.announce_fanout);
        self.start_timers(now);
    }

    /// Arms the periodic timers as a node that has just joined does.
    fn start_timers(&mut self, now: Instant) {
        // Random phases, so nodes started together do not probe and gossip in lockstep.
        let probe = self.jitter(self.config.probe_interval);
        let gossip = self.jitter(self.config.gossip_interval);
        self.timers.set(Timer::Probe, now + probe);
        self.timers.set(Timer::Gossip, now + gossip);
        // A joiner has just exchanged full state with its seed and told every member it learned
        // of (announce_fanout), so its first periodic exchange comes one interval later on
        // average, at a random point of [interval / 2, 3 × interval / 2): nodes started together
        // do not exchange in step, and a mass join is not followed by a burst of full-state
        // exchanges nobody needs.
        let interval = self.push_pull_interval();
        let push_pull = interval / 2 + self.jitter(interval);
        self.timers.set(Timer::PushPull, now + push_pull);
        self.arm_seed_refresh(now, true);
    }

    /// Moves this node to `state` (only INIT → ALIVE and → LEAVING are allowed); returns the
    /// previous state, or None when the move does not apply.
    fn set_local_state(&mut self, now: Instant, state: MemberState) -> Option<MemberState> {
        let name = self.local_name.clone();
        let prev = self.members.local().state;
        let allowed = match state {
            MemberState::Alive => prev == MemberState::Init,
            MemberState::Leaving => prev != MemberState::Leaving,
            _ => false,
        };
        if !allowed {
            return None;
        }
        self.members.update(&name, |m| {
            m.state = state;
            m.since = now;
        });
        Some(prev)
    }

    /// Queues this node's own current fact for gossip.
    fn broadcast_local(&mut self, now: Instant) {
        let update = self.members.local().to_update();
        self.broadcast(now, &update);
    }

    /// Queues a fact for gossip; meta rides only on ALIVE facts. Wakes the gossip timer if it
    /// was idle (an empty queue stops it) and this node is probing, i.e. joined and not leaving;
    /// the first tick comes at a random point of one gossip interval, as while it runs.
    fn broadcast(&mut self, now: Instant, update: &Update) {
        let with_meta = update.state == MemberState::Alive;
        let name = self.shared_name(&update.name);
        let update = codec::update_to_wire(update, with_meta);
        if self.broadcasts.push(name, update) {
            self.stats.updates_dropped += 1;
            // A push-pull once the queue drains repairs what the dropped update would have said.
            self.saturated = true;
        }
        self.wake_gossip(now);
    }

    /// Arms the idle gossip timer if this node is probing (joined, not leaving); the first tick
    /// comes at a random point of one gossip interval, as while it runs.
    fn wake_gossip(&mut self, now: Instant) {
        let probing = self.timers.get(Timer::Probe).is_some();
        if probing && self.timers.get(Timer::Gossip).is_none() {
            let at = now + self.jitter(self.config.gossip_interval);
            self.timers.set(Timer::Gossip, at);
        }
    }

    /// Builds one datagram to `dst` with `body` and what `piggyback` says it carries, and
    /// queues it. A body-less datagram with nothing to carry is not sent. Returns the number
    /// of updates and payloads carried.
    fn send(
        &mut self,
        dst: SocketAddr,
        dst_name: Option<&str>,
        body: Option<Body>,
        piggyback: Piggyback<'_>,
    ) -> usize {
        let mut env = wire::Envelope {
            sender: self.local_name.clone(),
            body: body.map(codec::body_to_wire),
            updates: Vec::new(),
            payloads: Vec::new(),
        };
        let mut budget = self
            .config
            .max_datagram_size
            .saturating_sub(1 + prost::Message::encoded_len(&env));
        let (first, queue) = match piggyback {
            Piggyback::Queue { first, buddy } => (first, Some(buddy)),
            Piggyback::Only(facts) => (facts.to_vec(), None),
            Piggyback::Payload(payload) => {
                env.payloads.push(payload.to_vec());
                (Vec::new(), None)
            }
        };
        for update in first {
            // Never exceed the datagram size, even for a fact with large metadata.
            let len = codec::update_field_len(prost::Message::encoded_len(&update));
            if len <= budget {
                budget -= len;
                env.updates.push(update);
            }
        }
        if let Some(buddy) = queue {
            let limit = retransmit_limit(self.config.retransmit_mult, self.members.live_count());
            let updates = self.broadcasts.fill(budget, buddy, limit);
            let used: usize = updates
                .iter()
                .map(|u| codec::update_field_len(prost::Message::encoded_len(u)))
                .sum();
            env.updates.extend(updates);
            env.payloads
                .extend(self.payloads.fill(budget.saturating_sub(used), limit));
        }
        if env.body.is_none() && env.updates.is_empty() && env.payloads.is_empty() {
            return 0;
        }
        self.transmit(dst, dst_name, env)
    }

    /// Queues one built datagram; notes who was told of our leave. Returns the updates carried.
    fn transmit(&mut self, dst: SocketAddr, dst_name: Option<&str>, env: wire::Envelope) -> usize {
        if let (Some(leave), Some(dst_name)) = (self.leave.as_mut(), dst_name) {
            let leaving = wire::MemberState::Leaving as i32;
            if env
                .updates
                .iter()
                .any(|u| u.name == self.local_name && u.state == leaving)
            {
                leave.told.insert(dst_name.to_owned());
            }
        }
        let carried = env.updates.len() + env.payloads.len();
        self.transmits.push_back(Transmit {
            dst,
            payload: codec::encode_datagram(&env),
        });
        carried
    }

    /// Sends an urgent fact at once, alone, to up to `fanout` random reachable members other
    /// than its subject (every one of them when there are fewer); gossip then carries it on.
    /// Returns how many were told.
    fn announce(&mut self, fact: &Update, fanout: usize) -> usize {
        let wire_fact = codec::update_to_wire(fact, fact.state == MemberState::Alive);
        let subject = fact.name.as_str();
        let targets = self.pick(fanout, |m| is_reachable(m.state) && *m.name != *subject);
        for (name, addr) in &targets {
            let only = Piggyback::Only(std::slice::from_ref(&wire_fact));
            self.send(*addr, Some(name), None, only);
        }
        targets.len()
    }

    /// Names and addresses of up to `k` random other members matching `pred`.
    fn pick(&mut self, k: usize, pred: impl Fn(&Member) -> bool) -> Vec<(Arc<str>, SocketAddr)> {
        self.members
            .sample(&mut self.rng, k, pred)
            .into_iter()
            .map(|m| (m.name.clone(), m.addr))
            .collect()
    }

    /// Records a change of `name` (already applied) as an event.
    fn push_event(&mut self, name: &str, previous: Option<MemberState>, reason: ChangeReason) {
        if let Some(m) = self.members.get(name) {
            self.events.push_back(Event::Changed {
                member: m.view(),
                previous,
                reason,
            });
        }
    }

    /// Counts a dropped datagram or push-pull message.
    fn count_drop(&mut self, reason: DropReason) {
        *self.stats.dropped.entry(reason).or_default() += 1;
    }

    /// Counts a fact or request refused although its datagram was valid.
    fn count_refusal(&mut self, refusal: Refusal) {
        *self.stats.refused.entry(refusal).or_default() += 1;
    }

    /// A random duration in `[0, d)`, for desynchronizing periodic timers.
    fn jitter(&mut self, d: Duration) -> Duration {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        Duration::from_nanos(self.rng.random_range(0..nanos))
    }

    /// Push-pull interval scaled with N like memberlist: × (ceil(log2 N − log2 32) + 1) above 32.
    fn push_pull_interval(&self) -> Duration {
        push_pull_scale(self.config.push_pull_interval, self.members.live_count())
    }
}

/// Scales the push-pull interval with the cluster size (memberlist's `pushPullScale`).
pub fn push_pull_scale(interval: Duration, n: usize) -> Duration {
    const THRESHOLD: usize = 32;
    if n <= THRESHOLD {
        return interval;
    }
    let mult = ((n as f64).log2() - (THRESHOLD as f64).log2()).ceil() + 1.0;
    interval.mul_f64(mult)
}

#[cfg(test)]
mod tests;
