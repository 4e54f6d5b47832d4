//! Lifecycle rules: start, leave, metadata, push-pull, robustness.

use super::*;

#[test]
fn starts_init_then_alive() {
    let t0 = Instant::now();
    let mut a = node("a", 1, t0);
    assert_eq!(
        (a.local().state, a.local().incarnation),
        (MemberState::Init, 1)
    );
    assert_eq!(a.poll_timeout(), None, "no timers before joining");
    a.start_alone(t0);
    let (_, events) = drain(&mut a);
    assert_eq!(a.local().state, MemberState::Alive);
    assert!(matches!(
        &events[..],
        [Event::Changed {
            previous: Some(MemberState::Init),
            reason: ChangeReason::LocalStart,
            ..
        }]
    ));
    assert!(a.poll_timeout().is_some());
}

#[test]
fn leave_announces_to_several_members() {
    let t0 = Instant::now();
    let mut alone = node("z", 9, t0);
    alone.start_alone(t0);
    alone.leave(t0);
    assert!(alone.leave_announced(), "nobody to tell");

    let mut a = cluster(t0);
    assert!(!a.leave_announced());
    a.leave(t0);
    let (ts, events) = drain(&mut a);
    assert_eq!(a.local().state, MemberState::Leaving);
    assert!(matches!(
        &events[..],
        [Event::Changed {
            reason: ChangeReason::LocalLeave,
            ..
        }]
    ));
    let dsts: std::collections::HashSet<_> = ts.iter().map(|t| t.dst).collect();
    assert_eq!(dsts.len(), 3);
    for t in &ts {
        let d = decode_datagram(&t.payload).unwrap();
        assert!(d
            .updates
            .iter()
            .any(|u| u.name == "a" && u.state == MemberState::Leaving));
    }
    assert!(a.leave_announced());
    // No more probing while leaving; a fact about us does not trigger a refutation.
    a.handle_datagram(
        t0,
        addr(2),
        &datagram("b", None, vec![fact("a", 1, 1, MemberState::Down)]),
    );
    assert_eq!(a.stats().refutations, 0);
    // Gossip of the LEAVING until its retransmits are spent, then nothing (the gossip timer
    // sleeps on an empty queue).
    let mut gossiped = 0;
    for _ in 0..20 {
        let Some(t) = a.poll_timeout() else {
            break;
        };
        a.handle_timeout(t);
        let (ts, _) = drain(&mut a);
        assert!(
            bodies(&ts).iter().all(|(_, b)| b.is_none()),
            "only gossip while leaving"
        );
        gossiped += ts.len();
    }
    assert!(gossiped > 0, "the LEAVING is gossiped");
}

#[test]
fn set_meta_bumps_incarnation_and_broadcasts() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    let meta = NodeMeta {
        region: "eu".into(),
        ..NodeMeta::default()
    };
    a.set_meta(t0, meta.clone()).expect("valid metadata");
    let (_, events) = drain(&mut a);
    assert_eq!((a.local().incarnation, a.local().meta), (2, meta));
    assert!(matches!(
        &events[..],
        [Event::Changed {
            reason: ChangeReason::MetaChanged,
            ..
        }]
    ));
    let q = a.broadcasts.get("a").unwrap();
    assert_eq!(q.meta.as_ref().map(|m| m.region.as_str()), Some("eu"));
}

#[test]
fn push_pull_joins_and_merges() {
    let t0 = Instant::now();
    let mut joiner = node("j", 9, t0);
    let payload = codec::decode_push_pull(&joiner.push_pull_payload()).unwrap();
    assert!(payload.join);
    assert_eq!(payload.members.len(), 1);
    assert_eq!(
        payload.members[0].state,
        MemberState::Alive,
        "INIT shown as ALIVE"
    );

    let mut seed = cluster(t0);
    seed.handle_push_pull(t0, addr(9), &joiner.push_pull_payload())
        .unwrap();
    assert_eq!(seed.member("j").map(|m| m.state), Some(MemberState::Alive));
    joiner
        .handle_push_pull(t0, addr(1), &seed.push_pull_payload())
        .unwrap();
    let (_, events) = drain(&mut joiner);
    assert_eq!(joiner.local().state, MemberState::Alive);
    assert_eq!(joiner.member_count(), 5);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Changed {
            reason: ChangeReason::LocalStart,
            ..
        }
    )));
    assert_eq!(
        joiner.pending_broadcasts(),
        1,
        "only its own ALIVE is gossiped"
    );
    assert_eq!(joiner.stats().push_pulls, 1);
}

