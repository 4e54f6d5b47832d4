//! A deterministic discrete-event simulator driving many [`Swim`] cores in one process.
//!
//! Virtual time is a base `Instant` captured once plus an offset; a binary heap orders datagram
//! deliveries, push-pull exchanges and node wake-ups by (time, insertion). Links have latency
//! with jitter (which reorders datagrams), random loss (also one-way, per receiving node),
//! duplication, and per-link extra latency; the network can be partitioned and healed; nodes can be paused
//! (like a GC stall: traffic queues up and is handled on resume), crashed, and restarted under
//! the same name. Every run is reproducible from one seed.
//!
//! Cheap invariants are checked on every event (panicking with a description when broken): a
//! running node never believes itself DOWN, and no node sees a member's incarnation decrease.

#![warn(missing_docs)]

mod invariants;
mod queue;
mod stores;

use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use invariants::Invariants;
use queue::{Dest, Input, Scheduled};
pub use stores::StoreSeen;
use stores::WALL_EPOCH_MS;

use crate::store::{StoreConfig, Stores};
use crate::swim::members::NameInterner;
use crate::swim::{
    Config, Event, ExchangeOutcome, Identity, KnownMember, MemberState, MemberView, NodeMeta,
    Notice, ProbeSchedule, PushPullRequest, Swim,
};

/// SWIM port every simulated node listens on.
const PORT: u16 = 39527;
/// How long a seed lookup takes (a DNS answer from a nearby resolver).
const LOOKUP_TIME: Duration = Duration::from_millis(1);

/// Network behaviour shared by all links.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra latency drawn uniformly from `[0, jitter)` per datagram.
    pub jitter: Duration,
    /// Probability that any one datagram is lost.
    pub loss: f64,
    /// Probability that a delivered datagram arrives twice (the copy with its own latency, so
    /// it may also overtake the original).
    pub duplicate: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(2),
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// A membership event observed by a node, stamped with virtual time.
#[derive(Clone, Debug, PartialEq)]
pub struct SimEvent {
    /// Virtual time since the start of the run.
    pub at: Duration,
    /// Index of the observing node.
    pub node: usize,
    /// What it observed.
    pub event: Event,
}

/// Traffic counters of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Datagrams handed to the network.
    pub datagrams_sent: u64,
    /// Bytes handed to the network.
    pub bytes_sent: u64,
    /// Datagrams lost to random loss, partitions or dead receivers.
    pub datagrams_lost: u64,
    /// Extra copies delivered by [`NetConfig::duplicate`].
    pub datagrams_duplicated: u64,
    /// Push-pull exchanges completed.
    pub push_pulls: u64,
    /// Queue items processed.
    pub steps: u64,
}

struct SimNode {
    name: String,
    addr: SocketAddr,
    core: Option<Swim>,
    /// Bumped on restart, so timers and replies of the previous process are ignored.
    epoch: u32,
    paused_until: Option<Duration>,
    backlog: Vec<Input>,
    wake_at: Option<Duration>,
    inbound_loss: f64,
    group: u32,
    /// The nodes whose addresses this node's seed lookup resolves to.
    seeds: Vec<usize>,
    /// The node's replicated stores, when the simulation has them.
    stores: Option<Stores>,
}

/// The simulator. See the module docs.
pub struct Sim {
    base: Instant,
    now: Duration,
    rng: StdRng,
    config: Config,
    net: NetConfig,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    next_addr: u32,
    events: Vec<SimEvent>,
    invariants: Invariants,
    stats: SimStats,
    /// Member names shared by every core (each stored once, not N times).
    names: NameInterner,
    /// Extra one-way latency of a link, by (sender address, receiver address).
    link_latency: HashMap<(SocketAddr, SocketAddr), Duration>,
    /// Every node gets replicated stores with this config (see [`Sim::enable_stores`]).
    store_config: Option<StoreConfig>,
    /// Store changes seen since the last [`Sim::take_store_changes`].
    store_changes: Vec<stores::StoreSeen>,
}

