//! Anti-entropy between two nodes' stores, as plain message handling: the starter sends the
//! roots of its stores, and each answer tells it the next step (see `StoreSync` in
//! `proto/mesh.proto`). The responder keeps no state between steps. In steady state one
//! exchange of roots; when a few keys differ, the key hashes of their buckets and their
//! entries, never the whole store.

use std::collections::{BTreeMap, HashMap};

use super::codec::{self, MessageError};
use super::crdt::Kind;
use super::hash;
use super::stores::Stores;
use crate::wire;
use crate::wire::store_sync::Step;

/// Longest an exchange this node started may run before another may start (its three steps
/// are each bounded by the exchange timeout, seconds).
pub const SYNC_TIMEOUT_MS: u64 = 10_000;

/// Most bucket bits: 4,096 buckets (32 KiB of hashes) for the largest stores.
const MAX_BITS: u32 = 12;

/// Keys per bucket aimed at: fewer means more bucket hashes to send, more means more key
/// hashes for each differing bucket.
const KEYS_PER_BUCKET: u64 = 8;

/// An answer's entries stop at this many bytes; what is left waits for the next sync.
const MAX_ENTRY_BYTES_PER_STEP: usize = codec::MAX_SYNC_BYTES / 2;

/// Bucket bits for a store of `keys` keys.
fn bits_for(keys: u64) -> u32 {
    let buckets = keys.div_ceil(KEYS_PER_BUCKET).max(1);
    (64 - (buckets - 1).leading_zeros()).min(MAX_BITS)
}

impl Stores {
    /// The first message of an anti-entropy exchange with one peer (the roots of every store),
    /// or `None` while an exchange this node started is still running: two side by side would
    /// fetch the same entries. An exchange runs until [`Stores::handle_sync_reply`] ends it,
    /// [`Stores::sync_failed`] says it broke off, or [`SYNC_TIMEOUT_MS`] passes.
    pub fn sync_start(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        if self
            .sync_started_ms
            .is_some_and(|at| now_ms < at + SYNC_TIMEOUT_MS)
        {
            return None;
        }
        self.sync_started_ms = Some(now_ms);
        self.stats.syncs += 1;
        let roots = self.roots();
        Some(self.sent(codec::encode_sync(Step::Roots(roots))))
    }

    /// The exchange this node started broke off (no answer, a refused connection).
    pub fn sync_failed(&mut self) {
        self.sync_started_ms = None;
    }

    /// The kind, key count and root hash of every store, in name order.
    pub fn roots(&self) -> wire::StoreRoots {
        let stores = self
            .tables
            .iter()
            .map(|(name, t)| wire::StoreRoot {
                store: name.clone(),
                kind: t.kind().as_str().to_owned(),
                keys: t.len() as u64,
                hash: t.root(),
            })
            .collect();
        wire::StoreRoots { stores }
    }

    /// One hash of every store's name, kind and root, in name order: two nodes whose stores
    /// hold the same states have the same digest.
    pub fn roots_digest(&self) -> u64 {
        let per_store: Vec<[u8; 8]> = self
            .tables
            .iter()
            .map(|(name, t)| {
                let root = t.root().to_le_bytes();
                hash::hash(&[name.as_bytes(), t.kind().as_str().as_bytes(), &root]).to_le_bytes()
            })
            .collect();
        let parts: Vec<&[u8]> = per_store.iter().map(|h| h.as_slice()).collect();
        hash::hash(&parts)
    }

    /// The periodic comparison, as a gossip payload: our roots digest and no entries. Sent to
    /// one random member (see [`Stores::poll_sync`]), whose [`Stores::handle_payload`] says
    /// whether an exchange with us would repair something.
    pub fn digest_payload(&mut self) -> Vec<u8> {
        self.stats.digests_sent += 1;
        codec::encode_digest(self.roots_digest())
    }

    /// Appends the roots to an encoded `PushPull` message (its field 5, as the keyring is
    /// field 4): membership's periodic exchange then tells a peer whether our stores differ.
    pub fn attach_roots(&self, push_pull: &mut Vec<u8>) {
        let extra = wire::PushPull {
            store_roots: Some(self.roots()),
            ..Default::default()
        };
        prost::Message::encode_raw(&extra, push_pull);
    }

    /// True when a peer's `PushPull` message carries store roots that are not ours: an
    /// anti-entropy exchange with it would repair something. False for a message without roots
    /// (an older node) or one that does not decode (the membership core drops it anyway).
    pub fn push_pull_roots_differ(&self, push_pull: &[u8]) -> bool {
        match <wire::PushPullStores as prost::Message>::decode(push_pull) {
            Ok(wire::PushPullStores {
                store_roots: Some(roots),
            }) => self.roots_differ(&roots),
            _ => false,
        }
    }

