//! [`Stores`]: every named store of this node, the writes made here, the deltas merged from
//! others, and what the driver must do about them (broadcast, persist, tell watchers). The
//! driving contract is written on the `store` module.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::clock::{Clock, Stamp};
use super::codec;
use super::crdt::{Counter, Crdt, Kind, Lww, OrSet, Value};
use super::limits::{over, Bound, StoreLimitError, StoreLimits};
use super::table::{self, Table};
use crate::wire;

/// After a member held DOWN comes back, the next exchange comes this soon (ms), and exchanges
/// with returning members are this far apart.
const SYNC_SOON_MS: u64 = 1_000;
/// Digest rounds that follow the exchange after a member's return, [`SYNC_SOON_MS`] apart,
/// before the interval resumes.
const QUICK_ROUNDS: u32 = 5;

/// The knobs of the stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Size bounds.
    pub limits: StoreLimits,
    /// How long deletes are remembered (tombstones) before they are forgotten. A replica cut
    /// off for longer may bring a deleted key back when it returns.
    pub tombstone_retention_ms: u64,
    /// Local writes are gathered this long before they go out together in one payload.
    pub flush_delay_ms: u64,
    /// A payload goes out at once when its deltas reach this many bytes (it must ride in one
    /// datagram beside a probe).
    pub payload_bytes: usize,
    /// How often the roots digest goes to one random member, which starts anti-entropy with
    /// us if its stores differ (besides the exchanges that the store roots carried by
    /// membership's push-pulls start). A node without stores sends its digest too.
    pub sync_interval_ms: u64,
    /// How often tombstones are collected.
    pub collect_interval_ms: u64,
    /// The caller keeps the stores on disk: changed keys are handed out by
    /// [`Stores::poll_persist`] (otherwise nothing is).
    pub persist: bool,
    /// Stores whose deltas learned from others are not gossiped on: the writer's direct send
    /// (to every member up to SWIM's announce fan-out) and its own gossip carry them, and
    /// anti-entropy repairs what those missed. Relaying costs ~10× the bytes at N = 100; for
    /// bulky state of one writer per key (the runtime's vitals) the repair delay is worth it.
    pub unrelayed: Vec<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            limits: StoreLimits::default(),
            tombstone_retention_ms: 60 * 60 * 1000,
            flush_delay_ms: 10,
            payload_bytes: 1000,
            sync_interval_ms: 10_000,
            collect_interval_ms: 60_000,
            persist: false,
            unrelayed: Vec::new(),
        }
    }
}

/// A write to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Set an `lww` key to this JSON text.
    Put(Vec<u8>),
    /// Delete the key: an `lww` tombstone, a counter reset to zero, a set emptied.
    Delete,
    /// Add to a `counter` key (negative: subtract).
    Incr(i64),
    /// Add a member to a `set` key.
    Add(String),
    /// Remove a member from a `set` key.
    Remove(String),
}

impl Op {
    /// The kind of store the operation needs (`None`: any).
    fn kind(&self) -> Option<Kind> {
        match self {
            Op::Put(_) => Some(Kind::Lww),
            Op::Delete => None,
            Op::Incr(_) => Some(Kind::Counter),
            Op::Add(_) | Op::Remove(_) => Some(Kind::Set),
        }
    }
}

/// Why a write was refused (nothing changed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The store holds another kind (HTTP 409).
    WrongKind {
        /// The store's kind.
        store: Kind,
        /// The kind the operation needs.
        wanted: Kind,
    },
    /// Delete of a key that is not present, or of a store that does not exist (HTTP 404).
    NotFound,
    /// A name, key, member or value breaks a bound (HTTP 400, or 413 for sizes).
    Limit(StoreLimitError),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::WrongKind { store, wanted } => write!(
                f,
                "the store holds {store} keys; this operation needs a {wanted} store"
            ),
            WriteError::NotFound => write!(f, "no such key"),
            WriteError::Limit(e) => e.fmt(f),
        }
    }
}

/// What a write left: the key's value (`None` once deleted) and the stamp of the write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The key.
    pub key: String,
    /// Its value now; `None` when the key is no longer present (deleted, or a set emptied).
    pub value: Option<Value>,
    /// The key's version after the write.
    pub version: Stamp,
}

