//! Properties of the stores as a whole: random operation histories on 3–5 replicas, their
//! deltas delivered in random orders with duplicates, end equal; merges are commutative,
//! associative and idempotent for every kind; anti-entropy brings two replicas together and
//! sends only what differs.

use proptest::prelude::*;

use super::crdt::{Counter, Crdt, Lww, OrSet};
use super::*;

/// One random operation: on which replica, which key (of a few, so they collide), what.
#[derive(Clone, Debug)]
struct RandomOp {
    replica: usize,
    key: u8,
    op: Op,
}

fn op_for(kind: Kind) -> BoxedStrategy<Op> {
    match kind {
        Kind::Lww => prop_oneof![
            4 => (0u32..100).prop_map(|v| Op::Put(v.to_string().into_bytes())),
            1 => Just(Op::Delete),
        ]
        .boxed(),
        Kind::Counter => prop_oneof![
            5 => (-50i64..50).prop_map(Op::Incr),
            1 => Just(Op::Delete),
        ]
        .boxed(),
        Kind::Set => prop_oneof![
            3 => (0u8..5).prop_map(|m| Op::Add(format!("m{m}"))),
            2 => (0u8..5).prop_map(|m| Op::Remove(format!("m{m}"))),
            1 => Just(Op::Delete),
        ]
        .boxed(),
    }
}

fn history(kind: Kind, replicas: usize) -> impl Strategy<Value = Vec<RandomOp>> {
    proptest::collection::vec(
        (0..replicas, 0u8..4, op_for(kind)).prop_map(|(replica, key, op)| RandomOp {
            replica,
            key,
            op,
        }),
        1..60,
    )
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Lww), Just(Kind::Counter), Just(Kind::Set)]
}

/// Replicas `r0..rn`, their clocks a few ms apart.
fn replicas(n: usize) -> Vec<Stores> {
    (0..n)
        .map(|i| Stores::new(StoreConfig::default(), &format!("r{i}"), 1_000 + i as u64))
        .collect()
}

/// Runs `ops` (each replica writing locally, refusals ignored) and returns every payload made.
fn run(stores: &mut [Stores], ops: &[RandomOp], kind: Kind) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    for (t, op) in ops.iter().enumerate() {
        let now = 2_000 + t as u64 * 3;
        let s = &mut stores[op.replica];
        let _ = s.write(now, kind.as_str(), &format!("k{}", op.key), op.op.clone());
        s.handle_timeout(now + 1_000);
        while let Some(b) = s.poll_broadcast() {
            payloads.push(b.payload);
        }
    }
    payloads
}

/// The visible content of a replica: every store's entries and root.
fn content(s: &Stores) -> Vec<(String, Vec<EntryView>, usize)> {
    s.summaries()
        .into_iter()
        .map(|sum| {
            let (_, entries) = s.entries(&sum.name).unwrap_or((sum.kind, Vec::new()));
            (sum.name, entries, sum.bytes)
        })
        .collect()
}

fn roots(s: &Stores) -> Vec<u64> {
    s.tables.values().map(|t| t.root()).collect()
}