    /// True when a peer's roots are not ours.
    pub fn roots_differ(&self, theirs: &wire::StoreRoots) -> bool {
        let same = |r: &wire::StoreRoot| {
            self.tables
                .get(&r.store)
                .is_some_and(|t| t.root() == r.hash && t.kind().as_str() == r.kind)
        };
        theirs.stores.len() != self.tables.len() || !theirs.stores.iter().all(same)
    }

    /// Answers one step of a peer's anti-entropy exchange, merging what it carries.
    pub fn serve_sync(&mut self, now_ms: u64, request: &[u8]) -> Result<Vec<u8>, MessageError> {
        self.stats.sync_bytes += request.len() as u64;
        let answer = match codec::decode_sync(request)? {
            Step::Roots(roots) => {
                self.stats.syncs += 1;
                Step::Buckets(self.buckets_differing(&roots))
            }
            Step::Hashes(mut hashes) => {
                let entries = std::mem::take(&mut hashes.entries);
                let answer = self.entries_differing(&hashes);
                self.merge_wire(now_ms, entries);
                Step::Push(answer)
            }
            Step::Push(push) => {
                let answer = self.entries_wanted(&push.want);
                self.merge_wire(now_ms, push.entries);
                Step::Push(answer)
            }
            Step::Buckets(_) => return Err(MessageError::Malformed),
        };
        Ok(self.sent(codec::encode_sync(answer)))
    }

    /// Takes the peer's answer to our last step, merging what it carries; returns the next step
    /// to send, or `None` when the exchange is over.
    pub fn handle_sync_reply(
        &mut self,
        now_ms: u64,
        reply: &[u8],
    ) -> Result<Option<Vec<u8>>, MessageError> {
        self.stats.sync_bytes += reply.len() as u64;
        let step = codec::decode_sync(reply);
        if !matches!(step, Ok(Step::Buckets(_)) | Ok(Step::Push(_))) {
            self.sync_started_ms = None;
        }
        let next = match step? {
            Step::Buckets(digest) => {
                let hashes = self.hashes_of_differing_buckets(&digest)?;
                let worth_sending = !hashes.buckets.is_empty() || !hashes.entries.is_empty();
                worth_sending.then_some(Step::Hashes(hashes))
            }
            Step::Push(push) => {
                self.merge_wire(now_ms, push.entries);
                (!push.want.is_empty()).then(|| Step::Push(self.entries_wanted(&push.want)))
            }
            Step::Roots(_) | Step::Hashes(_) => return Err(MessageError::Malformed),
        };
        if next.is_none() {
            self.sync_started_ms = None;
        }
        Ok(next.map(|step| self.sent(codec::encode_sync(step))))
    }

    fn sent(&mut self, message: Vec<u8>) -> Vec<u8> {
        self.stats.sync_bytes += message.len() as u64;
        message
    }

    /// Responder, step 1: our bucket hashes of every store whose root is not the peer's.
    fn buckets_differing(&self, roots: &wire::StoreRoots) -> wire::StoreDigest {
        let theirs: HashMap<&str, &wire::StoreRoot> =
            roots.stores.iter().map(|r| (r.store.as_str(), r)).collect();
        let mut stores = Vec::new();
        let names = self
            .tables
            .keys()
            .map(String::as_str)
            .chain(theirs.keys().copied());
        let mut seen = std::collections::BTreeSet::new();
        for name in names {
            if !seen.insert(name) {
                continue;
            }
            let mine = self.tables.get(name);
            let root = theirs.get(name);
            let kind = match (mine, root) {
                (Some(t), _) => t.kind().as_str().to_owned(),
                (None, Some(r)) => r.kind.clone(),
                (None, None) => continue,
            };
            let same = match (mine, root) {
                (Some(t), Some(r)) => t.root() == r.hash && t.kind().as_str() == r.kind,
                _ => false,
            };
            if same {
                continue;
            }
            let keys = mine
                .map_or(0, |t| t.len() as u64)
                .max(root.map_or(0, |r| r.keys));
            let bits = bits_for(keys);
            let buckets = mine.map_or_else(|| vec![0; 1 << bits], |t| t.buckets(bits));
            stores.push(wire::StoreBuckets {
                store: name.to_owned(),
                kind,
                bits,
                buckets,
            });
        }
        wire::StoreDigest { stores }
    }

