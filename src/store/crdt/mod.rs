//! The three kinds of replicated value and what they share: merging (commutative, associative,
//! idempotent: property-tested in `store::tests`), presence, the JSON value shown by the API,
//! and tombstone collection.

pub mod counter;
pub mod lww;
pub mod set;

use std::fmt;
use std::str::FromStr;

pub use counter::Counter;
pub use lww::Lww;
pub use set::OrSet;

use super::clock::Stamp;

/// The CRDT kind of a store: every key of a store has the same kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Key → last-writer-wins JSON value.
    Lww,
    /// Key → PN-counter.
    Counter,
    /// Key → observed-remove set of strings.
    Set,
}

impl Kind {
    /// The name used in the API and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lww => "lww",
            Kind::Counter => "counter",
            Kind::Set => "set",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lww" => Ok(Kind::Lww),
            "counter" => Ok(Kind::Counter),
            "set" => Ok(Kind::Set),
            other => Err(format!(
                "unknown store kind {other:?}; expected lww, counter or set"
            )),
        }
    }
}

/// One key's replicated state (or a delta of it: a delta is a state too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Crdt {
    /// An `lww` key.
    Lww(Lww),
    /// A `counter` key.
    Counter(Counter),
    /// A `set` key.
    Set(OrSet),
}

/// The value of a key as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// The JSON text of an `lww` key.
    Json(Vec<u8>),
    /// The sum of a `counter` key.
    Count(i64),
    /// The sorted members of a `set` key.
    Members(Vec<String>),
}

impl Crdt {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Crdt::Lww(_) => Kind::Lww,
            Crdt::Counter(_) => Kind::Counter,
            Crdt::Set(_) => Kind::Set,
        }
    }

    /// Merges `other` of the same kind; `None` for another kind (nothing changes), else
    /// whether anything changed.
    pub fn merge(&mut self, other: &Crdt) -> Option<bool> {
        match (self, other) {
            (Crdt::Lww(a), Crdt::Lww(b)) => Some(a.merge(b)),
            (Crdt::Counter(a), Crdt::Counter(b)) => Some(a.merge(b)),
            (Crdt::Set(a), Crdt::Set(b)) => Some(a.merge(b)),
            _ => None,
        }
    }

    /// False for a deleted key (a tombstone, a reset counter, an empty set).
    pub fn is_present(&self) -> bool {
        match self {
            Crdt::Lww(r) => r.is_present(),
            Crdt::Counter(c) => c.is_present(),
            Crdt::Set(s) => s.is_present(),
        }
    }

    /// What the API shows, `None` when the key is not present.
    pub fn value(&self) -> Option<Value> {
        if !self.is_present() {
            return None;
        }
        Some(match self {
            Crdt::Lww(r) => Value::Json(r.value.clone().unwrap_or_default()),
            Crdt::Counter(c) => Value::Count(c.value()),
            Crdt::Set(s) => Value::Members(s.members()),
        })
    }

    /// The stamp of the latest change merged: the key's version.
    pub fn version(&self) -> Option<&Stamp> {
        match self {
            Crdt::Lww(r) => Some(&r.stamp),
            Crdt::Counter(c) => c.updated(),
            Crdt::Set(s) => s.updated(),
        }
    }

    /// Forgets tombstones older than `horizon_ms`; true when the whole key may be dropped.
    pub fn collect(&mut self, horizon_ms: u64) -> bool {
        match self {
            Crdt::Lww(r) => r.is_collectable(horizon_ms),
            Crdt::Counter(c) => c.is_collectable(horizon_ms),
            Crdt::Set(s) => s.collect(horizon_ms),
        }
    }
}
