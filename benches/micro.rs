//! Criterion micro-benches of the SWIM core's hot paths: `cargo bench --bench micro`
//! (filter with e.g. `cargo bench --bench micro -- ping`).
//!
//! - `datagram/encode_full`, `datagram/decode_full`: a ~1,400-byte Ping with as many
//!   piggybacked ALIVE updates (realistic names, addresses, region/zone/tags) as fit.
//! - `ping/handle/{100,1000}`: a node knowing N members receives a Ping with 3 piggybacked
//!   updates (already known: steady state) and answers; `handle_datagram` + draining
//!   `poll_transmit`.
//! - `broadcast/fill/1000`: choosing piggybacked updates for one 1,400-byte datagram from a
//!   queue of 1,000 pending updates (`BroadcastQueue::fill`, public).
//! - `push_pull/payload/1000`, `push_pull/merge_known/1000`, `push_pull/merge_join/1000`:
//!   full-state encode, merge into a node that already knows everyone, and merge into a joiner.
//!
//! Everything is deterministic: fixed names, fixed seeds, one fixed `Instant`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use prost::Message;

use meshd::swim::broadcast::{retransmit_limit, BroadcastQueue};
use meshd::swim::codec::{self, update_field_len};
use meshd::swim::{Config, Identity, MemberState, NodeMeta, Swim};
use meshd::wire;

const SEED: u64 = 0x5EED;
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

/// Gateway-fleet style member name, e.g. "gw-eu-west-1b-00042".
fn name(i: usize) -> String {
    let region = REGIONS[i % REGIONS.len()];
    let zone = ["a", "b", "c"][(i / REGIONS.len()) % 3];
    format!("gw-{region}{zone}-{i:05}")
}

/// Pod-style address; only ever a string in memory here, nothing is sent.
fn addr(i: usize) -> SocketAddr {
    let [hi, lo] = u16::try_from(i).expect("i < 65536").to_be_bytes();
    SocketAddr::from(([10, 32 + (hi & 0x0f), lo, 7], 7946))
}

fn meta(i: usize) -> wire::NodeMeta {
    let region = REGIONS[i % REGIONS.len()];
    let zone = ["a", "b", "c"][(i / REGIONS.len()) % 3];
    wire::NodeMeta {
        region: region.to_owned(),
        zone: format!("{region}{zone}"),
        tags: [
            ("role".to_owned(), "edge".to_owned()),
            ("version".to_owned(), "1.4.2".to_owned()),
            ("pool".to_owned(), format!("pool-{}", i % 8)),
        ]
        .into_iter()
        .collect(),
    }
}

/// An ALIVE fact about member `i` at `incarnation`, meta included (as gossiped).
fn alive(i: usize, incarnation: u64) -> wire::MemberUpdate {
    wire::MemberUpdate {
        name: name(i),
        address: addr(i).to_string(),
        incarnation,
        state: wire::MemberState::Alive as i32,
        meta: Some(meta(i)),
        accuser: String::new(),
    }
}

fn identity(i: usize) -> Identity {
    let m = meta(i);
    Identity {
        name: name(i),
        addr: addr(i),
        meta: NodeMeta {
            region: m.region,
            zone: m.zone,
            tags: m.tags.into_iter().collect(),
        },
    }
}

/// A Ping from member 1 to member 0 carrying as many updates (members 2, 3, ...) as fit in
/// `Config::default().max_datagram_size`, like `Swim` builds them.
fn full_ping() -> wire::Envelope {
    let mut env = wire::Envelope {
        sender: name(1),
        payloads: Vec::new(),
        body: Some(wire::envelope::Body::Ping(wire::Ping {
            seq: 123_456,
            target: name(0),
        })),
        updates: Vec::new(),
    };
    let mut budget = Config::default().max_datagram_size - 1 - env.encoded_len();
    for i in 2.. {
        let u = alive(i, 3);
        let len = update_field_len(u.encoded_len());
        if len > budget {
            break;
        }
        budget -= len;
        env.updates.push(u);
    }
    env
}

/// Members 1..n as a push-pull message from member 1 (member 0 is the node under test).
fn push_pull_from_peer(n: usize) -> Vec<u8> {
    codec::encode_push_pull(&wire::PushPull {
        sender: name(1),
        join: false,
        members: (1..n).map(|i| alive(i, 3)).collect(),
        keyring: None,
        store_roots: None,
    })
}

