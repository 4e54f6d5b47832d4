//! Merge rules: precedence, new members, refutation, suspicion expiry.

use super::*;

#[test]
fn update_merge_table() {
    use MemberState::*;
    let t0 = Instant::now();
    // Who sends the incoming fact: a third party ("x" at b's address), or b itself from the
    // address the fact states.
    #[derive(Clone, Copy, Debug)]
    enum Sender {
        Third,
        Subject,
    }
    use Sender::*;
    // (held by a: inc, state; incoming: inc, state, address, sender;
    //  expect state, inc, addr, event)
    let cases = [
        ((1, Alive), (2, Alive, 9, Subject), (Alive, 2, 9, true)),
        // A live member moves only by its own word.
        ((1, Alive), (2, Alive, 9, Third), (Alive, 1, 2, false)),
        ((1, Alive), (2, Down, 9, Third), (Alive, 1, 2, false)),
        ((1, Alive), (2, Alive, 2, Third), (Alive, 2, 2, true)),
        ((2, Alive), (1, Suspected, 2, Third), (Alive, 2, 2, false)),
        ((1, Alive), (1, Alive, 2, Third), (Alive, 1, 2, false)),
        // A suspicion never moves a member, whatever address it names.
        (
            (1, Alive),
            (1, Suspected, 9, Third),
            (Suspected, 1, 2, true),
        ),
        ((1, Suspected), (1, Down, 2, Third), (Down, 1, 2, true)),
        ((1, Down), (1, Suspected, 2, Third), (Down, 1, 2, false)),
        // Once DOWN or LEAVING, anyone may tell where the member came back.
        ((1, Down), (2, Alive, 9, Third), (Alive, 2, 9, true)),
        ((1, Down), (1, Down, 9, Third), (Down, 1, 2, false)),
        ((1, Down), (1, Leaving, 9, Third), (Leaving, 1, 9, true)),
        ((1, Leaving), (2, Down, 2, Third), (Leaving, 1, 2, false)),
        ((1, Leaving), (2, Alive, 9, Third), (Alive, 2, 9, true)),
    ];
    for ((inc, state), (u_inc, u_state, u_addr, sender), (w_state, w_inc, w_addr, w_event)) in cases
    {
        let mut a = cluster(t0);
        let setup = vec![
            fact("b", 2, inc, if state == Alive { Alive } else { Suspected }),
            fact("b", 2, inc, state),
        ];
        a.handle_datagram(t0, addr(2), &datagram("x", None, setup));
        drain(&mut a);
        let pending = a.pending_broadcasts();
        // b's own announcement in `cluster` was not queued (a join announcement); a setup
        // fact from x may have been.
        let b_pending = a.broadcasts.get("b").is_some();
        let incoming = vec![fact("b", u_addr, u_inc, u_state)];
        let (name, from) = match sender {
            Third => ("x", addr(2)),
            Subject => ("b", addr(u_addr)),
        };
        a.handle_datagram(t0, from, &datagram(name, None, incoming));
        let (_, events) = drain(&mut a);
        let b = a.member("b").unwrap();
        let what = format!("{inc}/{state:?} <- {u_inc}/{u_state:?} at {u_addr} from {sender:?}");
        assert_eq!(
            (b.state, b.incarnation, b.addr),
            (w_state, w_inc, addr(w_addr)),
            "{what}"
        );
        assert_eq!(!events.is_empty(), w_event, "{what}: event");
        // Accepted facts are re-gossiped (replacing the older pending one about b).
        assert_eq!(
            a.pending_broadcasts(),
            pending + usize::from(w_event && !b_pending),
            "{what}: one pending fact per member"
        );
        let conflicts = a.stats().refused.get(&Refusal::AddressConflict).copied();
        let refused = !w_event && u_addr != 2 && u_state != Suspected && state == Alive;
        assert_eq!(conflicts, refused.then_some(1), "{what}: counted");
    }
}

#[test]
fn unknown_members_are_added_in_their_state() {
    use MemberState::*;
    let t0 = Instant::now();
    for state in [Alive, Suspected, Down, Leaving] {
        let mut a = cluster(t0);
        a.handle_datagram(
            t0,
            addr(2),
            &datagram("b", None, vec![fact("e", 5, 4, state)]),
        );
        let (_, events) = drain(&mut a);
        assert_eq!(
            a.member("e").map(|m| (m.state, m.incarnation)),
            Some((state, 4))
        );
        assert!(
            matches!(&events[..], [Event::Changed { previous: None, .. }]),
            "{state:?}"
        );
    }
}

