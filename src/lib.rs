//! meshd: a SWIM gossip membership daemon.
//!
//! Layers, each depending only on those below it:
//! `cli` (flags) → `agent` (wiring and shutdown) → `api` (HTTP and gRPC on one port),
//! `metrics` (Prometheus series) and `runtime` (tokio, UDP, QUIC) → `swim` (the sans-IO
//! protocol core) → `wire` (prost messages generated from `proto/mesh.proto`); `seal` (every
//! datagram sealed with the cluster keyring) sits beside `swim`, used by `runtime` and `sim`.
//! `coordination` (leader and owner views) is a pure function of one member list, used by
//! `runtime` when it publishes and by the benches.
//! `client` is the other side of `api`: the `meshd members|info|leave` subcommands.
//! `sim` drives many `swim` cores over a virtual clock for tests and benches.

pub mod agent;
pub mod api;
pub mod cli;
pub mod client;
pub mod coordination;
pub mod metrics;
pub mod runtime;
pub mod seal;
pub mod sim;
pub mod store;
pub mod swim;

/// Protobuf messages generated from `proto/mesh.proto`.
pub mod wire {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/meshd.wire.rs"));
}
