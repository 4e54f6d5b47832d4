//! One named store: its keys' states, each with the hashes anti-entropy compares and its size,
//! and the XOR of all content hashes (the store's root) kept up to date on every change.

use std::collections::BTreeMap;

use super::codec;
use super::crdt::{Crdt, Kind};
use super::hash;

/// One key's state and what is derived from it.
#[derive(Clone, Debug)]
pub struct Slot {
    /// The replicated state.
    pub crdt: Crdt,
    /// Hash of the canonical encoding (store, key and state): equal hashes, equal states.
    pub hash: u64,
    /// Hash of the store and key only: picks the key's bucket.
    pub location: u64,
    /// Bytes the slot is counted for against the limits (its encoding).
    pub bytes: usize,
}

/// One store. See the module docs.
#[derive(Clone, Debug)]
pub struct Table {
    kind: Kind,
    slots: BTreeMap<String, Slot>,
    root: u64,
    bytes: usize,
    present: usize,
}

impl Table {
    /// An empty store of `kind`.
    pub fn new(kind: Kind) -> Self {
        Table {
            kind,
            slots: BTreeMap::new(),
            root: 0,
            bytes: 0,
            present: 0,
        }
    }

    /// The CRDT kind of every key.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Keys held, deleted ones still remembered included.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Keys whose value is present (not deleted).
    pub fn present(&self) -> usize {
        self.present
    }

    /// Bytes of all slots.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// XOR of every slot's content hash.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The state of `key`.
    pub fn get(&self, key: &str) -> Option<&Slot> {
        self.slots.get(key)
    }

    /// Every key and its slot, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Slot)> {
        self.slots.iter()
    }

    /// Stores `slot` as `key`'s state; returns the bytes the store grew by (negative: shrank).
    pub fn put(&mut self, key: &str, slot: Slot) -> isize {
        let added = slot.bytes as isize;
        self.root ^= slot.hash;
        self.bytes += slot.bytes;
        self.present += usize::from(slot.crdt.is_present());
        let removed = match self.slots.insert(key.to_owned(), slot) {
            Some(old) => self.forget(&old),
            None => 0,
        };
        added - removed as isize
    }

    /// Forgets `key`; returns the bytes freed.
    pub fn remove(&mut self, key: &str) -> usize {
        match self.slots.remove(key) {
            Some(old) => self.forget(&old),
            None => 0,
        }
    }

    /// Takes a slot that left the table out of the root, size and count; returns its bytes.
    fn forget(&mut self, old: &Slot) -> usize {
        self.root ^= old.hash;
        self.bytes -= old.bytes;
        self.present -= usize::from(old.crdt.is_present());
        old.bytes
    }

    /// The `2^bits` bucket hashes: each the XOR of the content hashes of its keys.
    pub fn buckets(&self, bits: u32) -> Vec<u64> {
        let mut out = vec![0u64; 1 << bits];
        for slot in self.slots.values() {
            out[hash::bucket(slot.location, bits)] ^= slot.hash;
        }
        out
    }

    /// The keys in the buckets `indexes` of `2^bits`, with their slots, in one pass over the
    /// store (an exchange may name thousands of buckets). Indexes out of range are ignored.
    pub fn in_buckets<'a>(
        &'a self,
        bits: u32,
        indexes: &[u32],
    ) -> impl Iterator<Item = (&'a String, &'a Slot)> + 'a {
        let mut wanted = vec![false; 1 << bits];
        for &i in indexes {
            if let Some(w) = wanted.get_mut(i as usize) {
                *w = true;
            }
        }
        self.slots
            .iter()
            .filter(move |(_, s)| wanted[hash::bucket(s.location, bits)])
    }
}

/// The slot `key` of `store` has with `crdt`: hashes and size (one encoding of the state).
pub fn slot(store: &str, key: &str, crdt: Crdt) -> Slot {
    let encoded = codec::encode_entry(store, key, &crdt);
    Slot {
        hash: hash::hash(&[&encoded]),
        location: location(store, key),
        bytes: encoded.len() + key.len(),
        crdt,
    }
}

/// The location hash of `key` in store `store`.
pub fn location(store: &str, key: &str) -> u64 {
    hash::hash(&[store.as_bytes(), key.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::clock::Stamp;
    use crate::store::crdt::Lww;

    fn lww(wall: u64, v: &str) -> Crdt {
        Crdt::Lww(Lww::write(
            Stamp::new(wall, 0, "n@1"),
            Some(v.as_bytes().to_vec()),
        ))
    }

    #[test]
    fn the_root_and_size_follow_every_change_in_any_order() {
        let mut a = Table::new(Kind::Lww);
        let mut b = Table::new(Kind::Lww);
        for (key, wall) in [("x", 1), ("y", 2), ("z", 3)] {
            let slot = slot("s", key, lww(wall, key));
            a.put(key, slot);
        }
        for (key, wall) in [("z", 3), ("x", 1), ("y", 2)] {
            let slot = slot("s", key, lww(wall, key));
            b.put(key, slot);
        }
        assert_eq!(a.root(), b.root());
        assert_eq!(a.bytes(), b.bytes());
        let slot = slot("s", "y", lww(9, "changed"));
        a.put("y", slot);
        assert_ne!(a.root(), b.root());
        let bytes_before = a.bytes();
        a.remove("y");
        b.remove("y");
        assert_eq!(a.root(), b.root());
        assert!(a.bytes() < bytes_before);
        assert_eq!(a.buckets(3), b.buckets(3));
        assert_eq!(a.buckets(0), vec![a.root()]);
    }

    #[test]
    fn a_key_lands_in_the_same_bucket_whatever_its_state() {
        let (one, two) = (slot("s", "k", lww(1, "a")), slot("s", "k", lww(2, "b")));
        assert_eq!(one.location, two.location);
        assert_ne!(one.hash, two.hash);
    }
}