#[test]
fn refutation_table() {
    use MemberState::*;
    let t0 = Instant::now();
    // (fact about "a": inc, state, address; expected incarnation, refutations, health)
    let cases = [
        (1, Suspected, 1, 2, 1, 1),
        (1, Down, 1, 2, 1, 1),
        (5, Down, 1, 6, 1, 1),
        (1, Leaving, 1, 2, 1, 0),
        (1, Alive, 9, 2, 1, 0),
        (1, Alive, 1, 1, 0, 0),
        (3, Alive, 1, 4, 1, 0),
        (0, Down, 1, 1, 0, 0),
    ];
    for (inc, state, at, w_inc, w_ref, w_health) in cases {
        let mut a = cluster(t0);
        a.handle_datagram(
            t0,
            addr(2),
            &datagram("b", None, vec![fact("a", at, inc, state)]),
        );
        let (_, events) = drain(&mut a);
        let what = format!("{inc}/{state:?}@{at}");
        assert_eq!(a.local().incarnation, w_inc, "{what}");
        assert_eq!(a.local().state, Alive, "{what}");
        assert_eq!(a.stats().refutations, w_ref, "{what}");
        assert_eq!(a.health_score(), w_health, "{what}");
        if w_ref > 0 {
            assert!(matches!(
                &events[..],
                [Event::Changed {
                    reason: ChangeReason::Refuted,
                    ..
                }]
            ));
            // The refutation is queued: ALIVE at the new incarnation, our address.
            let q = a.broadcasts.get("a").unwrap();
            assert_eq!(
                (q.incarnation, q.state, q.address.as_str()),
                (w_inc, 1, "10.0.0.1:39527")
            );
        }
    }
}

#[test]
fn suspicion_expires_to_down_then_reaped() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    a.handle_datagram(
        t0,
        addr(2),
        &datagram("b", None, vec![fact("c", 3, 1, MemberState::Suspected)]),
    );
    drain(&mut a);
    // N = 4, k = min(3, 2) = 2, min = 0.75 s, max = 24 s; no confirmations yet.
    a.handle_timeout(t0 + Duration::from_millis(23_999));
    assert_eq!(a.member("c").unwrap().state, MemberState::Suspected);
    // A second independent accuser shrinks it to 24 - 23.25 × log(2)/log(3) ≈ 9.33 s.
    let mut confirm = fact("c", 3, 1, MemberState::Suspected);
    confirm.accuser = "d".into();
    let mut b = cluster(t0);
    b.handle_datagram(
        t0,
        addr(2),
        &datagram("b", None, vec![fact("c", 3, 1, MemberState::Suspected)]),
    );
    b.handle_datagram(t0, addr(4), &datagram("d", None, vec![confirm]));
    b.handle_timeout(t0 + Duration::from_millis(9_300));
    assert_eq!(b.member("c").unwrap().state, MemberState::Suspected);
    b.handle_timeout(t0 + Duration::from_millis(9_340));
    assert_eq!(b.member("c").unwrap().state, MemberState::Down);
    a.handle_timeout(t0 + Duration::from_secs(24));
    let (_, events) = drain(&mut a);
    assert!(events.iter().any(|e| matches!(e,
        Event::Changed { member, reason: ChangeReason::SuspicionExpired, .. } if member.state == MemberState::Down)));
    let retention = Config::default().retention;
    a.handle_timeout(t0 + Duration::from_secs(24) + retention - Duration::from_millis(1));
    assert!(a.member("c").is_some());
    a.handle_timeout(t0 + Duration::from_secs(24) + retention);
    let (_, events) = drain(&mut a);
    assert!(a.member("c").is_none());
    assert!(events.contains(&Event::Reaped { name: "c".into() }));
}

