//! The sans-IO replicated stores: named stores of one CRDT kind each (`lww`, `counter`,
//! `set`), written anywhere, merged everywhere. Like `swim`, no sockets, no clock reads, no
//! tokio: wall time in milliseconds is passed in (it stamps writes through a hybrid logical
//! clock), and the caller moves the bytes.
//!
//! [`Stores`] is the state machine. Its driving contract:
//! - Inputs: [`Stores::write`] (an API write), [`Stores::handle_payload`] (deltas gossiped by
//!   SWIM), [`Stores::serve_sync`] (a peer's anti-entropy step) and
//!   [`Stores::handle_sync_reply`] (the answer to ours, started with [`Stores::sync_start`]),
//!   [`Stores::handle_timeout`], and at start [`Stores::load`] (what an earlier run persisted).
//! - After every input, the caller drains: [`Stores::poll_broadcast`] (payloads for SWIM to
//!   carry), [`Stores::poll_persist`] (keys to write to disk), [`Stores::poll_change`] (for
//!   watchers), [`Stores::poll_sync`] (send [`Stores::digest_payload`] to a random member, one
//!   whose stores differ answers with an exchange; or, after a member's return, start an
//!   exchange), then re-arms a timer at [`Stores::poll_timeout`] (a wall-clock millisecond). A
//!   [`Received`] whose `stores_differ` is set asks the caller to start an exchange with the
//!   payload's sender.
//! - Merges are commutative, associative and idempotent (property-tested below), so deltas may
//!   arrive in any order, twice, or through anti-entropy instead.

#![warn(missing_docs)]

pub mod clock;
pub mod codec;
pub mod crdt;
pub mod hash;
pub mod limits;
mod stores;
mod sync;
pub mod table;

pub use crdt::{Kind, Value};

pub use limits::StoreLimits;
pub use stores::{
    Broadcast, Change, EntryView, Op, Persist, Received, StoreConfig, StoreStats, StoreSummary,
    Stores, SyncRound, WriteError, Written,
};

#[cfg(test)]
mod tests;