impl Sim {
    /// An empty network; every node gets `config`. An aligned probe schedule is anchored at
    /// virtual time zero (its `unix` is the wall clock there), so a run repeats exactly.
    pub fn new(seed: u64, mut config: Config, net: NetConfig) -> Self {
        let base = Instant::now();
        if let ProbeSchedule::Aligned { unix, .. } = config.probe_schedule {
            config.probe_schedule = ProbeSchedule::Aligned { at: base, unix };
        }
        Sim {
            base,
            now: Duration::ZERO,
            rng: StdRng::seed_from_u64(seed),
            config,
            net,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            next_addr: 0,
            events: Vec::new(),
            invariants: Invariants::new(),
            stats: SimStats::default(),
            names: NameInterner::default(),
            link_latency: HashMap::new(),
            store_config: None,
            store_changes: Vec::new(),
        }
    }

    /// Turns the per-member incarnation check off (it costs memory O(N²) in large runs).
    pub fn set_check_incarnations(&mut self, on: bool) {
        self.invariants.set_check_incarnations(on);
    }

    /// Current virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The `Instant` the core sees at virtual time `at`.
    pub fn instant(&self, at: Duration) -> Instant {
        self.base + at
    }

    /// Number of nodes ever added (crashed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True before any node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Traffic counters so far.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Changes loss, latency and jitter for everything sent from now on.
    pub fn set_net(&mut self, net: NetConfig) {
        self.net = net;
    }

    /// Name of node `i`.
    pub fn name(&self, i: usize) -> &str {
        self.nodes.get(i).map(|n| n.name.as_str()).unwrap_or("")
    }

    /// The core of node `i`, unless it crashed.
    pub fn core(&self, i: usize) -> Option<&Swim> {
        self.nodes.get(i).and_then(|n| n.core.as_ref())
    }

    /// True if node `i` has a running core (paused counts as running).
    pub fn is_running(&self, i: usize) -> bool {
        self.core(i).is_some()
    }

    /// What node `observer` believes about member `name`.
    pub fn view(&self, observer: usize, name: &str) -> Option<MemberView> {
        self.core(observer).and_then(|c| c.member(name))
    }

    /// True when every node of `observers` holds every node of `subjects` in `state`.
    pub fn all_hold(&self, observers: &[usize], subjects: &[usize], state: MemberState) -> bool {
        observers.iter().all(|&i| {
            subjects
                .iter()
                .all(|&j| self.view(i, self.name(j)).is_some_and(|v| v.state == state))
        })
    }

    /// Adds a node that starts as a cluster of one; returns its index.
    pub fn add_alone(&mut self, name: &str) -> usize {
        let i = self.spawn(name.to_owned(), None);
        let now = self.instant(self.now);
        if let Some(core) = self.nodes.get_mut(i).and_then(|n| n.core.as_mut()) {
            core.start_alone(now);
        }
        self.drain(i);
        i
    }

    /// Adds `names.len()` nodes forming one converged cluster: each holds every one of them
    /// ALIVE at incarnation 1, as if all had joined and every announcement had reached
    /// everyone, with its timers started as after a join (random phases). Returns their
    /// indexes. Builds a cluster of N in O(N²) table inserts instead of a join wave's
    /// O(N² log N) update decodes, with one queue entry per node (its first wake-up).
    pub fn add_converged(&mut self, names: &[String]) -> std::ops::Range<usize> {
        let first = self.nodes.len();
        for name in names {
            self.spawn(name.clone(), None);
        }
        let range = first..self.nodes.len();
        let known: Vec<KnownMember> = self.nodes[range.clone()]
            .iter()
            .map(|n| KnownMember {
                name: self.names.intern(&n.name),
                addr: n.addr,
                incarnation: 1,
                meta: NodeMeta::default(),
            })
            .collect();
        let now = self.instant(self.now);
        for i in range.clone() {
            if let Some(core) = self.nodes.get_mut(i).and_then(|n| n.core.as_mut()) {
                core.start_converged(now, &known);
            }
            self.drain(i);
        }
        range
    }

    /// Adds a node that joins through `seed` (the core's join rounds: lookup, push-pull,
    /// backoff, until it has joined), and refreshes it once joined.
    pub fn add_joining(&mut self, name: &str, seed: usize) -> usize {
        let i = self.spawn(name.to_owned(), None);
        self.join(i, &[seed]);
        i
    }

