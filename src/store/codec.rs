//! Conversion between the stores' states and their wire messages (`proto/mesh.proto`), with
//! every check the network's input needs: an entry that breaks a [limit](super::limits) or
//! does not fit its kind is refused, never a panic.
//!
//! Encoding is canonical: maps and sets are emitted in sorted order, so one state always has
//! one encoding, and its hash is what anti-entropy compares.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prost::Message;

use super::clock::Stamp;
use super::crdt::counter::Part;
use super::crdt::set::Element;
use super::crdt::{Counter, Crdt, Lww, OrSet};
use super::limits::{over, Bound, StoreLimitError, StoreLimits};
use crate::wire;

/// Largest gossip payload or anti-entropy message accepted, in bytes (the QUIC stream limit).
pub const MAX_SYNC_BYTES: usize = crate::swim::codec::MAX_PUSH_PULL_BYTES;

/// One key's state as sent: its store, key and CRDT.
pub type Entry = (String, String, Crdt);

/// The wire form of one key's state.
pub fn entry_to_wire(store: &str, key: &str, crdt: &Crdt) -> wire::StoreEntry {
    let state = match crdt {
        Crdt::Lww(r) => wire::store_entry::State::Lww(wire::LwwState {
            stamp: Some(stamp_to_wire(&r.stamp)),
            value: r.value.clone().unwrap_or_default(),
            deleted: r.value.is_none(),
        }),
        Crdt::Counter(c) => wire::store_entry::State::Counter(wire::CounterState {
            parts: parts_to_wire(&c.parts),
            reset: parts_to_wire(&c.reset),
            deleted_at: c.deleted_at.as_ref().map(stamp_to_wire),
        }),
        Crdt::Set(s) => wire::store_entry::State::Set(wire::SetState {
            elements: s
                .elements
                .iter()
                .map(|(member, e)| wire::SetElement {
                    member: member.clone(),
                    adds: e.adds.iter().map(stamp_to_wire).collect(),
                    removes: e.removes.iter().map(stamp_to_wire).collect(),
                    removed_at: e.removed_at.as_ref().map(stamp_to_wire),
                })
                .collect(),
        }),
    };
    wire::StoreEntry {
        store: store.to_owned(),
        key: key.to_owned(),
        state: Some(state),
    }
}

/// One key's state from the wire, checked against `limits` (sizes, names, JSON values).
pub fn entry_from_wire(
    entry: wire::StoreEntry,
    limits: &StoreLimits,
) -> Result<Entry, StoreLimitError> {
    limits.check_store_name(&entry.store)?;
    limits.check_key(&entry.key)?;
    let crdt = match entry.state {
        None => return Err(StoreLimitError::Empty("entry state")),
        Some(wire::store_entry::State::Lww(r)) => {
            let value = if r.deleted {
                None
            } else {
                limits.check_value(&r.value)?;
                Some(r.value)
            };
            Crdt::Lww(Lww {
                stamp: stamp_from_wire(r.stamp, limits)?,
                value,
            })
        }
        Some(wire::store_entry::State::Counter(c)) => Crdt::Counter(Counter {
            parts: parts_from_wire(c.parts, limits)?,
            reset: parts_from_wire(c.reset, limits)?,
            deleted_at: c
                .deleted_at
                .map(|s| stamp_from_wire(Some(s), limits))
                .transpose()?,
        }),
        Some(wire::store_entry::State::Set(s)) => {
            let mut set = OrSet::default();
            for e in s.elements {
                limits.check_member(&e.member)?;
                let element = Element {
                    adds: stamps_from_wire(e.adds, limits)?,
                    removes: stamps_from_wire(e.removes, limits)?,
                    removed_at: e
                        .removed_at
                        .map(|s| stamp_from_wire(Some(s), limits))
                        .transpose()?,
                };
                // A repeated member merges: the result is the same state either way.
                set.merge(&OrSet {
                    elements: BTreeMap::from([(e.member, element)]),
                });
            }
            Crdt::Set(set)
        }
    };
    Ok((entry.store, entry.key, crdt))
}

/// The canonical encoding of one key's state (what its hash and size are taken over).
pub fn encode_entry(store: &str, key: &str, crdt: &Crdt) -> Vec<u8> {
    entry_to_wire(store, key, crdt).encode_to_vec()
}

/// Decodes one persisted entry, checked against `limits`; the error says why it is unusable.
pub fn decode_entry(bytes: &[u8], limits: &StoreLimits) -> Result<Entry, String> {
    over(Bound::Entry, bytes.len(), limits.max_entry_bytes * 2).map_err(|e| e.to_string())?;
    let entry = wire::StoreEntry::decode(bytes).map_err(|e| format!("does not decode: {e}"))?;
    entry_from_wire(entry, limits).map_err(|e| e.to_string())
}

/// Encodes a gossip payload of deltas.
pub fn encode_deltas(entries: Vec<wire::StoreEntry>) -> Vec<u8> {
    wire::StoreDeltas {
        entries,
        roots_digest: None,
    }
    .encode_to_vec()
}

/// Encodes a roots digest as a gossip payload with no entries.
pub fn encode_digest(digest: u64) -> Vec<u8> {
    wire::StoreDeltas {
        entries: Vec::new(),
        roots_digest: Some(digest),
    }
    .encode_to_vec()
}

/// Why a store message from the network was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// Larger than [`MAX_SYNC_BYTES`].
    Oversized,
    /// Does not decode, or carries no step.
    Malformed,
}