    /// Starter, step 2: our key hashes in every bucket whose hash is not the peer's.
    fn hashes_of_differing_buckets(
        &self,
        digest: &wire::StoreDigest,
    ) -> Result<wire::StoreKeyHashes, MessageError> {
        let mut out = wire::StoreKeyHashes::default();
        for theirs in &digest.stores {
            let valid = theirs.bits <= MAX_BITS && theirs.buckets.len() == 1 << theirs.bits;
            if !valid || theirs.kind.parse::<Kind>().is_err() {
                return Err(MessageError::Malformed);
            }
            let table = self.tables.get(&theirs.store);
            if table.is_some_and(|t| t.kind().as_str() != theirs.kind) {
                continue; // the same name holds another kind there: nothing to reconcile
            }
            let mine = table.map_or_else(|| vec![0; 1 << theirs.bits], |t| t.buckets(theirs.bits));
            let indexes: Vec<u32> = (0..mine.len())
                .filter(|&i| mine[i] != theirs.buckets[i])
                .filter_map(|i| u32::try_from(i).ok())
                .collect();
            // Buckets the peer holds empty get our entries at once: listing their key hashes
            // first would only make it ask for all of them.
            let (empty, indexes): (Vec<u32>, Vec<u32>) = indexes
                .into_iter()
                .partition(|&i| theirs.buckets[i as usize] == 0);
            if let Some(table) = table {
                let mut bytes = 0usize;
                for (key, slot) in table.in_buckets(theirs.bits, &empty) {
                    if bytes < MAX_ENTRY_BYTES_PER_STEP {
                        bytes += slot.bytes;
                        out.entries
                            .push(codec::entry_to_wire(&theirs.store, key, &slot.crdt));
                    }
                }
                let listed = table.in_buckets(theirs.bits, &indexes);
                out.keys
                    .extend(listed.map(|(key, slot)| wire::StoreKeyHash {
                        store: theirs.store.clone(),
                        key: key.clone(),
                        hash: slot.hash,
                    }));
            }
            if indexes.is_empty() {
                continue;
            }
            out.buckets.push(wire::StoreBucketRef {
                store: theirs.store.clone(),
                kind: theirs.kind.clone(),
                bits: theirs.bits,
                indexes,
            });
        }
        Ok(out)
    }

    /// Responder, step 2: our entries the peer lacks or holds otherwise, in the buckets it
    /// listed, and the keys it listed that we lack or hold otherwise.
    fn entries_differing(&self, hashes: &wire::StoreKeyHashes) -> wire::StorePush {
        let mut theirs: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for k in &hashes.keys {
            theirs.insert((k.store.as_str(), k.key.as_str()), k.hash);
        }
        let mut push = wire::StorePush::default();
        let mut bytes = 0usize;
        for bucket_ref in &hashes.buckets {
            if bucket_ref.bits > MAX_BITS {
                continue;
            }
            let Some(table) = self.tables.get(&bucket_ref.store) else {
                continue;
            };
            for (key, slot) in table.in_buckets(bucket_ref.bits, &bucket_ref.indexes) {
                let differs =
                    theirs.get(&(bucket_ref.store.as_str(), key.as_str())) != Some(&slot.hash);
                if differs && bytes < MAX_ENTRY_BYTES_PER_STEP {
                    bytes += slot.bytes;
                    push.entries
                        .push(codec::entry_to_wire(&bucket_ref.store, key, &slot.crdt));
                }
            }
        }
        for ((store, key), hash) in theirs {
            let mine = self.tables.get(store).and_then(|t| t.get(key));
            if mine.map(|s| s.hash) != Some(hash) {
                push.want.push(wire::StoreKeyRef {
                    store: store.to_owned(),
                    key: key.to_owned(),
                });
            }
        }
        push
    }

    /// The entries of `want` that we hold, up to the per-step byte bound.
    fn entries_wanted(&self, want: &[wire::StoreKeyRef]) -> wire::StorePush {
        let mut push = wire::StorePush::default();
        let mut bytes = 0usize;
        for k in want {
            let slot = self.tables.get(&k.store).and_then(|t| t.get(&k.key));
            if let Some(slot) = slot.filter(|_| bytes < MAX_ENTRY_BYTES_PER_STEP) {
                bytes += slot.bytes;
                push.entries
                    .push(codec::entry_to_wire(&k.store, &k.key, &slot.crdt));
            }
        }
        push
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_with_the_store_up_to_the_cap() {
        let cases = [
            (0, 0),
            (8, 0),
            (9, 1),
            (16, 1),
            (17, 2),
            (10_000, 11),
            (1 << 40, MAX_BITS),
        ];
        for (keys, bits) in cases {
            assert_eq!(bits_for(keys), bits, "{keys} keys");
        }
    }
}
