//! Properties of the wire codec, through the public API only: encoding then decoding is the
//! identity for every message kind the codec must accept, and decoding never panics on any
//! bytes. Also the generator of the fuzz targets' seed corpus (ignored; run it by name).

// Shared with the fuzz targets: the node they drive and the encoders of decoded messages.
#[path = "../fuzz/src/fixture.rs"]
mod fixture;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::time::{Duration, Instant};

use meshd::swim::codec::{self, Body, Datagram, PushPull, MAX_DATAGRAM_BYTES, WIRE_VERSION};
use meshd::swim::limits::{MAX_INCARNATION, MAX_TAG_TOTAL_BYTES};
use meshd::swim::state::Update;
use meshd::swim::{Identity, MemberState, NodeMeta, Swim};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

/// Most updates per generated datagram (an MTU holds about 11 typical ones; the whole datagram
/// must also stay within the codec's `MAX_DATAGRAM_BYTES`, which the strategy filters for).
const MAX_UPDATES: usize = 8;
/// Most members per generated push-pull message.
const MAX_MEMBERS: usize = 48;

// Well inside the limits the codec enforces now and the stricter ones to come.
fn name() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,64}"
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9-]{0,32}"
}

fn meta() -> impl Strategy<Value = NodeMeta> {
    (
        label(),
        label(),
        btree_map("[a-z0-9-]{1,32}", "[ -~]{0,64}", 0..=8).prop_filter(
            "tags within the total limit",
            |tags| {
                tags.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() <= MAX_TAG_TOTAL_BYTES
            },
        ),
    )
        .prop_map(|(region, zone, tags)| NodeMeta { region, zone, tags })
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))),
        // Flow info and scope id are not part of the "ip:port" text the wire carries.
        (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            0,
            0
        ))),
    ]
}

fn incarnation() -> impl Strategy<Value = u64> {
    0..=MAX_INCARNATION
}

/// A fact in each gossiped state: metadata only on ALIVE, an accuser only on SUSPECTED.
fn update() -> impl Strategy<Value = Update> {
    let fact = |state| {
        move |(name, addr, incarnation)| Update {
            name,
            addr,
            incarnation,
            state,
            meta: NodeMeta::default(),
            accuser: String::new(),
        }
    };
    let base = || (name(), addr(), incarnation());
    prop_oneof![
        (base(), meta()).prop_map(move |(b, meta)| Update {
            meta,
            ..fact(MemberState::Alive)(b)
        }),
        (base(), name()).prop_map(move |(b, accuser)| Update {
            accuser,
            ..fact(MemberState::Suspected)(b)
        }),
        base().prop_map(fact(MemberState::Down)),
        base().prop_map(fact(MemberState::Leaving)),
    ]
}

/// Every body kind, and none (a pure gossip datagram).
fn body() -> impl Strategy<Value = Option<Body>> {
    prop_oneof![
        (any::<u32>(), prop_oneof![Just(String::new()), name()])
            .prop_map(|(seq, target)| Some(Body::Ping { seq, target })),
        any::<u32>().prop_map(|seq| Some(Body::Ack { seq })),
        any::<u32>().prop_map(|seq| Some(Body::Nack { seq })),
        (any::<u32>(), name(), addr()).prop_map(|(seq, target, target_addr)| {
            Some(Body::PingReq {
                seq,
                target,
                target_addr,
            })
        }),
        Just(None),
    ]
}

fn datagram() -> impl Strategy<Value = Datagram> {
    let payload = vec(any::<u8>(), 0..=64);
    (
        name(),
        body(),
        vec(update(), 0..=MAX_UPDATES),
        vec(payload, 0..=4),
    )
        .prop_map(|(sender, body, updates, payloads)| Datagram {
            sender,
            body,
            updates,
            payloads,
        })
        .prop_filter("fits the datagram size limit", |d| {
            fixture::encode_datagram(d).len() <= MAX_DATAGRAM_BYTES
        })
}

fn push_pull() -> impl Strategy<Value = PushPull> {
    (name(), any::<bool>(), vec(update(), 0..=MAX_MEMBERS)).prop_map(|(sender, join, members)| {
        PushPull {
            sender,
            join,
            members,
        }
    })
}