#[test]
fn restarted_node_takes_over_old_entry_on_join() {
    let t0 = Instant::now();
    let mut seed = cluster(t0);
    // The seed holds our old life: DOWN at incarnation 3, old address.
    seed.handle_datagram(
        t0,
        addr(2),
        &datagram("b", None, vec![fact("j", 8, 3, MemberState::Down)]),
    );
    let mut joiner = node("j", 9, t0);
    joiner
        .handle_push_pull(t0, addr(1), &seed.push_pull_payload())
        .unwrap();
    assert_eq!(
        (joiner.local().state, joiner.local().incarnation),
        (MemberState::Alive, 4)
    );
    seed.handle_push_pull(t0, addr(9), &joiner.push_pull_payload())
        .unwrap();
    let j = seed.member("j").unwrap();
    assert_eq!(
        (j.state, j.incarnation, j.addr),
        (MemberState::Alive, 4, addr(9))
    );
}

#[test]
fn push_pull_scale_table() {
    let s = Duration::from_secs(30);
    let cases = [
        (1, 30),
        (32, 30),
        (33, 60),
        (64, 60),
        (65, 90),
        (1000, 180),
        (10_000, 300),
    ];
    for (n, want) in cases {
        assert_eq!(push_pull_scale(s, n), Duration::from_secs(want), "n {n}");
    }
}

#[test]
fn push_pull_tick_offers_a_member() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    let mut got = Vec::new();
    // Small cluster: one push-pull every 30 s. Probes are answered so everyone stays ALIVE.
    let end = t0 + Duration::from_secs(8 * 30 + 1);
    while let Some(t) = a.poll_timeout().filter(|t| *t <= end) {
        a.handle_timeout(t);
        let (ts, _) = drain(&mut a);
        for (dst, body) in bodies(&ts) {
            if let Some(Body::Ping { seq, target }) = body {
                a.handle_datagram(t, dst, &datagram(&target, Some(Body::Ack { seq }), vec![]));
            }
        }
        while let Some(p) = a.poll_push_pull() {
            got.push(p);
        }
    }
    // First tick at a random point of the first interval, then one every 30 s.
    assert!((8..=9).contains(&got.len()), "{} push-pulls", got.len());
    assert!(got.iter().all(
        |p| [addr(2), addr(3), addr(4)].contains(&p.peer) && p.purpose == Purpose::AntiEntropy
    ));
}

#[test]
fn fuzz_random_bytes_never_panic_and_are_counted() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    let mut rng = StdRng::seed_from_u64(99);
    let valid = datagram(
        "b",
        Some(Body::Ping {
            seq: 1,
            target: "a".into(),
        }),
        vec![fact("e", 5, 1, MemberState::Alive)],
    );
    let before = a.stats().datagrams_received;
    let rounds = 5000u64;
    let mut push_pull_errors = 0;
    for i in 0..rounds {
        let mut bytes: Vec<u8> = if i % 2 == 0 {
            let len = rng.random_range(0..300);
            (0..len).map(|_| rng.random()).collect()
        } else {
            // Mutations of a valid datagram reach deeper into the decoder.
            let mut v = valid.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..v.len());
                v[at] = rng.random();
            }
            v
        };
        if i % 3 == 0 {
            if let Some(b) = bytes.first_mut() {
                *b = WIRE_VERSION;
            }
        }
        a.handle_datagram(t0, addr(7), &bytes);
        if a.handle_push_pull(t0, addr(9), &bytes).is_err() {
            push_pull_errors += 1;
        }
    }
    drain(&mut a);
    let dropped: u64 = a.stats().dropped.values().sum();
    let accepted = a.stats().datagrams_received - before;
    assert_eq!(dropped + accepted, rounds + push_pull_errors);
    assert!(dropped > rounds / 2, "most random input is dropped");
    assert_eq!(a.local().state, MemberState::Alive);
}