#[test]
fn refuted_suspicion_does_not_expire() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    a.handle_datagram(
        t0,
        addr(2),
        &datagram("b", None, vec![fact("c", 3, 1, MemberState::Suspected)]),
    );
    a.handle_datagram(
        t0,
        addr(3),
        &datagram("c", None, vec![fact("c", 3, 2, MemberState::Alive)]),
    );
    a.handle_timeout(t0 + Duration::from_secs(100));
    assert_eq!(
        a.member("c").map(|m| (m.state, m.incarnation)),
        Some((MemberState::Alive, 2))
    );
}

#[test]
fn outdated_accusations_are_answered_with_newer_facts() {
    use MemberState::*;
    let t0 = Instant::now();
    // (subject, its held incarnation, accusation state and incarnation, corrected?)
    let cases = [
        ("b", 2, Suspected, 1, true),
        ("b", 2, Down, 1, true),
        ("b", 2, Suspected, 2, false),
        ("b", 2, Alive, 1, false),
        ("a", 1, Suspected, 0, true), // about ourselves: our newer ALIVE goes back
        ("a", 1, Suspected, 1, true), // we refute, and the refutation goes straight back
    ];
    for (subject, held, state, inc, corrected) in cases {
        let mut a = cluster(t0);
        // The accuser is a member (strangers get no corrections: see the test below).
        a.handle_datagram(
            t0,
            addr(7),
            &datagram("stale", None, vec![fact("stale", 7, 1, Alive)]),
        );
        if subject == "b" {
            a.handle_datagram(
                t0,
                addr(2),
                &datagram("b", None, vec![fact("b", 2, held, Alive)]),
            );
        }
        drain(&mut a);
        a.handle_datagram(
            t0,
            addr(7),
            &datagram("stale", None, vec![fact(subject, 2, inc, state)]),
        );
        let (ts, _) = drain(&mut a);
        let back: Vec<_> = ts
            .iter()
            .filter(|t| t.dst == addr(7))
            .flat_map(|t| decode_datagram(&t.payload).unwrap().updates)
            .filter(|u| u.name == subject && u.state == Alive && u.incarnation > inc)
            .collect();
        assert_eq!(
            !back.is_empty(),
            corrected,
            "{subject} {state:?}@{inc} vs {held}"
        );
    }
}

#[test]
fn strangers_get_bare_acks_and_no_corrections() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    a.handle_datagram(
        t0,
        addr(2),
        &datagram("b", None, vec![fact("b", 2, 2, MemberState::Alive)]),
    );
    drain(&mut a);
    // Queue something to gossip, so an ack to a member would carry it.
    a.handle_datagram(
        t0,
        addr(3),
        &datagram("c", None, vec![fact("e", 5, 1, MemberState::Alive)]),
    );
    drain(&mut a);
    assert!(a.pending_broadcasts() > 0);
    // A ping from an address that is no member's (or a member's name at another address),
    // carrying an outdated accusation: the ack carries nothing, and no correction follows.
    for (sender, from) in [("nobody", addr(77)), ("c", addr(77))] {
        let ping = Body::Ping {
            seq: 5,
            target: "a".into(),
        };
        let stale = vec![fact("b", 2, 1, MemberState::Down)];
        let bytes = datagram(sender, Some(ping), stale);
        a.handle_datagram(t0, from, &bytes);
        let (ts, _) = drain(&mut a);
        assert_eq!(ts.len(), 1, "{sender}: one answer");
        let answer = decode_datagram(&ts[0].payload).unwrap();
        assert_eq!(answer.body, Some(Body::Ack { seq: 5 }), "{sender}");
        assert!(answer.updates.is_empty(), "{sender}: no gossip");
        assert!(
            ts[0].payload.len() <= bytes.len(),
            "{sender}: no amplification"
        );
    }
    // The same ping from member c at its address gets gossip and the correction.
    let ping = Body::Ping {
        seq: 6,
        target: "a".into(),
    };
    let stale = vec![fact("b", 2, 1, MemberState::Down)];
    a.handle_datagram(t0, addr(3), &datagram("c", Some(ping), stale));
    let (ts, _) = drain(&mut a);
    let updates: Vec<_> = ts
        .iter()
        .flat_map(|t| decode_datagram(&t.payload).unwrap().updates)
        .collect();
    assert!(updates.iter().any(|u| u.name == "b" && u.incarnation == 2));
}