/// Member 0, started alone, then merged with a table of `n` members (itself included); its
/// broadcast queue is drained by answering pings, so it is in steady state.
fn steady_node(n: usize, now: Instant) -> Swim {
    let mut node = Swim::new(Config::default(), identity(0), SEED, now).expect("valid identity");
    node.start_alone(now);
    node.handle_push_pull(now, addr(1), &push_pull_from_peer(n))
        .expect("valid push-pull");
    assert_eq!(node.count_in_state(MemberState::Alive), n);
    let bare = ping(Vec::new());
    while node.pending_broadcasts() > 0 {
        node.handle_datagram(now, addr(1), &bare);
        while node.poll_transmit().is_some() {}
    }
    while node.poll_event().is_some() {}
    while node.poll_push_pull().is_some() {}
    node
}

/// Encoded Ping from member 1 to member 0 with `updates` piggybacked.
fn ping(updates: Vec<wire::MemberUpdate>) -> Vec<u8> {
    codec::encode_datagram(&wire::Envelope {
        sender: name(1),
        payloads: Vec::new(),
        body: Some(wire::envelope::Body::Ping(wire::Ping {
            seq: 42,
            target: name(0),
        })),
        updates,
    })
}

fn datagram(c: &mut Criterion) {
    let env = full_ping();
    let bytes = codec::encode_datagram(&env);
    assert!(bytes.len() <= Config::default().max_datagram_size);
    assert!(bytes.len() > Config::default().max_datagram_size - 120);
    eprintln!(
        "datagram: {} bytes, {} piggybacked updates",
        bytes.len(),
        env.updates.len()
    );
    let mut g = c.benchmark_group("datagram");
    g.bench_function("encode_full", |b| {
        b.iter(|| codec::encode_datagram(black_box(&env)))
    });
    g.bench_function("decode_full", |b| {
        b.iter(|| codec::decode_datagram(black_box(&bytes)).expect("valid datagram"))
    });
    g.finish();
}

fn handle_ping(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("ping");
    for n in [100, 1000] {
        let mut node = steady_node(n, now);
        // Three facts the node already holds: merged as "same", nothing re-gossiped.
        let data = ping(vec![alive(2, 3), alive(n / 2, 3), alive(n - 1, 3)]);
        let from = addr(1);
        g.bench_function(format!("handle/{n}"), |b| {
            b.iter(|| {
                node.handle_datagram(now, from, black_box(&data));
                let mut sent = 0;
                while let Some(t) = node.poll_transmit() {
                    sent += t.payload.len();
                }
                black_box(sent)
            })
        });
        assert_eq!(node.pending_broadcasts(), 0, "steady state kept");
    }
    g.finish();
}

fn broadcast_fill(c: &mut Criterion) {
    const PENDING: usize = 1000;
    let mut queue = BroadcastQueue::default();
    for i in 1..=PENDING {
        queue.push(name(i).into(), alive(i, 3));
    }
    // What `Swim` leaves for updates in a 1,400-byte Ping to a member of that name.
    let base = wire::Envelope {
        sender: name(0),
        payloads: Vec::new(),
        body: Some(wire::envelope::Body::Ping(wire::Ping {
            seq: 7,
            target: name(PENDING / 2),
        })),
        updates: Vec::new(),
    };
    let budget = Config::default().max_datagram_size - 1 - base.encoded_len();
    let limit = retransmit_limit(Config::default().retransmit_mult, PENDING + 1);
    let buddy = name(PENDING / 2);
    let mut g = c.benchmark_group("broadcast");
    g.bench_function(format!("fill/{PENDING}"), |b| {
        b.iter_batched_ref(
            || queue.clone(),
            |q| q.fill(black_box(budget), Some(buddy.as_str()), limit),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn push_pull(c: &mut Criterion) {
    const N: usize = 1000;
    let now = Instant::now();
    let node = steady_node(N, now);
    let mut g = c.benchmark_group("push_pull");
    g.bench_function(format!("payload/{N}"), |b| {
        b.iter(|| node.push_pull_payload())
    });

    // The periodic exchange: the peer's table holds nothing new.
    let incoming = push_pull_from_peer(N);
    let mut known = steady_node(N, now);
    g.bench_function(format!("merge_known/{N}"), |b| {
        b.iter(|| {
            known
                .handle_push_pull(now, addr(1), black_box(&incoming))
                .expect("valid push-pull");
            while known.poll_event().is_some() {}
        })
    });
    assert_eq!(known.pending_broadcasts(), 0, "nothing new was merged");

    // A joiner (INIT) merging the seed's whole table: every member is new.
    let seed_table = node.push_pull_payload();
    g.bench_function(format!("merge_join/{N}"), |b| {
        b.iter_batched_ref(
            || Swim::new(Config::default(), identity(N + 1), SEED, now).expect("valid identity"),
            |joiner| {
                joiner
                    .handle_push_pull(now, addr(0), black_box(&seed_table))
                    .expect("valid push-pull")
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, datagram, handle_ping, broadcast_fill, push_pull);
criterion_main!(benches);
