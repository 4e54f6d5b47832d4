//! The SWIM node the fuzz targets drive and the names and addresses their seed corpus speaks
//! to, in one place: the fuzz crate uses this file as a module and `tests/codec_props.rs`
//! includes it by path, so the seeds it writes always reach deep into the node being fuzzed.
//! Only meshd's public API is used.

// Each includer uses a different part of the fixture.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshd::swim::codec::{self, Datagram, PushPull, MAX_DATAGRAM_BYTES};
use meshd::swim::{Config, Identity, KnownMember, NodeMeta, Swim};
use meshd::wire;

/// Name of the node under test (the target of every seed Ping).
pub const LOCAL: &str = "fuzz-self";
/// Members the converged node already knows, all ALIVE at incarnation 1.
pub const PEERS: [&str; 3] = ["n1", "n2", "n3"];
/// Seed of the node's RNG: a crash reproduces from its input alone.
pub const RNG_SEED: u64 = 0x5eed;
/// Two later instants: one probe round on (probe, ping-req, gossip and suspicion timers fire),
/// then past the suspicion ceiling (24 s at N = 4) and the retention (10 min), so suspicions
/// expire and DOWN and LEAVING members are reaped.
const LATER: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(15 * 60)];

/// The node's own SWIM address.
pub fn local_addr() -> SocketAddr {
    "127.0.0.1:39527".parse().expect("literal address")
}

/// Address of `PEERS[i]`; n2 is on IPv6 so both address families are in play.
pub fn peer_addr(i: usize) -> SocketAddr {
    ["127.0.0.2:39527", "[::1]:39528", "127.0.0.4:39527"][i]
        .parse()
        .expect("literal address")
}

/// Region, zone and one tag, as a configured node announces.
pub fn meta() -> NodeMeta {
    NodeMeta {
        region: "eu-west".into(),
        zone: "eu-west-1a".into(),
        tags: BTreeMap::from([("role".to_string(), "gateway".to_string())]),
    }
}

/// Protocol defaults, but urgent facts go to 3 members, not 256: `Members::sample` draws up to
/// 256 × its tries-per-pick random indices before it falls back to a scan when the cluster is
/// smaller than the fanout, which under the fuzzer's instrumentation made every announcement
/// cost ~1 ms. 3 still covers the whole 4-node cluster, so the same paths run.
pub fn config() -> Config {
    Config {
        announce_fanout: 3,
        ..Config::default()
    }
}

fn identity() -> Identity {
    Identity {
        name: LOCAL.into(),
        addr: local_addr(),
        meta: meta(),
    }
}

/// A node that is ALIVE in a converged cluster with [`PEERS`].
pub fn converged(now: Instant) -> Swim {
    let mut node = joining(now);
    let known: Vec<KnownMember> = PEERS
        .iter()
        .enumerate()
        .map(|(i, name)| KnownMember {
            name: Arc::from(*name),
            addr: peer_addr(i),
            incarnation: 1,
            meta: meta(),
        })
        .collect();
    node.start_converged(now, &known);
    node
}

/// A node still INIT (joining), knowing only itself.
pub fn joining(now: Instant) -> Swim {
    Swim::new(config(), identity(), RNG_SEED, now).expect("the fixture's identity is valid")
}

/// Drains every output, as the driver does after each input. Every datagram the node emits
/// must be one its peers accept: it decodes and fits the receive limit.
pub fn drain(node: &mut Swim) {
    while let Some(t) = node.poll_transmit() {
        assert!(
            t.payload.len() <= MAX_DATAGRAM_BYTES,
            "node emitted a {}-byte datagram to {}",
            t.payload.len(),
            t.dst
        );
        if let Err(reason) = codec::decode_datagram(&t.payload) {
            let envelope = <wire::Envelope as prost::Message>::decode(&t.payload[1..]);
            panic!(
                "node emitted a datagram to {} that peers drop ({reason:?}): {envelope:?}",
                t.dst
            );
        }
    }
    while node.poll_push_pull().is_some() {}
    while node.poll_event().is_some() {}
    while node.poll_notice().is_some() {}
    while node.poll_payload().is_some() {}
    let _ = node.poll_seed_lookup();
}

/// Fires the node's timers at each of [`LATER`] after `now`, draining after each.
pub fn run_timers(node: &mut Swim, now: Instant) {
    for later in LATER {
        node.handle_timeout(now + later);
        drain(node);
    }
}

/// Encodes a decoded datagram again (metadata on every update, as it was decoded).
pub fn encode_datagram(d: &Datagram) -> Vec<u8> {
    codec::encode_datagram(&wire::Envelope {
        sender: d.sender.clone(),
        body: d.body.clone().map(codec::body_to_wire),
        updates: d
            .updates
            .iter()
            .map(|u| codec::update_to_wire(u, true))
            .collect(),
        payloads: d.payloads.clone(),
    })
}

/// Encodes a decoded push-pull message again (the keyring field is not part of what the codec
/// decodes, so it is left out).
pub fn encode_push_pull(p: &PushPull) -> Vec<u8> {
    codec::encode_push_pull(&wire::PushPull {
        sender: p.sender.clone(),
        join: p.join,
        members: p
            .members
            .iter()
            .map(|u| codec::update_to_wire(u, true))
            .collect(),
        ..Default::default()
    })
}

/// The keyring the `open` target opens with: a primary and a second key, as during a rotation.
pub fn keyring() -> meshd::seal::Keyring {
    let keys = [1u8, 2].map(|b| meshd::seal::Key::from_bytes([b; meshd::seal::KEY_BYTES]));
    meshd::seal::Keyring::new(keys.to_vec()).expect("two distinct keys make a keyring")
}

/// The cluster label the `open` target seals and opens under.
pub const LABEL: &[u8] = b"fuzz";

/// The receiver's clock of the `open` target (seconds since the epoch): a fixed instant.
pub const NOW: u32 = 1_796_169_600;