#[test]
fn ping_reqs_are_served_only_for_members() {
    let t0 = Instant::now();
    // (requester name, its source address, target name, target address, served?)
    let cases = [
        ("b", addr(2), "c", addr(3), true),
        ("nobody", addr(77), "c", addr(3), false),
        ("b", addr(77), "c", addr(3), false),
        ("b", addr(2), "c", addr(99), false),
        ("b", addr(2), "victim", addr(99), false),
    ];
    for (requester, from, target, target_addr, served) in cases {
        let mut a = cluster(t0);
        let req = Body::PingReq {
            seq: 9,
            target: target.into(),
            target_addr,
        };
        a.handle_datagram(t0, from, &datagram(requester, Some(req), vec![]));
        let (ts, _) = drain(&mut a);
        let pinged = bodies(&ts)
            .iter()
            .any(|(dst, body)| *dst == target_addr && matches!(body, Some(Body::Ping { .. })));
        let what = format!("{requester}@{from} for {target}@{target_addr}");
        assert_eq!(pinged, served, "{what}");
        let refused = a.stats().refused.get(&Refusal::PingReqUnknown).copied();
        assert_eq!(refused, (!served).then_some(1), "{what}: counted");
    }
}

#[test]
fn the_largest_valid_fact_fits_a_correction_datagram() {
    use crate::swim::limits::{MAX_LABEL_BYTES, MAX_NAME_BYTES, MAX_TAGS, MAX_TAG_TOTAL_BYTES};
    let t0 = Instant::now();
    let mut a = cluster(t0);
    // Every field at its limit: the longest name, an IPv6 address, region, zone and tags.
    let name = "b".repeat(MAX_NAME_BYTES);
    let big_addr = SocketAddr::from((
        [0xfe80, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 1],
        65535,
    ));
    let per_tag = MAX_TAG_TOTAL_BYTES / MAX_TAGS;
    let meta = wire::NodeMeta {
        region: "r".repeat(MAX_LABEL_BYTES),
        zone: "z".repeat(MAX_LABEL_BYTES),
        tags: (0..MAX_TAGS)
            .map(|i| (format!("key-{i:02}"), "v".repeat(per_tag - 6)))
            .collect(),
    };
    let big = wire::MemberUpdate {
        name: name.clone(),
        address: big_addr.to_string(),
        incarnation: 2,
        state: wire::MemberState::Alive as i32,
        meta: Some(meta),
        accuser: String::new(),
    };
    a.handle_datagram(t0, big_addr, &datagram(&name, None, vec![big]));
    drain(&mut a);
    assert!(
        a.member(&name).is_some(),
        "the largest valid fact is accepted"
    );
    a.handle_datagram(
        t0,
        addr(2),
        &datagram("b", None, vec![fact(&name, 2, 1, MemberState::Down)]),
    );
    let (ts, _) = drain(&mut a);
    let correction = ts
        .iter()
        .find(|t| {
            decode_datagram(&t.payload)
                .unwrap()
                .updates
                .iter()
                .any(|u| u.name == name)
        })
        .expect("the correction is sent");
    assert!(correction.payload.len() <= Config::default().max_datagram_size);
}

#[test]
fn absurd_incarnation_jumps_are_not_believed() {
    use crate::swim::limits::MAX_INCARNATION_JUMP as JUMP;
    use MemberState::*;
    let t0 = Instant::now();
    // (subject, claimed incarnation and state, believed?) with b held ALIVE at 1 and a at 1.
    let cases = [
        ("b", 1 + JUMP, Down, true),
        ("b", 2 + JUMP, Down, false),
        ("b", 2 + JUMP, Leaving, false),
        ("a", 1 + JUMP, Suspected, true),
        ("a", 2 + JUMP, Down, false),
    ];
    for (subject, inc, state, believed) in cases {
        let mut a = cluster(t0);
        let forged = vec![fact(subject, 2, inc, state)];
        a.handle_datagram(t0, addr(3), &datagram("c", None, forged));
        drain(&mut a);
        let held = a.member(subject).unwrap();
        let what = format!("{subject} {state:?}@{inc}");
        let refused = a.stats().refused.get(&Refusal::IncarnationJump).copied();
        assert_eq!(refused, (!believed).then_some(1), "{what}: counted");
        if subject == "a" {
            // Believed about ourselves means refuted: outbid by one.
            let want = if believed { inc + 1 } else { 1 };
            assert_eq!((held.state, held.incarnation), (Alive, want), "{what}");
        } else {
            let want = if believed { (state, inc) } else { (Alive, 1) };
            assert_eq!((held.state, held.incarnation), want, "{what}");
        }
    }
}