/// A key as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryView {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Value,
    /// The stamp of the latest change merged.
    pub version: Stamp,
}

/// A store as `GET /ha/stores` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSummary {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Keys present.
    pub keys: usize,
    /// Bytes held (deleted keys still remembered included).
    pub bytes: usize,
}

/// A change of a key's visible value, for watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The store.
    pub store: String,
    /// Its kind.
    pub kind: Kind,
    /// The key.
    pub key: String,
    /// The new value; `None` when the key was deleted.
    pub value: Option<Value>,
    /// The stamp of the change.
    pub version: Option<Stamp>,
    /// Written at this node (else merged from another).
    pub local: bool,
}

/// A payload of deltas for SWIM to carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    /// An encoded `StoreDeltas`.
    pub payload: Vec<u8>,
    /// Writes of this node: sent at once to every member SWIM can reach (up to its announce
    /// fan-out), then gossiped. Otherwise deltas learned from others, gossiped on.
    pub local: bool,
}

/// A key whose stored state changed, for the persistence layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persist {
    /// The store.
    pub store: String,
    /// The key.
    pub key: String,
    /// The encoded `StoreEntry`, or `None` when the key was forgotten.
    pub entry: Option<Vec<u8>>,
}

/// What a periodic anti-entropy round asks of the caller, with one random live member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncRound {
    /// Send it [`Stores::digest_payload`]; it starts an exchange with us if its stores differ.
    Digest,
    /// Start an exchange with it ([`Stores::sync_start`]): a member came back from DOWN.
    Exchange,
}

/// What one gossip payload did here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Entries that changed something here.
    pub merged: usize,
    /// The payload carried the sender's roots digest and it is not ours: an anti-entropy
    /// exchange with the sender would repair something.
    pub stores_differ: bool,
}

/// Running counters of the stores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Local writes applied.
    pub writes: u64,
    /// Local writes refused, by reason (a bound's name, `wrong_kind`, `not_found`).
    pub writes_refused: BTreeMap<&'static str, u64>,
    /// Entries received by gossip or anti-entropy.
    pub entries_received: u64,
    /// Of those, entries that changed something here.
    pub entries_applied: u64,
    /// Entries or messages from the network refused, by reason.
    pub entries_refused: BTreeMap<&'static str, u64>,
    /// Payloads handed to SWIM.
    pub payloads_sent: u64,
    /// Roots digests sent to a random member (the periodic comparison).
    pub digests_sent: u64,
    /// Anti-entropy exchanges this node started or served.
    pub syncs: u64,
    /// Bytes of anti-entropy messages sent and received.
    pub sync_bytes: u64,
    /// Keys forgotten after their tombstone retention.
    pub collected: u64,
}

/// Every store of this node. See the module docs.
#[derive(Debug)]
pub struct Stores {
    pub(super) config: StoreConfig,
    pub(super) clock: Clock,
    /// This process lifetime's name as a writer (`name@start_ms`).
    replica: Arc<str>,
    pub(super) tables: BTreeMap<String, Table>,
    pub(super) bytes: usize,
    /// Local deltas not yet handed out (those of one key merged into one), their encoded
    /// sizes, and when they must go.
    pending: BTreeMap<(String, String), (Crdt, usize)>,
    pending_bytes: usize,
    flush_at: Option<u64>,
    next_sync_at: u64,
    /// The round that came due, until the caller takes it.
    sync_due: Option<SyncRound>,
    /// The next round was brought forward by a member's return: an exchange, not a digest.
    next_round_exchanges: bool,
    /// Rounds left that follow each other [`SYNC_SOON_MS`] apart after a member's return.
    quick_rounds_left: u32,
    /// When an exchange with a member back from DOWN last started.
    last_return_sync_ms: Option<u64>,
    /// When the anti-entropy exchange this node started began, while it runs.
    pub(super) sync_started_ms: Option<u64>,
    next_collect_at: u64,
    broadcasts: VecDeque<Broadcast>,
    changes: VecDeque<Change>,
    dirty: BTreeSet<(String, String)>,
    pub(super) stats: StoreStats,
}