/// Decodes a gossip payload (its entries are checked one by one by the caller).
pub fn decode_deltas(bytes: &[u8]) -> Result<wire::StoreDeltas, MessageError> {
    if bytes.len() > MAX_SYNC_BYTES {
        return Err(MessageError::Oversized);
    }
    wire::StoreDeltas::decode(bytes).map_err(|_| MessageError::Malformed)
}

/// Encodes one anti-entropy step.
pub fn encode_sync(step: wire::store_sync::Step) -> Vec<u8> {
    wire::StoreSync { step: Some(step) }.encode_to_vec()
}

/// Decodes one anti-entropy step.
pub fn decode_sync(bytes: &[u8]) -> Result<wire::store_sync::Step, MessageError> {
    if bytes.len() > MAX_SYNC_BYTES {
        return Err(MessageError::Oversized);
    }
    wire::StoreSync::decode(bytes)
        .ok()
        .and_then(|m| m.step)
        .ok_or(MessageError::Malformed)
}

fn stamp_to_wire(stamp: &Stamp) -> wire::StoreStamp {
    wire::StoreStamp {
        wall_ms: stamp.wall_ms,
        counter: stamp.counter,
        node: stamp.node.to_string(),
    }
}

fn stamp_from_wire(
    stamp: Option<wire::StoreStamp>,
    limits: &StoreLimits,
) -> Result<Stamp, StoreLimitError> {
    let stamp = stamp.ok_or(StoreLimitError::Empty("stamp"))?;
    limits.check_writer(&stamp.node)?;
    Ok(Stamp {
        wall_ms: stamp.wall_ms,
        counter: stamp.counter,
        node: stamp.node.into(),
    })
}

fn stamps_from_wire(
    stamps: Vec<wire::StoreStamp>,
    limits: &StoreLimits,
) -> Result<BTreeSet<Stamp>, StoreLimitError> {
    stamps
        .into_iter()
        .map(|s| stamp_from_wire(Some(s), limits))
        .collect()
}

fn parts_to_wire(parts: &BTreeMap<Arc<str>, Part>) -> Vec<wire::CounterPart> {
    parts
        .iter()
        .map(|(replica, p)| wire::CounterPart {
            replica: replica.to_string(),
            inc: p.inc,
            dec: p.dec,
            stamp: Some(stamp_to_wire(&p.stamp)),
        })
        .collect()
}

fn parts_from_wire(
    parts: Vec<wire::CounterPart>,
    limits: &StoreLimits,
) -> Result<BTreeMap<Arc<str>, Part>, StoreLimitError> {
    let mut counter = Counter::default();
    for p in parts {
        limits.check_writer(&p.replica)?;
        let part = Part {
            inc: p.inc,
            dec: p.dec,
            stamp: stamp_from_wire(p.stamp, limits)?,
        };
        // A repeated replica keeps the larger counts, as a merge would.
        let mut one = Counter::default();
        one.parts.insert(p.replica.into(), part);
        counter.merge(&one);
    }
    Ok(counter.parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(wall: u64) -> Stamp {
        Stamp::new(wall, 1, "n1@5")
    }

    fn samples() -> Vec<Crdt> {
        let replica: Arc<str> = "n1@5".into();
        let mut counter = Counter::default();
        counter.add(&replica, 7, stamp(1));
        counter.add(&"n2@6".into(), -3, stamp(2));
        counter.delete(stamp(3));
        let mut set = OrSet::default();
        set.add("w1", stamp(1));
        set.add("w2", stamp(2));
        set.remove("w1", stamp(3));
        vec![
            Crdt::Lww(Lww::write(
                stamp(1),
                Some(b"{\"url\":\"http://w1\"}".to_vec()),
            )),
            Crdt::Lww(Lww::write(stamp(2), None)),
            Crdt::Counter(counter),
            Crdt::Set(set),
        ]
    }

    #[test]
    fn every_kind_round_trips_through_its_encoding() {
        let limits = StoreLimits::default();
        for crdt in samples() {
            let bytes = encode_entry("s", "k", &crdt);
            let (store, key, back) = decode_entry(&bytes, &limits).expect("decodes");
            assert_eq!((store.as_str(), key.as_str()), ("s", "k"));
            assert_eq!(back, crdt);
            assert_eq!(encode_entry("s", "k", &back), bytes, "canonical");
        }
    }

    #[test]
    fn entries_that_break_a_limit_are_refused() {
        let limits = StoreLimits::default();
        let good = entry_to_wire("s", "k", &samples()[0]);
        let mut bad_store = good.clone();
        bad_store.store = "a b".into();
        let mut bad_value = good.clone();
        if let Some(wire::store_entry::State::Lww(r)) = &mut bad_value.state {
            r.value = b"not json".to_vec();
        }
        let mut no_state = good.clone();
        no_state.state = None;
        let mut long_writer = good;
        if let Some(wire::store_entry::State::Lww(r)) = &mut long_writer.state {
            r.stamp = Some(wire::StoreStamp {
                wall_ms: 1,
                counter: 0,
                node: "w".repeat(200),
            });
        }
        for entry in [bad_store, bad_value, no_state, long_writer] {
            assert!(entry_from_wire(entry, &limits).is_err());
        }
        assert!(decode_entry(b"\xff\xff", &limits).is_err());
    }

    #[test]
    fn sync_and_delta_messages_reject_garbage() {
        assert_eq!(decode_sync(b""), Err(MessageError::Malformed));
        assert_eq!(decode_sync(b"\xff\x01"), Err(MessageError::Malformed));
        assert!(decode_deltas(&vec![0; MAX_SYNC_BYTES + 1]).is_err());
        let roots = wire::store_sync::Step::Roots(wire::StoreRoots { stores: vec![] });
        assert_eq!(decode_sync(&encode_sync(roots.clone())), Ok(roots));
    }
}