#[test]
fn saturated_queue_brings_push_pull_forward() {
    // (facts injected, push-pull brought forward?)
    let cases = [(10, false), (40, true)];
    for (count, forward) in cases {
        let t0 = Instant::now();
        let mut a = cluster(t0);
        let late = t0 + Duration::from_secs(600);
        a.timers.set(Timer::PushPull, late);
        let facts: Vec<_> = (0..count)
            .map(|i| fact(&format!("m{i}"), 5, 1, MemberState::Down))
            .collect();
        a.handle_datagram(t0, addr(2), &datagram("b", None, facts));
        let mut now = t0;
        while a.pending_broadcasts() > 0 || now < t0 + Duration::from_secs(1) {
            now = a.poll_timeout().unwrap();
            a.handle_timeout(now);
            drain(&mut a);
        }
        // Let one more gossip tick see the empty queue.
        let tick = now + Config::default().gossip_interval;
        a.handle_timeout(tick);
        let at = a.timers.get(Timer::PushPull).unwrap();
        assert_eq!(at < late, forward, "{count} facts");
        if forward {
            // Within an eighth of the (N = 4) 30 s interval.
            assert!(at <= tick + Duration::from_millis(3750), "{:?}", at - tick);
        }
    }
}

#[test]
fn identity_and_metadata_beyond_the_limits_are_refused() {
    let t0 = Instant::now();
    let identity = |name: &str, zone: &str| Identity {
        name: name.into(),
        addr: addr(1),
        meta: NodeMeta {
            zone: zone.into(),
            ..NodeMeta::default()
        },
    };
    let long = "n".repeat(crate::swim::limits::MAX_NAME_BYTES + 1);
    for (name, zone) in [(long.as_str(), ""), ("a\nb", ""), ("", ""), ("a", "z\u{7}")] {
        let refused = Swim::new(Config::default(), identity(name, zone), 1, t0);
        assert!(refused.is_err(), "{name:?}/{zone:?} accepted");
    }
    let mut a = cluster(t0);
    let before = a.local();
    let mut tags = std::collections::BTreeMap::new();
    tags.insert("k".to_string(), "v".repeat(1000));
    let meta = NodeMeta {
        tags,
        ..NodeMeta::default()
    };
    let err = a.set_meta(t0, meta).expect_err("value too long");
    assert_eq!(
        err.to_string(),
        "value of tag k is 1000 bytes; the limit is 256"
    );
    assert_eq!(a.local(), before, "nothing changed");
}

#[test]
fn a_payload_goes_alone_to_one_member_and_arrives_with_its_sender() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    let to = a
        .send_payload_to_random(b"digest")
        .expect("a has live members");
    let (sent, _) = drain(&mut a);
    assert_eq!(sent.len(), 1, "one datagram");
    assert_eq!(sent[0].dst, to);
    assert!([addr(2), addr(3), addr(4)].contains(&to));
    let datagram = decode_datagram(&sent[0].payload).expect("decodes");
    assert_eq!(datagram.body, None);
    assert_eq!(datagram.payloads, vec![b"digest".to_vec()]);

    let too_large = vec![0u8; payloads::MAX_PAYLOAD_BYTES + 1];
    assert_eq!(a.send_payload_to_random(&too_large), None);
    assert!(a.poll_transmit().is_none());

    // Received from a member at its address: handed out with that address.
    let from_b = encode_datagram(&wire::Envelope {
        sender: "b".into(),
        body: None,
        updates: Vec::new(),
        payloads: vec![b"theirs".to_vec()],
    });
    a.handle_datagram(t0, addr(2), &from_b);
    assert_eq!(a.poll_payload(), Some((addr(2), b"theirs".to_vec())));
    assert_eq!(a.poll_payload(), None);
}