/// A kind, a replica count of 3 to 5, and a history of that kind on that many replicas.
fn scenario() -> impl Strategy<Value = (Kind, usize, Vec<RandomOp>)> {
    (kind_strategy(), 3usize..=5).prop_flat_map(|(kind, n)| (Just(kind), Just(n), history(kind, n)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every replica ends equal whatever order (and how often) the deltas arrive in.
    #[test]
    fn replicas_converge_whatever_the_delivery(
        (kind, n, ops) in scenario(),
        seed in any::<u64>(),
    ) {
        use rand::seq::SliceRandom;
        let mut stores = replicas(n);
        let payloads = run(&mut stores, &ops, kind);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for (i, s) in stores.iter_mut().enumerate() {
            // Every payload, every other one twice, in an order of this replica's own.
            let mut order: Vec<&Vec<u8>> =
                payloads.iter().chain(payloads.iter().step_by(2)).collect();
            order.shuffle(&mut rng);
            for p in order {
                s.handle_payload(10_000 + i as u64, p);
            }
        }
        let first = content(&stores[0]);
        for s in &stores[1..] {
            prop_assert_eq!(&content(s), &first);
            prop_assert_eq!(roots(s), roots(&stores[0]));
        }
    }

    /// The same histories delivered by anti-entropy alone: two rounds of syncs around a ring
    /// bring every replica to the same state.
    #[test]
    fn anti_entropy_alone_converges((kind, n, ops) in scenario()) {
        let mut stores = replicas(n);
        run(&mut stores, &ops, kind);
        for _round in 0..2 {
            for i in 0..n {
                sync_pair(&mut stores, i, (i + 1) % n);
            }
        }
        let first = content(&stores[0]);
        for s in &stores[1..] {
            prop_assert_eq!(&content(s), &first);
        }
    }

    /// merge is commutative, associative and idempotent for every kind.
    #[test]
    fn merge_is_a_join(kind in kind_strategy(), seed in any::<u64>()) {
        let states = random_states(kind, seed);
        let (a, b, c) = (&states[0], &states[1], &states[2]);
        let join = |x: &Crdt, y: &Crdt| { let mut z = x.clone(); z.merge(y); z };
        prop_assert_eq!(join(a, b), join(b, a));
        prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)));
        prop_assert_eq!(join(a, a), a.clone());
    }
}

use rand::SeedableRng;

/// Three states of `kind` built by random writes on three replicas, each seeing some of the
/// others' deltas.
fn random_states(kind: Kind, seed: u64) -> Vec<Crdt> {
    use rand::Rng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut stores = replicas(3);
    let mut payloads = Vec::new();
    for t in 0..30u64 {
        let r = rng.random_range(0..3);
        let op = match kind {
            Kind::Lww => Op::Put(rng.random_range(0..9u8).to_string().into_bytes()),
            Kind::Counter => Op::Incr(rng.random_range(-9..9)),
            Kind::Set if rng.random_bool(0.6) => Op::Add(format!("m{}", rng.random_range(0..4))),
            Kind::Set => Op::Remove(format!("m{}", rng.random_range(0..4))),
        };
        let _ = stores[r].write(2_000 + t, "s", "k", op);
        stores[r].handle_timeout(5_000 + t);
        while let Some(b) = stores[r].poll_broadcast() {
            payloads.push(b.payload);
        }
        if rng.random_bool(0.3) && !payloads.is_empty() {
            if let Some(p) = payloads.get(rng.random_range(0..payloads.len())) {
                let other = rng.random_range(0..3);
                stores[other].handle_payload(6_000, &p.clone());
            }
        }
    }
    stores
        .iter()
        .map(|s| {
            s.tables
                .get("s")
                .and_then(|t| t.get("k"))
                .map(|slot| slot.crdt.clone())
                .unwrap_or_else(|| match kind {
                    Kind::Lww => Crdt::Lww(Lww::write(clock::Stamp::new(0, 0, ""), None)),
                    Kind::Counter => Crdt::Counter(Counter::default()),
                    Kind::Set => Crdt::Set(OrSet::default()),
                })
        })
        .collect()
}

/// Runs one anti-entropy exchange started by `i` with `j`; returns the bytes both sent.
fn sync_pair(stores: &mut [Stores], i: usize, j: usize) -> usize {
    let mut bytes = 0;
    let mut request = stores[i].sync_start(20_000).expect("no exchange running");
    for _ in 0..4 {
        bytes += request.len();
        let reply = stores[j].serve_sync(20_000, &request).expect("valid step");
        bytes += reply.len();
        match stores[i]
            .handle_sync_reply(20_000, &reply)
            .expect("valid answer")
        {
            Some(next) => request = next,
            None => return bytes,
        }
    }
    panic!("a sync takes at most three exchanges");
}