#[test]
fn a_joiner_takes_any_incarnation_of_its_past_life() {
    use crate::swim::limits::MAX_INCARNATION_JUMP as JUMP;
    let t0 = Instant::now();
    let mut seed = cluster(t0);
    let past = vec![fact("j", 8, 5 * JUMP, MemberState::Down)];
    seed.handle_datagram(t0, addr(2), &datagram("b", None, past));
    let mut joiner = node("j", 9, t0);
    joiner
        .handle_push_pull(t0, addr(1), &seed.push_pull_payload())
        .unwrap();
    assert_eq!(joiner.local().incarnation, 5 * JUMP + 1);
}

#[test]
fn a_full_table_refuses_new_members_and_counts_them() {
    let t0 = Instant::now();
    let identity = Identity {
        name: "a".into(),
        addr: addr(1),
        meta: NodeMeta::default(),
    };
    let config = Config {
        max_members: 3,
        ..Config::default()
    };
    let mut a = Swim::new(config, identity, 1, t0).expect("valid identity");
    a.start_alone(t0);
    let facts = ["b", "c", "d", "e"]
        .iter()
        .zip(2u8..)
        .map(|(n, i)| fact(n, i, 1, MemberState::Alive))
        .collect();
    a.handle_datagram(t0, addr(2), &datagram("b", None, facts));
    assert_eq!(a.member_count(), 3, "a, b and c");
    assert_eq!(a.stats().refused.get(&Refusal::TableFull), Some(&2));
    // Known members still change state.
    a.handle_datagram(
        t0,
        addr(2),
        &datagram("b", None, vec![fact("c", 3, 1, MemberState::Down)]),
    );
    assert_eq!(a.member("c").map(|m| m.state), Some(MemberState::Down));
}

#[test]
fn a_pushed_down_about_a_live_member_is_only_a_suspicion() {
    use MemberState::*;
    let t0 = Instant::now();
    // (held state of b, pushed state, expected state of b afterwards)
    let cases = [
        (Alive, Down, Suspected),
        (Suspected, Down, Suspected),
        (Down, Down, Down),
        (Alive, Leaving, Leaving),
    ];
    for (held, pushed, want) in cases {
        let mut a = cluster(t0);
        if held != Alive {
            let setup = vec![fact("b", 2, 1, held)];
            a.handle_datagram(t0, addr(3), &datagram("c", None, setup));
        }
        drain(&mut a);
        // The other half of a healed partition holds b DOWN (and an unknown member DOWN).
        let table = codec::encode_push_pull(&wire::PushPull {
            sender: "x".into(),
            join: false,
            members: vec![fact("b", 2, 1, pushed), fact("gone", 9, 1, Down)],
            keyring: None,
            store_roots: None,
        });
        a.handle_push_pull(t0, addr(9), &table)
            .expect("valid push-pull");
        let b = a.member("b").expect("b known");
        assert_eq!(b.state, want, "held {held:?}, pushed {pushed:?}");
        assert_eq!(
            a.member("gone").map(|m| m.state),
            Some(Down),
            "unknown: as told"
        );
    }
}

#[test]
fn a_stranger_ping_smaller_than_our_ack_gets_no_answer() {
    let t0 = Instant::now();
    let mut a = node("gateway-node-1", 1, t0);
    a.start_alone(t0);
    // "x" pinging "whoever you are" is smaller than an ack from "gateway-node-1": answering
    // would amplify. Naming us as the target (as every real ping does) makes it big enough.
    for (target, answered) in [("", false), ("gateway-node-1", true)] {
        let ping = Body::Ping {
            seq: 300,
            target: target.into(),
        };
        let bytes = datagram("x", Some(ping), vec![]);
        a.handle_datagram(t0, addr(77), &bytes);
        let (ts, _) = drain(&mut a);
        assert_eq!(!ts.is_empty(), answered, "target {target:?}");
        assert!(ts.iter().all(|t| t.payload.len() <= bytes.len()));
    }
    assert_eq!(a.stats().refused.get(&Refusal::AckLargerThanPing), Some(&1));
}