impl Stores {
    /// Empty stores for the node `name`, started at wall time `now_ms`.
    pub fn new(config: StoreConfig, name: &str, now_ms: u64) -> Self {
        let replica: Arc<str> = format!("{name}@{now_ms}").into();
        Stores {
            next_sync_at: now_ms + config.sync_interval_ms,
            next_collect_at: now_ms + config.collect_interval_ms,
            config,
            clock: Clock::new(&replica),
            replica,
            tables: BTreeMap::new(),
            bytes: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            flush_at: None,
            sync_due: None,
            next_round_exchanges: false,
            quick_rounds_left: 0,
            last_return_sync_ms: None,
            sync_started_ms: None,
            broadcasts: VecDeque::new(),
            changes: VecDeque::new(),
            dirty: BTreeSet::new(),
            stats: StoreStats::default(),
        }
    }

    /// Takes in entries persisted by an earlier run (as given by [`Persist`]), quietly: no
    /// change, broadcast or persist comes of them. Returns how many were loaded, and the
    /// errors of those that were not (each names the key).
    pub fn load<'a>(
        &mut self,
        now_ms: u64,
        entries: impl IntoIterator<Item = &'a [u8]>,
    ) -> (usize, Vec<String>) {
        let mut loaded = 0;
        let mut errors = Vec::new();
        for bytes in entries {
            match codec::decode_entry(bytes, &self.config.limits) {
                Ok((store, key, crdt)) => {
                    self.observe(&crdt, now_ms);
                    match self.merge_entry(&store, &key, &crdt) {
                        Ok(_) => loaded += 1,
                        Err(e) => errors.push(format!("{store}/{key}: {e}")),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        self.changes.clear();
        self.dirty.clear();
        (loaded, errors)
    }

    /// Applies a write made at this node at wall time `now_ms`; its delta goes out with the
    /// next payload. Returns the key's new value and version.
    pub fn write(
        &mut self,
        now_ms: u64,
        store: &str,
        key: &str,
        op: Op,
    ) -> Result<Written, WriteError> {
        let result = self.try_write(now_ms, store, key, op);
        match &result {
            Ok(_) => self.stats.writes += 1,
            Err(e) => {
                let reason = match e {
                    WriteError::WrongKind { .. } => "wrong_kind",
                    WriteError::NotFound => "not_found",
                    WriteError::Limit(limit) => limit.reason(),
                };
                *self.stats.writes_refused.entry(reason).or_default() += 1;
            }
        }
        result
    }

    fn try_write(
        &mut self,
        now_ms: u64,
        store: &str,
        key: &str,
        op: Op,
    ) -> Result<Written, WriteError> {
        let limits = &self.config.limits;
        limits.check_store_name(store).map_err(WriteError::Limit)?;
        limits.check_key(key).map_err(WriteError::Limit)?;
        match &op {
            Op::Put(json) => limits.check_value(json).map_err(WriteError::Limit)?,
            Op::Add(member) | Op::Remove(member) => {
                limits.check_member(member).map_err(WriteError::Limit)?;
            }
            Op::Delete | Op::Incr(_) => {}
        }
        let kind = match (self.tables.get(store).map(Table::kind), op.kind()) {
            (Some(held), Some(wanted)) if held != wanted => {
                return Err(WriteError::WrongKind {
                    store: held,
                    wanted,
                })
            }
            (Some(held), _) => held,
            (None, Some(wanted)) => wanted,
            (None, None) => return Err(WriteError::NotFound),
        };
        let current = self
            .tables
            .get(store)
            .and_then(|t| t.get(key))
            .map(|s| s.crdt.clone());
        if op == Op::Delete && !current.as_ref().is_some_and(Crdt::is_present) {
            return Err(WriteError::NotFound);
        }
        let stamp = self.clock.tick(now_ms);
        let (state, delta) = apply_op(current, kind, op, &self.replica, stamp.clone())?;
        let slot = table::slot(store, key, state);
        self.check_room(store, key, slot.bytes)?;
        let value = slot.crdt.value();
        self.commit(store, key, slot, true);
        self.queue_local(now_ms, store, key, delta);
        Ok(Written {
            key: key.to_owned(),
            value,
            version: stamp,
        })
    }

    /// Refuses a state of `size` bytes that breaks the entry, key-count, store-count or
    /// total-bytes bound.
    fn check_room(&self, store: &str, key: &str, size: usize) -> Result<(), WriteError> {
        let limits = &self.config.limits;
        let table = self.tables.get(store);
        if table.is_none() {
            over(Bound::Stores, self.tables.len() + 1, limits.max_stores)
                .map_err(WriteError::Limit)?;
        }
        let held = table.and_then(|t| t.get(key));
        if held.is_none() {
            let keys = table.map_or(0, Table::len) + 1;
            over(Bound::KeysPerStore, keys, limits.max_keys_per_store)
                .map_err(WriteError::Limit)?;
        }
        over(Bound::Entry, size, limits.max_entry_bytes).map_err(WriteError::Limit)?;
        let total = self.bytes - held.map_or(0, |s| s.bytes) + size;
        over(Bound::TotalBytes, total, limits.max_bytes).map_err(WriteError::Limit)
    }

    /// Merges `crdt` into `store`/`key`, creating the store for its kind; returns whether
    /// anything changed. Refuses another kind than the store's and states over the bounds
    /// (with twice the entry bound: concurrent writers may each stay within it).
    pub(super) fn merge_entry(
        &mut self,
        store: &str,
        key: &str,
        crdt: &Crdt,
    ) -> Result<bool, &'static str> {
        let limits = &self.config.limits;
        let table = self.tables.get(store);
        if table.is_some_and(|t| t.kind() != crdt.kind()) {
            return Err("wrong_kind");
        }
        let mut state = match table.and_then(|t| t.get(key)) {
            Some(slot) => slot.crdt.clone(),
            None => {
                if table.is_none() && self.tables.len() >= limits.max_stores {
                    return Err(Bound::Stores.as_str());
                }
                if table.map_or(0, Table::len) >= limits.max_keys_per_store {
                    return Err(Bound::KeysPerStore.as_str());
                }
                // Even a tombstone for a key never seen is kept: it must win over an older
                // write that may still arrive.
                empty(crdt.kind())
            }
        };
        let changed = state.merge(crdt).ok_or("wrong_kind")?;
        let is_new = table.and_then(|t| t.get(key)).is_none();
        if !changed && !is_new {
            return Ok(false);
        }
        let slot = table::slot(store, key, state);
        if slot.bytes > limits.max_entry_bytes * 2 {
            return Err(Bound::Entry.as_str());
        }
        let held = self
            .tables
            .get(store)
            .and_then(|t| t.get(key))
            .map_or(0, |s| s.bytes);
        if self.bytes - held + slot.bytes > limits.max_bytes {
            return Err(Bound::TotalBytes.as_str());
        }
        self.commit(store, key, slot, false);
        Ok(true)
    }

    /// Stores a key's new state: sizes, hashes, the change for watchers, the persist mark.
    fn commit(&mut self, store: &str, key: &str, slot: table::Slot, local: bool) {
        let kind = slot.crdt.kind();
        let table = self
            .tables
            .entry(store.to_owned())
            .or_insert_with(|| Table::new(kind));
        let before = table.get(key).and_then(|s| s.crdt.value());
        let after = slot.crdt.value();
        let version = slot.crdt.version().cloned();
        let grown = table.put(key, slot);
        self.bytes = self.bytes.saturating_add_signed(grown);
        self.mark_dirty(store, key);
        if before != after {
            self.changes.push_back(Change {
                store: store.to_owned(),
                kind,
                key: key.to_owned(),
                value: after,
                version,
                local,
            });
        }
    }

    /// Notes that `key` must be written to disk, when the stores are persisted.
    fn mark_dirty(&mut self, store: &str, key: &str) {
        if self.config.persist {
            self.dirty.insert((store.to_owned(), key.to_owned()));
        }
    }

    /// Gathers a local delta into the pending payload, merged with a pending delta of the
    /// same key (a delta is a state: the join carries both); a full payload goes out at once.
    fn queue_local(&mut self, now_ms: u64, store: &str, key: &str, delta: Crdt) {
        let slot = (store.to_owned(), key.to_owned());
        let merged = match self.pending.remove(&slot) {
            Some((mut held, len)) => {
                self.pending_bytes -= len;
                held.merge(&delta);
                held
            }
            None => delta,
        };
        let len = codec::encode_entry(store, key, &merged).len();
        if self.pending_bytes + len > self.config.payload_bytes && !self.pending.is_empty() {
            self.flush();
        }
        self.pending.insert(slot, (merged, len));
        self.pending_bytes += len;
        if self.pending_bytes >= self.config.payload_bytes {
            self.flush();
        } else if self.flush_at.is_none() {
            self.flush_at = Some(now_ms + self.config.flush_delay_ms);
        }
    }

    /// Hands the pending local deltas out as one payload.
    fn flush(&mut self) {
        self.flush_at = None;
        self.pending_bytes = 0;
        if self.pending.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((store, key), (delta, _))| codec::entry_to_wire(&store, &key, &delta))
            .collect();
        self.push_broadcast(codec::encode_deltas(entries), true);
    }

    fn push_broadcast(&mut self, payload: Vec<u8>, local: bool) {
        self.stats.payloads_sent += 1;
        self.broadcasts.push_back(Broadcast { payload, local });
    }

    /// Merges a gossip payload (an encoded `StoreDeltas`) received at wall time `now_ms`. The
    /// entries that changed something are handed out again as a payload to gossip on; entries
    /// that break a bound are refused and counted. A payload carrying the sender's roots digest
    /// (see [`Stores::digest_payload`]) is compared with ours.
    pub fn handle_payload(&mut self, now_ms: u64, payload: &[u8]) -> Received {
        let deltas = match codec::decode_deltas(payload) {
            Ok(deltas) => deltas,
            Err(_) => {
                self.count_refused("malformed");
                return Received::default();
            }
        };
        let mut applied = self.merge_wire(now_ms, deltas.entries);
        let merged = applied.len();
        applied.retain(|entry| !self.config.unrelayed.contains(&entry.store));
        if !applied.is_empty() {
            self.push_broadcast(codec::encode_deltas(applied), false);
        }
        let stores_differ = deltas
            .roots_digest
            .is_some_and(|theirs| theirs != self.roots_digest());
        Received {
            merged,
            stores_differ,
        }
    }

    /// Merges entries from the network; returns those that changed something.
    pub(super) fn merge_wire(
        &mut self,
        now_ms: u64,
        entries: Vec<wire::StoreEntry>,
    ) -> Vec<wire::StoreEntry> {
        let mut applied = Vec::new();
        for entry in entries {
            self.stats.entries_received += 1;
            let (store, key, crdt) =
                match codec::entry_from_wire(entry.clone(), &self.config.limits) {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        self.count_refused(e.reason());
                        continue;
                    }
                };
            self.observe(&crdt, now_ms);
            match self.merge_entry(&store, &key, &crdt) {
                Ok(true) => {
                    self.stats.entries_applied += 1;
                    applied.push(entry);
                }
                Ok(false) => {}
                Err(reason) => self.count_refused(reason),
            }
        }
        applied
    }

    /// Advances the clock past the stamps of `crdt`, so later local writes order after it.
    fn observe(&mut self, crdt: &Crdt, now_ms: u64) {
        if let Some(stamp) = crdt.version() {
            self.clock.observe(stamp, now_ms);
        }
    }

    /// A member this node held DOWN is ALIVE again (a partition healed, a node came back): its
    /// side may hold writes ours lacks. True when the caller should start an exchange with it
    /// at once: one per [`SYNC_SOON_MS`], since a healed partition brings members back by the
    /// dozen and exchanges side by side would fetch the same entries (measured at N = 100 with
    /// 1,000 keys differing: 1.8 times the bytes that differ with three at once, 1.1 with one,
    /// both settled 0.5 s after healing). The next periodic exchange comes soon either way.
    pub fn member_returned(&mut self, now_ms: u64) -> bool {
        self.sync_soon(now_ms);
        if self
            .last_return_sync_ms
            .is_some_and(|at| now_ms < at + SYNC_SOON_MS)
        {
            return false;
        }
        self.last_return_sync_ms = Some(now_ms);
        true
    }

    /// Brings the next round forward to within [`SYNC_SOON_MS`], and makes it an exchange
    /// rather than a digest: a member held DOWN is back, so a partition may have healed and the
    /// stores likely differ. The [`QUICK_ROUNDS`] rounds after it follow as quickly, digests
    /// then: a node whose exchange met a peer as empty as itself asks again a second later, not
    /// an interval later (measured at N = 100, 100 keys differing after a cut: one state 21.4 s
    /// after healing with digests on the interval only, 3.6 s with these rounds). (An exchange
    /// that brought news does not bring rounds forward: under a steady write load every
    /// exchange finds writes still in flight, and exchanges one after the other would chase
    /// them.)
    fn sync_soon(&mut self, now_ms: u64) {
        let soon = now_ms + SYNC_SOON_MS.min(self.config.sync_interval_ms);
        self.next_sync_at = self.next_sync_at.min(soon);
        self.next_round_exchanges = true;
        self.quick_rounds_left = QUICK_ROUNDS;
    }

    pub(super) fn count_refused(&mut self, reason: &'static str) {
        *self.stats.entries_refused.entry(reason).or_default() += 1;
    }

    /// Fires what is due at wall time `now_ms`: the pending payload, a periodic anti-entropy
    /// (see [`Stores::poll_sync`]) and tombstone collection.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.flush_at.is_some_and(|at| at <= now_ms) {
            self.flush();
        }
        if self.next_sync_at <= now_ms {
            let interval = if self.quick_rounds_left > 0 {
                self.quick_rounds_left -= 1;
                SYNC_SOON_MS.min(self.config.sync_interval_ms)
            } else {
                self.config.sync_interval_ms
            };
            self.next_sync_at = now_ms + interval.max(1);
            let round = if std::mem::take(&mut self.next_round_exchanges) {
                SyncRound::Exchange
            } else {
                SyncRound::Digest
            };
            // Also without stores: a node that lacks everything (a side of a cut that wrote
            // nothing) must ask, or it waits for a member to happen to pick it.
            self.sync_due = Some(round);
        }
        if self.next_collect_at <= now_ms {
            self.next_collect_at = now_ms + self.config.collect_interval_ms.max(1);
            self.collect(now_ms);
        }
    }

    /// Forgets keys whose deletes are older than the tombstone retention, and the removed
    /// dots of sets.
    fn collect(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.config.tombstone_retention_ms);
        let mut changed: Vec<(String, String, Option<Crdt>)> = Vec::new();
        for (name, table) in &self.tables {
            for (key, slot) in table.iter() {
                let mut crdt = slot.crdt.clone();
                if crdt.collect(horizon) {
                    changed.push((name.clone(), key.clone(), None));
                } else if crdt != slot.crdt {
                    changed.push((name.clone(), key.clone(), Some(crdt)));
                }
            }
        }
        for (store, key, crdt) in changed {
            match crdt {
                None => {
                    if let Some(table) = self.tables.get_mut(&store) {
                        self.bytes -= table.remove(&key);
                    }
                    self.stats.collected += 1;
                    self.mark_dirty(&store, &key);
                }
                Some(crdt) => {
                    let slot = table::slot(&store, &key, crdt);
                    self.commit(&store, &key, slot, false);
                }
            }
        }
        self.tables.retain(|_, t| !t.is_empty());
    }

    /// The earliest wall time [`Stores::handle_timeout`] must be called at.
    pub fn poll_timeout(&self) -> u64 {
        let next = self.next_sync_at.min(self.next_collect_at);
        self.flush_at.map_or(next, |at| at.min(next))
    }

    /// Next payload to hand to SWIM, if any.
    pub fn poll_broadcast(&mut self) -> Option<Broadcast> {
        self.broadcasts.pop_front()
    }

    /// Next change of a key's visible value, if any.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// Next key whose state must be written to disk, with that state, if any.
    pub fn poll_persist(&mut self) -> Option<Persist> {
        let (store, key) = self.dirty.pop_first()?;
        let entry = self
            .tables
            .get(&store)
            .and_then(|t| t.get(&key))
            .map(|slot| codec::encode_entry(&store, &key, &slot.crdt));
        Some(Persist { store, key, entry })
    }

    /// The round due once per `sync_interval`, if any: see [`SyncRound`].
    pub fn poll_sync(&mut self) -> Option<SyncRound> {
        self.sync_due.take()
    }

    /// One key as the API shows it; `None` if absent or deleted.
    pub fn view(&self, store: &str, key: &str) -> Option<EntryView> {
        let slot = self.tables.get(store)?.get(key)?;
        Some(EntryView {
            key: key.to_owned(),
            value: slot.crdt.value()?,
            version: slot.crdt.version()?.clone(),
        })
    }

    /// Every present key of `store`, in key order; `None` if the store does not exist.
    pub fn entries(&self, store: &str) -> Option<(Kind, Vec<EntryView>)> {
        let table = self.tables.get(store)?;
        let views = table
            .iter()
            .filter_map(|(key, slot)| {
                Some(EntryView {
                    key: key.clone(),
                    value: slot.crdt.value()?,
                    version: slot.crdt.version()?.clone(),
                })
            })
            .collect();
        Some((table.kind(), views))
    }

    /// Every store, in name order.
    pub fn summaries(&self) -> Vec<StoreSummary> {
        self.tables
            .iter()
            .map(|(name, t)| StoreSummary {
                name: name.clone(),
                kind: t.kind(),
                keys: t.present(),
                bytes: t.bytes(),
            })
            .collect()
    }

    /// Bytes `key` of `store` is counted for (its encoded state and its key), if held.
    pub fn entry_bytes(&self, store: &str, key: &str) -> Option<usize> {
        Some(self.tables.get(store)?.get(key)?.bytes)
    }

    /// Keys present in `store` (0 if it does not exist).
    pub fn key_count(&self, store: &str) -> usize {
        self.tables.get(store).map_or(0, Table::present)
    }

    /// Bytes of all stores.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Running counters.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// This process lifetime's writer name.
    pub fn replica(&self) -> &str {
        &self.replica
    }
}