#[test]
fn anti_entropy_sends_only_the_keys_that_differ() {
    let mut stores = replicas(2);
    for k in 0..2_000 {
        let value = format!(
            "{{\"worker\":\"http://10.0.{}.{}:8000\"}}",
            k / 250,
            k % 250
        );
        for s in stores.iter_mut() {
            s.write(
                2_000,
                "workers",
                &format!("w{k:04}"),
                Op::Put(value.clone().into_bytes()),
            )
            .expect("write");
        }
    }
    // Both now hold the same keys, written separately: stamps differ, so the states differ.
    // Bring them together once, then change a few keys on one side.
    sync_pair(&mut stores, 0, 1);
    sync_pair(&mut stores, 1, 0);
    assert_eq!(roots(&stores[0]), roots(&stores[1]));
    let steady = sync_pair(&mut stores, 0, 1);
    assert!(
        steady < 100,
        "one exchange of roots in steady state: {steady} bytes"
    );
    let mut differing_bytes = 0;
    for k in 0..5 {
        let view = stores[1]
            .write(
                3_000,
                "workers",
                &format!("w{:04}", k * 300),
                Op::Put(b"\"moved\"".to_vec()),
            )
            .expect("write");
        differing_bytes += codec::encode_entry(
            "workers",
            &view.key,
            &stores[1].tables["workers"]
                .get(&view.key)
                .expect("slot")
                .crdt,
        )
        .len();
    }
    let bytes = sync_pair(&mut stores, 0, 1);
    assert_eq!(content(&stores[0]), content(&stores[1]));
    let whole: usize = stores[0].bytes();
    println!(
        "5 of 2,000 keys differ ({differing_bytes} bytes of entries): the sync sent {bytes} \
         bytes; the store is {whole} bytes"
    );
    assert!(
        bytes < whole / 20,
        "{bytes} bytes sent for a {whole}-byte store"
    );
}

#[test]
fn writes_over_a_bound_change_nothing_and_name_the_bound() {
    let config = StoreConfig {
        limits: StoreLimits {
            max_keys_per_store: 2,
            max_bytes: 400,
            ..StoreLimits::default()
        },
        ..StoreConfig::default()
    };
    let mut s = Stores::new(config, "n", 1);
    s.write(2, "a", "k1", Op::Put(b"1".to_vec()))
        .expect("first");
    s.write(2, "a", "k2", Op::Put(b"2".to_vec()))
        .expect("second");
    let before = content(&s);
    let third = s.write(3, "a", "k3", Op::Put(b"3".to_vec())).unwrap_err();
    assert_eq!(third.to_string(), "3 keys in the store; the limit is 2");
    let big = s
        .write(
            3,
            "b",
            "k",
            Op::Put(format!("\"{}\"", "x".repeat(500)).into_bytes()),
        )
        .unwrap_err();
    assert!(big.to_string().contains("--store-max-bytes"), "{big}");
    let kind = s.write(3, "a", "k1", Op::Incr(1)).unwrap_err();
    assert_eq!(
        kind.to_string(),
        "the store holds lww keys; this operation needs a counter store"
    );
    assert_eq!(
        s.write(3, "a", "nope", Op::Delete),
        Err(WriteError::NotFound)
    );
    assert_eq!(content(&s), before, "nothing changed");
    assert_eq!(s.stats().writes_refused.values().sum::<u64>(), 4);
}