proptest! {
    #[test]
    fn datagram_encode_decode_is_identity(d in datagram()) {
        let bytes = fixture::encode_datagram(&d);
        prop_assert_eq!(bytes[0], WIRE_VERSION);
        prop_assert_eq!(codec::decode_datagram(&bytes), Ok(d));
    }

    #[test]
    fn push_pull_encode_decode_is_identity(p in push_pull()) {
        let bytes = fixture::encode_push_pull(&p);
        prop_assert_eq!(codec::decode_push_pull(&bytes), Ok(p));
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(
        bytes in vec(any::<u8>(), 0..2048),
        versioned in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if versioned {
            // Past the header check, so the protobuf decoder and validation see the rest.
            bytes.insert(0, WIRE_VERSION);
        }
        let _ = codec::decode_datagram(&bytes);
        let _ = codec::decode_push_pull(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_messages(
        d in datagram(),
        p in push_pull(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        // Valid encodings with a few bytes overwritten reach deeper than random bytes do.
        for mut bytes in [fixture::encode_datagram(&d), fixture::encode_push_pull(&p)] {
            for (at, byte) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            let _ = codec::decode_datagram(&bytes);
            let _ = codec::decode_push_pull(&bytes);
        }
    }
}

/// Found by the fuzz targets: a SUSPECTED fact without an accuser (the wire allows it) made the
/// node gossip the suspicion with a placeholder accuser that is not a valid name, so its peers
/// dropped every datagram carrying it, and its whole push-pull table.
#[test]
fn a_suspicion_without_accuser_is_passed_on_in_a_form_peers_accept() {
    let t0 = Instant::now();
    let mut node = fixture::converged(t0);
    let mut suspect = fact(
        fixture::PEERS[1],
        fixture::peer_addr(1),
        1,
        MemberState::Suspected,
    );
    suspect.accuser.clear();
    let datagram = fixture::encode_datagram(&Datagram {
        sender: fixture::PEERS[0].into(),
        body: None,
        updates: vec![suspect],
        payloads: Vec::new(),
    });
    node.handle_datagram(t0, fixture::peer_addr(0), &datagram);
    assert_eq!(
        node.member(fixture::PEERS[1]).map(|m| m.state),
        Some(MemberState::Suspected)
    );
    // Both panic, naming the drop reason, on output a peer would drop.
    fixture::drain(&mut node);
    fixture::run_timers(&mut node, t0);
    codec::decode_push_pull(&node.push_pull_payload()).expect("peers accept the node's table");
}

// ---- the fuzz targets' seed corpus ----------------------------------------------------------

fn fact(name: &str, addr: SocketAddr, incarnation: u64, state: MemberState) -> Update {
    Update {
        name: name.into(),
        addr,
        incarnation,
        state,
        meta: if state == MemberState::Alive {
            fixture::meta()
        } else {
            NodeMeta::default()
        },
        accuser: if state == MemberState::Suspected {
            fixture::PEERS[0].into()
        } else {
            String::new()
        },
    }
}

fn seed_datagrams() -> Vec<(&'static str, Vec<u8>)> {
    let [n1, n2, n3] = fixture::PEERS;
    let (a1, a2, a3) = (
        fixture::peer_addr(0),
        fixture::peer_addr(1),
        fixture::peer_addr(2),
    );
    let new_addr: SocketAddr = "127.0.0.9:39527".parse().expect("literal address");
    let me = fixture::LOCAL;
    let me_addr = fixture::local_addr();
    let dgram = |body, updates| {
        fixture::encode_datagram(&Datagram {
            sender: n1.into(),
            body,
            updates,
            payloads: Vec::new(),
        })
    };
    let ping = |target: &str| {
        Some(Body::Ping {
            seq: 1,
            target: target.into(),
        })
    };
    let mut seeds = vec![
        ("ping", dgram(ping(me), vec![])),
        (
            "ping-anyone-new-member",
            dgram(ping(""), vec![fact("n4", new_addr, 1, MemberState::Alive)]),
        ),
        (
            "ack-suspect",
            dgram(
                Some(Body::Ack { seq: 7 }),
                vec![fact(n2, a2, 1, MemberState::Suspected)],
            ),
        ),
        ("nack", dgram(Some(Body::Nack { seq: 7 }), vec![])),
        (
            "ping-req",
            dgram(
                Some(Body::PingReq {
                    seq: 3,
                    target: n3.into(),
                    target_addr: a3,
                }),
                vec![],
            ),
        ),
        (
            "gossip-every-state",
            dgram(
                None,
                vec![
                    fact(n1, a1, 2, MemberState::Alive),
                    fact(n2, a2, 1, MemberState::Leaving),
                    fact(n3, a3, 1, MemberState::Down),
                    fact("n4", new_addr, 1, MemberState::Suspected),
                ],
            ),
        ),
        (
            "accuses-me",
            dgram(ping(me), vec![fact(me, me_addr, 1, MemberState::Suspected)]),
        ),
        (
            "downs-me",
            dgram(None, vec![fact(me, me_addr, 1, MemberState::Down)]),
        ),
        ("ping-for-someone-else", dgram(ping("n9"), vec![])),
    ];
    // What the node itself sends once a probe round is due: real pings with piggyback.
    let t0 = Instant::now();
    let mut node = fixture::converged(t0);
    node.handle_timeout(t0 + Duration::from_secs(2));
    let mut own = 0;
    while let Some(t) = node.poll_transmit() {
        if own < 2 {
            seeds.push((["own-1", "own-2"][own], t.payload));
            own += 1;
        }
    }
    seeds
}

fn seed_push_pulls() -> Vec<(&'static str, Vec<u8>)> {
    let t0 = Instant::now();
    // A peer's periodic exchange: n1's table, which lists the fuzzed node too.
    let mut peer = Swim::new(
        fixture::config(),
        Identity {
            name: fixture::PEERS[0].into(),
            addr: fixture::peer_addr(0),
            meta: fixture::meta(),
        },
        1,
        t0,
    )
    .expect("valid identity");
    let joining_peer = Swim::new(
        fixture::config(),
        Identity {
            name: "n4".into(),
            addr: "127.0.0.9:39527".parse().expect("literal address"),
            meta: NodeMeta::default(),
        },
        2,
        t0,
    )
    .expect("valid identity");
    let seed_table = fixture::converged(t0).push_pull_payload();
    peer.handle_push_pull(t0, fixture::local_addr(), &seed_table)
        .expect("a node's own table is accepted");
    let every_state = fixture::encode_push_pull(&PushPull {
        sender: fixture::PEERS[1].into(),
        join: false,
        members: vec![
            fact(
                fixture::LOCAL,
                fixture::local_addr(),
                1,
                MemberState::Suspected,
            ),
            fact(
                fixture::PEERS[0],
                fixture::peer_addr(0),
                3,
                MemberState::Alive,
            ),
            fact(
                fixture::PEERS[1],
                fixture::peer_addr(1),
                2,
                MemberState::Leaving,
            ),
            fact(
                fixture::PEERS[2],
                fixture::peer_addr(2),
                1,
                MemberState::Down,
            ),
        ],
    });
    vec![
        ("periodic", peer.push_pull_payload()),
        ("join", joining_peer.push_pull_payload()),
        ("every-state", every_state),
    ]
}

/// Store messages as nodes make them: a gossip payload of each kind, and every anti-entropy
/// step of an exchange between two stores that differ.
fn seed_store_messages() -> Vec<(&'static str, Vec<u8>)> {
    use meshd::store::{Op, StoreConfig, Stores};
    let mut a = Stores::new(StoreConfig::default(), "a", 1);
    let mut b = Stores::new(StoreConfig::default(), "b", 1);
    let mut seeds = Vec::new();
    let writes = [
        (
            "payload-lww",
            "workers",
            "w1",
            Op::Put(b"{\"url\":\"http://w1\"}".to_vec()),
        ),
        ("payload-counter", "hits", "a", Op::Incr(7)),
        ("payload-set", "pools", "eu", Op::Add("gw-1".into())),
        ("payload-delete", "workers", "w1", Op::Delete),
    ];
    for (name, store, key, op) in writes {
        a.write(2, store, key, op).expect("seed write");
        a.handle_timeout(1_000);
        let payload = a.poll_broadcast().expect("a payload").payload;
        seeds.push((name, payload));
    }
    b.write(3, "hits", "b", Op::Incr(1)).expect("seed write");
    let roots = a.sync_start(4).expect("no exchange running");
    let buckets = b.serve_sync(4, &roots).expect("buckets");
    let hashes = a
        .handle_sync_reply(4, &buckets)
        .expect("valid")
        .expect("differs");
    let push = b.serve_sync(4, &hashes).expect("push");
    seeds.extend([
        ("sync-roots", roots),
        ("sync-buckets", buckets),
        ("sync-hashes", hashes),
        ("sync-push", push),
    ]);
    seeds
}

fn seed_http() -> Vec<(&'static str, Vec<u8>)> {
    [
        ("status", "GET /ha/status\n"),
        ("health", "GET /ha/health\n"),
        ("health-joining", "GET /ha/health j\n"),
        ("health-leaving-head", "HEAD /ha/health l\n"),
        (
            "shutdown",
            "POST /ha/shutdown\nContent-Type: application/json\n\n{}",
        ),
        ("shutdown-no-json", "POST /ha/shutdown\n"),
        (
            "shutdown-remote",
            "POST /ha/shutdown r\nContent-Type: application/json\n",
        ),
        (
            "shutdown-driver-gone",
            "POST /ha/shutdown x\nContent-Type: application/json\n",
        ),
        ("keys", "GET /ha/keys\nContent-Type: application/json\n"),
        (
            "keys-install",
            "POST /ha/keys/install\nContent-Type: application/json\n\n\
             {\"key\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}",
        ),
        (
            "keys-use-id",
            "POST /ha/keys/use\nContent-Type: application/json\n\n{\"key\": \"0123456789abcdef\"}",
        ),
        ("metrics", "GET /metrics\nAccept: text/plain\n"),
        ("openapi", "GET /ha/openapi.json\n"),
        ("wrong-method", "DELETE /ha/status\n"),
        ("no-route", "GET /nope?x=1&y=%41\nHost: a\n\n"),
        (
            "store-put",
            "PUT /ha/stores/workers/w1\nContent-Type: application/json\n\n{\"value\": {\"url\": \"http://w1\"}}",
        ),
        (
            "store-incr",
            "POST /ha/stores/hits/a%2Fb/incr\nContent-Type: application/json\n\n{\"by\": -3}",
        ),
        (
            "store-add",
            "POST /ha/stores/pools/eu/add\nContent-Type: application/json\n\n{\"member\": \"gw-1\"}",
        ),
        ("store-get", "GET /ha/stores/workers/w1\n"),
        ("store-list", "GET /ha/stores\n"),
        ("store-delete", "DELETE /ha/stores/workers/w1 r\n"),
        ("store-watch", "GET /ha/stores/workers/watch\n"),
        ("smg-workers", "GET /ha/workers x\n"),
    ]
    .into_iter()
    .map(|(name, text)| (name, text.as_bytes().to_vec()))
    .collect()
}

/// Sealed datagrams as a keyed node receives them: under the primary and the second key, one
/// under a key the fixture does not hold, one too old, and the plain datagrams as they are.
fn seed_sealed() -> Vec<(&'static str, Vec<u8>)> {
    use meshd::seal::{Key, Keyring, KEY_BYTES, NONCE_BYTES};
    let ring = fixture::keyring();
    let second = Keyring::new(vec![Key::from_bytes([2; KEY_BYTES])]).expect("keyring");
    let stranger = Keyring::new(vec![Key::from_bytes([9; KEY_BYTES])]).expect("keyring");
    let mut seeds = Vec::new();
    for (name, plain) in seed_datagrams().into_iter().take(3) {
        seeds.push((
            name,
            ring.seal(fixture::LABEL, fixture::NOW, [1; NONCE_BYTES], &plain),
        ));
    }
    let (_, plain) = seed_datagrams().remove(0);
    let sealed = |r: &Keyring, at: u32| r.seal(fixture::LABEL, at, [2; NONCE_BYTES], &plain);
    seeds.push(("second-key", sealed(&second, fixture::NOW)));
    seeds.push(("stranger-key", sealed(&stranger, fixture::NOW)));
    seeds.push(("too-old", sealed(&ring, fixture::NOW - 3600)));
    seeds.push(("plain", plain));
    seeds
}

/// Keyring files: valid ones of one and two keys, and the mistakes a person makes.
fn seed_keyring_files() -> Vec<(&'static str, Vec<u8>)> {
    let ring = fixture::keyring();
    vec![
        ("two-keys", meshd::seal::file::format(&ring).into_bytes()),
        (
            "one-key",
            b"[\"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"]".to_vec(),
        ),
        ("empty-list", b"[]".to_vec()),
        ("short-key", b"[\"AAAA\"]".to_vec()),
        ("object", b"{\"keys\": []}".to_vec()),
    ]
}

/// Writes `fuzz/corpus/<target>/seed-<name>` for every target; existing seeds are rewritten,
/// inputs the fuzzer added are kept. Run: `cargo test --test codec_props -- --ignored`.
#[test]
#[ignore = "writes the fuzz seed corpus into the source tree"]
fn write_fuzz_seed_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let targets: BTreeMap<&str, Vec<(&str, Vec<u8>)>> = BTreeMap::from([
        ("datagram", seed_datagrams()),
        ("push_pull", seed_push_pulls()),
        ("http", seed_http()),
        ("open", seed_sealed()),
        ("keyring_file", seed_keyring_files()),
        ("store", seed_store_messages()),
    ]);
    for (target, seeds) in targets {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir can be created");
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed can be written");
        }
    }
}