/// The empty state of `kind`.
fn empty(kind: Kind) -> Crdt {
    match kind {
        Kind::Lww => Crdt::Lww(Lww::write(Stamp::new(0, 0, ""), None)),
        Kind::Counter => Crdt::Counter(Counter::default()),
        Kind::Set => Crdt::Set(OrSet::default()),
    }
}

/// Applies `op` to a key's state (`current`, or empty); returns the new state and the delta.
fn apply_op(
    current: Option<Crdt>,
    kind: Kind,
    op: Op,
    replica: &Arc<str>,
    stamp: Stamp,
) -> Result<(Crdt, Crdt), WriteError> {
    let mut state = current.unwrap_or_else(|| empty(kind));
    let delta = match (&mut state, op) {
        (Crdt::Lww(r), Op::Put(json)) => {
            *r = Lww::write(stamp, Some(json));
            Crdt::Lww(r.clone())
        }
        (Crdt::Lww(r), Op::Delete) => {
            *r = Lww::write(stamp, None);
            Crdt::Lww(r.clone())
        }
        (Crdt::Counter(c), Op::Incr(by)) => Crdt::Counter(c.add(replica, by, stamp)),
        (Crdt::Counter(c), Op::Delete) => Crdt::Counter(c.delete(stamp)),
        (Crdt::Set(s), Op::Add(member)) => {
            // Re-adding a present member replaces its dots, so they do not pile up.
            let mut delta = s.remove(&member, stamp.clone()).unwrap_or_default();
            delta.merge(&s.add(&member, stamp));
            Crdt::Set(delta)
        }
        (Crdt::Set(s), Op::Remove(member)) => {
            Crdt::Set(s.remove(&member, stamp).ok_or(WriteError::NotFound)?)
        }
        (Crdt::Set(s), Op::Delete) => Crdt::Set(s.clear(stamp).ok_or(WriteError::NotFound)?),
        (held, op) => {
            return Err(WriteError::WrongKind {
                store: held.kind(),
                wanted: op.kind().unwrap_or(held.kind()),
            })
        }
    };
    Ok((state, delta))
}