#[test]
fn local_writes_are_gathered_into_one_payload_and_changes_are_told() {
    let mut s = Stores::new(StoreConfig::default(), "n", 1);
    for i in 0..3 {
        s.write(100, "c", "hits", Op::Incr(i + 1)).expect("incr");
    }
    assert!(s.poll_broadcast().is_none(), "held for the flush delay");
    assert_eq!(s.poll_timeout(), 110);
    s.handle_timeout(110);
    let b = s.poll_broadcast().expect("one payload");
    assert!(b.local);
    assert!(s.poll_broadcast().is_none());
    let changes: Vec<Change> = std::iter::from_fn(|| s.poll_change()).collect();
    let values: Vec<Option<Value>> = changes.iter().map(|c| c.value.clone()).collect();
    assert_eq!(
        values,
        [
            Some(Value::Count(1)),
            Some(Value::Count(3)),
            Some(Value::Count(6))
        ]
    );
    // The three deltas of one key went out as one entry: another node takes it with one
    // change, and gossips it on.
    let mut other = Stores::new(StoreConfig::default(), "m", 1);
    assert_eq!(other.handle_payload(120, &b.payload).merged, 1);
    assert_eq!(
        other.view("c", "hits").map(|v| v.value),
        Some(Value::Count(6))
    );
    assert!(other.poll_broadcast().is_some_and(|b| !b.local));
    assert_eq!(
        other.handle_payload(121, &b.payload).merged,
        0,
        "a duplicate changes nothing"
    );
    assert!(
        other.poll_broadcast().is_none(),
        "and is not gossiped again"
    );
    assert_eq!(other.handle_payload(122, b"\xff\xff").merged, 0);
    assert_eq!(other.stats().entries_refused.get("malformed"), Some(&1));
}

#[test]
fn deletes_are_remembered_for_the_retention_then_forgotten() {
    let config = StoreConfig {
        tombstone_retention_ms: 1_000,
        collect_interval_ms: 500,
        persist: true,
        ..StoreConfig::default()
    };
    let mut s = Stores::new(config, "n", 0);
    s.write(10, "kv", "a", Op::Put(b"1".to_vec())).expect("put");
    s.write(20, "kv", "a", Op::Delete).expect("delete");
    assert!(s.view("kv", "a").is_none());
    assert_eq!(s.summaries()[0].keys, 0);
    s.handle_timeout(1_000);
    assert_eq!(s.tables["kv"].len(), 1, "the tombstone is still held");
    s.handle_timeout(1_500);
    assert!(s.summaries().is_empty(), "forgotten after the retention");
    assert_eq!(s.stats().collected, 1);
    let persisted: Vec<Persist> = std::iter::from_fn(|| s.poll_persist()).collect();
    assert_eq!(persisted.last().map(|p| p.entry.is_none()), Some(true));
}

#[test]
fn persisted_entries_load_quietly_and_later_writes_order_after_them() {
    let persisted = StoreConfig {
        persist: true,
        ..StoreConfig::default()
    };
    let mut first = Stores::new(persisted.clone(), "n", 1);
    first
        .write(5_000, "kv", "a", Op::Put(b"1".to_vec()))
        .expect("put");
    let saved: Vec<Vec<u8>> = std::iter::from_fn(|| first.poll_persist())
        .filter_map(|p| p.entry)
        .collect();
    // Restarted with a clock that went back in time.
    let mut second = Stores::new(persisted, "n", 2);
    let (loaded, errors) = second.load(10, saved.iter().map(Vec::as_slice));
    assert_eq!((loaded, errors.len()), (1, 0));
    assert!(second.poll_change().is_none() && second.poll_persist().is_none());
    let after = second
        .write(10, "kv", "a", Op::Put(b"2".to_vec()))
        .expect("put");
    assert_eq!(
        after.value,
        Some(Value::Json(b"2".to_vec())),
        "the later write wins"
    );
    let (loaded, errors) = second.load(10, [&b"junk"[..]]);
    assert_eq!((loaded, errors.len()), (0, 1));
}