    /// Gives node `i` the seeds `seeds` (their current addresses are what its lookups resolve
    /// to) and tells its core to join through them; a joined core then refreshes them.
    pub fn join(&mut self, i: usize, seeds: &[usize]) {
        let now = self.instant(self.now);
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        node.seeds = seeds.to_vec();
        if let Some(core) = node.core.as_mut() {
            core.join(now);
        }
        self.drain(i);
    }

    /// Crashes node `i` for good (until [`Sim::restart`]): it stops processing anything.
    pub fn crash(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.core = None;
            n.backlog.clear();
            n.paused_until = None;
            n.wake_at = None;
        }
    }

    /// Restarts node `i` under its name as a fresh core (at a new address if `new_addr`),
    /// joining through `seed` (its only seed from now on).
    pub fn restart(&mut self, i: usize, new_addr: bool, seed: usize) {
        self.crash(i);
        let Some(name) = self.nodes.get(i).map(|n| n.name.clone()) else {
            return;
        };
        let addr = if new_addr {
            None
        } else {
            self.nodes.get(i).map(|n| n.addr)
        };
        let j = self.spawn(name, Some((i, addr)));
        self.join(j, &[seed]);
    }

    /// Node `i` leaves gracefully (it keeps running until crashed, like a process that waits
    /// for its announcement to go out).
    pub fn leave(&mut self, i: usize) {
        let now = self.instant(self.now);
        if let Some(core) = self.nodes.get_mut(i).and_then(|n| n.core.as_mut()) {
            core.leave(now);
        }
        self.drain(i);
    }

    /// Node `i` stops processing for `d` (GC stall): arrivals queue up and are handled on
    /// resume, then its overdue timers fire.
    pub fn pause(&mut self, i: usize, d: Duration) {
        let until = self.now + d;
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        n.paused_until = Some(until);
        let epoch = n.epoch;
        self.schedule(until, Dest::Node(i, epoch), Input::Resume);
    }

    /// Splits the network: nodes in different groups cannot talk; unlisted nodes form group 0.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for n in &mut self.nodes {
            n.group = 0;
        }
        for (g, members) in groups.iter().enumerate() {
            for &i in members.iter() {
                if let Some(n) = self.nodes.get_mut(i) {
                    n.group = u32::try_from(g + 1).unwrap_or(u32::MAX);
                }
            }
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    /// Drops each datagram arriving at node `i` with probability `p` (0 restores it).
    pub fn set_inbound_loss(&mut self, i: usize, p: f64) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.inbound_loss = p;
        }
    }

    /// Adds `extra` one-way latency to every datagram node `from` sends to node `to` (the other
    /// direction is unchanged: set it too for a slow link both ways). `Duration::ZERO` clears it.
    pub fn set_link_latency(&mut self, from: usize, to: usize, extra: Duration) {
        let (Some(a), Some(b)) = (self.nodes.get(from), self.nodes.get(to)) else {
            return;
        };
        let key = (a.addr, b.addr);
        if extra.is_zero() {
            self.link_latency.remove(&key);
        } else {
            self.link_latency.insert(key, extra);
        }
    }

    /// Runs until virtual time `until`, passing every membership event to `on_event`.
    pub fn run_until(&mut self, until: Duration, mut on_event: impl FnMut(&SimEvent)) {
        while self.queue.peek().is_some_and(|s| s.at <= until) {
            let Some(item) = self.queue.pop() else {
                break;
            };
            self.now = self.now.max(item.at);
            self.stats.steps += 1;
            self.dispatch(item);
            for e in self.events.drain(..) {
                on_event(&e);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` more virtual time.
    pub fn run_for(&mut self, d: Duration, on_event: impl FnMut(&SimEvent)) {
        self.run_until(self.now + d, on_event);
    }

    // ---- internals ----

    fn spawn(&mut self, name: String, reuse: Option<(usize, Option<SocketAddr>)>) -> usize {
        let addr = match reuse.and_then(|(_, a)| a) {
            Some(a) => a,
            None => {
                self.next_addr += 1;
                let id = self.next_addr;
                let ip = Ipv4Addr::new(10, (id >> 16) as u8, (id >> 8) as u8, id as u8);
                SocketAddr::new(ip.into(), PORT)
            }
        };
        let identity = Identity {
            name: name.clone(),
            addr,
            meta: NodeMeta::default(),
        };
        let mut core = Swim::new(
            self.config.clone(),
            identity,
            self.rng.random(),
            self.instant(self.now),
        )
        .expect("simulated node names and metadata are within the limits");
        core.share_names(self.names.clone());
        let i = match reuse {
            Some((i, _)) => {
                if let Some(n) = self.nodes.get_mut(i) {
                    if n.addr != addr {
                        self.by_addr.remove(&n.addr);
                    }
                    n.addr = addr;
                    n.core = Some(core);
                    n.epoch += 1;
                }
                // The new process has no memory: forget what its old life saw.
                self.invariants.forget_node(i);
                i
            }
            None => {
                self.nodes.push(SimNode {
                    name,
                    addr,
                    core: Some(core),
                    epoch: 0,
                    paused_until: None,
                    backlog: Vec::new(),
                    wake_at: None,
                    inbound_loss: 0.0,
                    group: 0,
                    seeds: Vec::new(),
                    stores: None,
                });
                self.nodes.len() - 1
            }
        };
        self.by_addr.insert(addr, i);
        // A new process: empty stores (the simulator keeps no data directory), filled again by
        // anti-entropy once it has joined.
        let stores = self.store_config.clone().map(|config| {
            let name = self.name(i).to_owned();
            Stores::new(config, &name, self.wall_ms())
        });
        if let Some(node) = self.nodes.get_mut(i) {
            node.stores = stores;
        }
        i
    }

    fn schedule(&mut self, at: Duration, dest: Dest, input: Input) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            dest,
            input,
        });
    }

    fn latency(&mut self) -> Duration {
        let jitter = u64::try_from(self.net.jitter.as_nanos()).unwrap_or(0);
        let extra = if jitter > 0 {
            self.rng.random_range(0..jitter)
        } else {
            0
        };
        self.net.latency + Duration::from_nanos(extra)
    }

    fn dispatch(&mut self, item: Scheduled) {
        let i = match item.dest {
            Dest::Addr(addr) => match self.by_addr.get(&addr) {
                Some(&i) => i,
                None => return,
            },
            Dest::Node(i, epoch) => {
                if self.nodes.get(i).map(|n| n.epoch) != Some(epoch) {
                    return;
                }
                i
            }
        };
        if let Input::Datagram { .. } = item.input {
            let loss = self.nodes.get(i).map_or(1.0, |n| n.inbound_loss);
            if loss > 0.0 && self.rng.random_bool(loss.min(1.0)) {
                self.stats.datagrams_lost += 1;
                return;
            }
        }
        if let Input::Wake = item.input {
            let Some(n) = self.nodes.get_mut(i) else {
                return;
            };
            if n.wake_at != Some(item.at) {
                return; // superseded by a later re-arm
            }
            n.wake_at = None;
        }
        self.dispatch_to(i, item.input);
    }

    fn dispatch_to(&mut self, i: usize, input: Input) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if n.core.is_none() {
            return;
        }
        if let Input::Resume = input {
            n.paused_until = None;
            let backlog = std::mem::take(&mut n.backlog);
            for input in backlog {
                self.process(i, input);
            }
            self.process(i, Input::Wake);
            return;
        }
        if n.paused_until.is_some_and(|t| t > now) {
            if !matches!(input, Input::Wake) {
                n.backlog.push(input);
            }
            return;
        }
        self.process(i, input);
    }

    fn process(&mut self, i: usize, input: Input) {
        let now = self.instant(self.now);
        // A lookup resolves every seed to its node's current address (crashed ones keep
        // theirs, like a static IP in a seed list).
        let resolved: Vec<SocketAddr> = match input {
            Input::SeedsResolved => self.nodes.get(i).map_or_else(Vec::new, |n| {
                n.seeds
                    .iter()
                    .filter_map(|&s| self.nodes.get(s).map(|seed| seed.addr))
                    .collect()
            }),
            _ => Vec::new(),
        };
        let now_ms = self.wall_ms();
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        let SimNode { core, stores, .. } = node;
        let Some(core) = core.as_mut() else {
            return;
        };
        match input {
            Input::Datagram { from, payload } => {
                core.handle_datagram(now, from, &payload);
                let mut differing = None;
                if let Some(stores) = stores.as_mut() {
                    while let Some((sender, payload)) = core.poll_payload() {
                        if stores.handle_payload(now_ms, &payload).stores_differ {
                            differing = Some(sender);
                        }
                    }
                }
                // A roots digest that is not ours: an exchange with its sender, as the driver.
                if let Some(peer) = differing {
                    self.start_store_sync(i, peer);
                }
            }
            Input::StoreSyncRequest {
                from,
                from_epoch,
                request,
            } => {
                let own = core.local().addr;
                let reply = stores
                    .as_mut()
                    .and_then(|s| s.serve_sync(now_ms, &request).ok());
                if let Some(reply) = reply {
                    let at = self.now + self.net.latency;
                    let input = Input::StoreSyncReply { peer: own, reply };
                    self.schedule(at, Dest::Node(from, from_epoch), input);
                }
            }
            Input::StoreSyncReply { peer, reply } => {
                let next = stores
                    .as_mut()
                    .and_then(|s| s.handle_sync_reply(now_ms, &reply).ok().flatten());
                if let Some(next) = next {
                    self.send_store_sync(i, peer, next);
                }
            }
            Input::PushPullRequest {
                from,
                from_epoch,
                request,
                from_addr,
                payload,
            } => {
                // A rejected request closes the stream unanswered, as the QUIC server does.
                let mut answer = core
                    .handle_push_pull(now, from_addr, &payload)
                    .is_ok()
                    .then(|| core.push_pull_payload());
                if let Some(answer) = answer.as_mut() {
                    self.attach_roots(i, answer);
                }
                let at = self.now + self.net.latency;
                let outcome = Input::PushPullOutcome { request, answer };
                self.schedule(at, Dest::Node(from, from_epoch), outcome);
            }
            Input::PushPullOutcome { request, answer } => {
                let outcome = match &answer {
                    Some(payload) => ExchangeOutcome::Answered(payload),
                    None => ExchangeOutcome::Unanswered,
                };
                let merged = core.handle_push_pull_reply(now, &request, outcome).is_ok();
                if merged && answer.is_some() {
                    self.stats.push_pulls += 1;
                }
                if let Some(answer) = &answer {
                    self.sync_if_stores_differ(i, request.peer, answer);
                }
            }
            Input::SeedsResolved => core.handle_seeds_resolved(now, &resolved),
            Input::Wake | Input::Resume => {
                core.handle_timeout(now);
                if let Some(stores) = stores.as_mut() {
                    stores.handle_timeout(now_ms);
                }
            }
        }
        self.drain(i);
    }

    /// Starts the exchange `request` of node `from`. One the network cannot carry (a partition,
    /// nobody running at the address) ends unanswered after the seed attempt timeout, as a
    /// QUIC connection attempt times out.
    fn send_push_pull(
        &mut self,
        from: usize,
        from_epoch: u32,
        request: PushPullRequest,
        payload: Vec<u8>,
    ) {
        let Some(from_addr) = self.nodes.get(from).map(|n| n.addr) else {
            return;
        };
        let to = request.peer;
        let running = self.by_addr.get(&to).is_some_and(|&j| self.is_running(j));
        if !running || !self.can_talk(from, to) {
            let at = self.now + self.config.seed_attempt_timeout;
            let outcome = Input::PushPullOutcome {
                request,
                answer: None,
            };
            self.schedule(at, Dest::Node(from, from_epoch), outcome);
            return;
        }
        let at = self.now + self.net.latency;
        let input = Input::PushPullRequest {
            from,
            from_epoch,
            request,
            from_addr,
            payload,
        };
        self.schedule(at, Dest::Addr(to), input);
    }

    /// Schedules one copy of a datagram, arriving after `link` plus the drawn latency.
    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, link: Duration, payload: Vec<u8>) {
        let at = self.now + link + self.latency();
        self.schedule(at, Dest::Addr(to), Input::Datagram { from, payload });
    }

    fn can_talk(&self, from: usize, to: SocketAddr) -> bool {
        let from_group = self.nodes.get(from).map(|n| n.group);
        let to_group = self
            .by_addr
            .get(&to)
            .and_then(|&j| self.nodes.get(j))
            .map(|n| n.group);
        from_group.is_some() && from_group == to_group
    }

    /// Collects a node's outputs after an input: datagrams, push-pull requests, events, timer.
    fn drain(&mut self, i: usize) {
        // The stores first: their payloads become SWIM datagrams below.
        self.drain_stores(i);
        let mut sends = Vec::new();
        let mut pulls = Vec::new();
        let mut events = Vec::new();
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        let epoch = node.epoch;
        let from = node.addr;
        let Some(core) = node.core.as_mut() else {
            return;
        };
        while let Some(t) = core.poll_transmit() {
            sends.push(t);
        }
        while let Some(request) = core.poll_push_pull() {
            pulls.push(request);
        }
        let lookup = core.poll_seed_lookup();
        while let Some(e) = core.poll_event() {
            events.push(e);
        }
        // Notices are the driver's log lines (the simulator has no log); a join or a seed
        // refresh that met another cluster starts store anti-entropy with that peer, as the
        // driver does.
        let mut sync_with = Vec::new();
        while let Some(notice) = core.poll_notice() {
            if let Notice::Joined { seed: peer } | Notice::RefreshMerged { peer, .. } = notice {
                sync_with.push(peer);
            }
        }
        if node.stores.is_none() {
            while core.poll_payload().is_some() {}
        }
        let mut payload = (!pulls.is_empty()).then(|| core.push_pull_payload());
        if let (Some(payload), Some(stores)) = (payload.as_mut(), node.stores.as_ref()) {
            stores.attach_roots(payload);
        }
        let store_deadline = node.stores.as_ref().map(|s| {
            let at_ms = s.poll_timeout().saturating_sub(WALL_EPOCH_MS);
            Duration::from_millis(at_ms)
        });
        let deadline = core
            .poll_timeout()
            .map(|d| d.saturating_duration_since(self.base).max(self.now));
        let deadline = match (deadline, store_deadline) {
            (Some(a), Some(b)) => Some(a.min(b).max(self.now)),
            (a, b) => a.or(b).map(|d| d.max(self.now)),
        };
        if let Some(d) = deadline {
            if node.wake_at != Some(d) {
                node.wake_at = Some(d);
                self.schedule(d, Dest::Node(i, epoch), Input::Wake);
            }
        }
        for t in sends {
            self.stats.datagrams_sent += 1;
            self.stats.bytes_sent += t.payload.len() as u64;
            if !self.can_talk(i, t.dst)
                || (self.net.loss > 0.0 && self.rng.random_bool(self.net.loss.min(1.0)))
            {
                self.stats.datagrams_lost += 1;
                continue;
            }
            // Most runs set no slow link: skip the lookup on this hot path then.
            let link = if self.link_latency.is_empty() {
                Duration::ZERO
            } else {
                let key = (from, t.dst);
                self.link_latency.get(&key).copied().unwrap_or_default()
            };
            if self.net.duplicate > 0.0 && self.rng.random_bool(self.net.duplicate.min(1.0)) {
                self.stats.datagrams_duplicated += 1;
                self.deliver(from, t.dst, link, t.payload.clone());
            }
            self.deliver(from, t.dst, link, t.payload);
        }
        if let Some(payload) = payload {
            for request in pulls {
                self.send_push_pull(i, epoch, request, payload.clone());
            }
        }
        if lookup {
            let at = self.now + LOOKUP_TIME;
            self.schedule(at, Dest::Node(i, epoch), Input::SeedsResolved);
        }
        for peer in sync_with {
            self.start_store_sync(i, peer);
        }
        // Members back from DOWN: their side of a healed partition may hold writes ours lack.
        let now_ms = self.wall_ms();
        for peer in events.iter().filter_map(Event::returned) {
            let start = self
                .nodes
                .get_mut(i)
                .and_then(|n| n.stores.as_mut())
                .is_some_and(|stores| stores.member_returned(now_ms));
            if start {
                self.start_store_sync(i, peer);
            }
        }
        for event in events {
            self.invariants.observe(self.now, i, &event);
            self.events.push(SimEvent {
                at: self.now,
                node: i,
                event,
            });
        }
    }
}