#[test]
fn deltas_of_an_unrelayed_store_are_merged_but_not_gossiped_on() {
    let mut writer = Stores::new(StoreConfig::default(), "w", 1);
    writer
        .write(100, "nodes", "w", Op::Put(b"{\"rss\":1}".to_vec()))
        .expect("put");
    writer
        .write(100, "workers", "a", Op::Put(b"1".to_vec()))
        .expect("put");
    writer.handle_timeout(110);
    let payload = writer.poll_broadcast().expect("one payload").payload;
    let config = StoreConfig {
        unrelayed: vec!["nodes".into()],
        ..StoreConfig::default()
    };
    let mut other = Stores::new(config, "o", 1);
    assert_eq!(other.handle_payload(120, &payload).merged, 2, "both merged");
    assert!(other.view("nodes", "w").is_some());
    let relayed = other.poll_broadcast().expect("the workers delta goes on");
    let entries = codec::decode_deltas(&relayed.payload)
        .expect("decodes")
        .entries;
    let stores: Vec<&str> = entries.iter().map(|e| e.store.as_str()).collect();
    assert_eq!(stores, ["workers"]);
}

#[test]
fn a_roots_digest_tells_a_member_whether_its_stores_differ() {
    let config = StoreConfig {
        sync_interval_ms: 1_000,
        ..StoreConfig::default()
    };
    let mut a = Stores::new(config.clone(), "a", 1);
    let mut b = Stores::new(config, "b", 1);
    assert_eq!(
        a.roots_digest(),
        b.roots_digest(),
        "no stores on either side"
    );

    a.write(100, "kv", "k", Op::Put(b"1".to_vec()))
        .expect("put");
    a.handle_timeout(110);
    let delta = a.poll_broadcast().expect("the write's payload").payload;
    let digest = a.digest_payload();
    let seen = b.handle_payload(120, &digest);
    assert_eq!(seen.merged, 0, "a digest carries no entries");
    assert!(seen.stores_differ, "b lacks a's write");
    assert!(b.poll_broadcast().is_none(), "a digest is not gossiped on");

    let merged = b.handle_payload(130, &delta);
    assert_eq!(merged.merged, 1);
    assert!(!merged.stores_differ, "deltas carry no digest");
    assert_eq!(a.roots_digest(), b.roots_digest());
    assert!(!b.handle_payload(140, &a.digest_payload()).stores_differ);
    assert_eq!(a.stats().digests_sent, 2);

    // A digest once per interval.
    assert_eq!(a.poll_sync(), None, "not due before the first interval");
    a.handle_timeout(1_200);
    assert_eq!(
        a.poll_sync(),
        Some(SyncRound::Digest),
        "due after an interval"
    );
    assert_eq!(a.poll_sync(), None, "once");
    // Also from a node without stores: it may lack everything.
    let mut empty = Stores::new(StoreConfig::default(), "e", 1);
    empty.handle_timeout(60_000);
    assert_eq!(empty.poll_sync(), Some(SyncRound::Digest));
    let digest = empty.digest_payload();
    assert!(
        a.handle_payload(60_010, &digest).stores_differ,
        "a holds what the empty node lacks"
    );
}

#[test]
fn after_a_member_returns_an_exchange_then_quick_digests_then_the_interval() {
    // The default interval, 10 s.
    let mut s = Stores::new(StoreConfig::default(), "s", 1);
    let rounds_until = |s: &mut Stores, from: u64, to: u64| {
        (from..=to)
            .step_by(100)
            .filter_map(|at| {
                s.handle_timeout(at);
                s.poll_sync().map(|round| (at, round))
            })
            .collect::<Vec<_>>()
    };
    assert!(s.member_returned(1_000));
    let rounds = rounds_until(&mut s, 1_000, 30_000);
    use SyncRound::{Digest, Exchange};
    assert_eq!(
        rounds,
        [
            (2_000, Exchange),
            (3_000, Digest),
            (4_000, Digest),
            (5_000, Digest),
            (6_000, Digest),
            (7_000, Digest),
            (17_000, Digest),
            (27_000, Digest),
        ]
    );
}
