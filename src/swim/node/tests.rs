//! Rules of the state machine, one small scenario (or table) each, driven by hand-made
//! datagrams and explicit instants.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::*;
use crate::swim::codec::{decode_datagram, encode_datagram, WIRE_VERSION};

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 39527))
}

fn node(name: &str, i: u8, t0: Instant) -> Swim {
    let identity = Identity {
        name: name.into(),
        addr: addr(i),
        meta: NodeMeta::default(),
    };
    Swim::new(Config::default(), identity, u64::from(i), t0)
}

fn fact(name: &str, i: u8, inc: u64, state: MemberState) -> wire::MemberUpdate {
    let accuser = if state == MemberState::Suspected {
        "zed".into()
    } else {
        String::new()
    };
    wire::MemberUpdate {
        name: name.into(),
        address: addr(i).to_string(),
        incarnation: inc,
        state: codec::state_to_wire(state) as i32,
        meta: None,
        accuser,
    }
}

fn datagram(sender: &str, body: Option<Body>, updates: Vec<wire::MemberUpdate>) -> Vec<u8> {
    encode_datagram(&wire::Envelope {
        sender: sender.into(),
        body: body.map(codec::body_to_wire),
        updates,
    })
}

fn drain(n: &mut Swim) -> (Vec<Transmit>, Vec<Event>) {
    let mut t = Vec::new();
    while let Some(x) = n.poll_transmit() {
        t.push(x);
    }
    let mut e = Vec::new();
    while let Some(x) = n.poll_event() {
        e.push(x);
    }
    (t, e)
}

fn bodies(ts: &[Transmit]) -> Vec<(SocketAddr, Option<Body>)> {
    ts.iter()
        .map(|t| (t.dst, decode_datagram(&t.payload).unwrap().body))
        .collect()
}

/// A started node "a" (10.0.0.1) that knows ALIVE members b, c, d (10.0.0.2-4).
fn cluster(t0: Instant) -> Swim {
    let mut a = node("a", 1, t0);
    a.start_alone(t0);
    let facts = vec![
        fact("b", 2, 1, MemberState::Alive),
        fact("c", 3, 1, MemberState::Alive),
        fact("d", 4, 1, MemberState::Alive),
    ];
    a.handle_datagram(t0, addr(2), &datagram("b", None, facts));
    drain(&mut a);
    a
}

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
fn ping_handling_table() {
    let t0 = Instant::now();
    // (ping target, expected ack seq, expected NotForUs drops)
    let cases = [
        ("a", Some(7), 0),
        ("", Some(7), 0),
        ("someone-else", None, 1),
    ];
    for (target, want, dropped) in cases {
        let mut a = cluster(t0);
        let ping = datagram(
            "b",
            Some(Body::Ping {
                seq: 7,
                target: target.into(),
            }),
            vec![],
        );
        a.handle_datagram(t0, addr(9), &ping);
        let (ts, _) = drain(&mut a);
        let acks: Vec<_> = bodies(&ts)
            .into_iter()
            .filter_map(|(dst, b)| match b {
                Some(Body::Ack { seq }) => Some((dst, seq)),
                _ => None,
            })
            .collect();
        assert_eq!(
            acks,
            want.map(|s| (addr(9), s)).into_iter().collect::<Vec<_>>(),
            "target {target:?}"
        );
        assert_eq!(
            a.stats()
                .dropped
                .get(&DropReason::NotForUs)
                .copied()
                .unwrap_or(0),
            dropped
        );
    }
}

#[test]
fn unknown_ack_is_ignored_not_dropped() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    a.handle_datagram(
        t0,
        addr(2),
        &datagram("b", Some(Body::Ack { seq: 12345 }), vec![]),
    );
    assert!(a.stats().dropped.is_empty());
    assert_eq!(a.stats().datagrams_received, 2);
    assert!(drain(&mut a).0.is_empty());
}

/// Runs `a` to its next probe and returns (time, seq, target name, target addr).
fn next_probe(a: &mut Swim) -> (Instant, u32, String, SocketAddr) {
    for _ in 0..50 {
        let t = a.poll_timeout().unwrap();
        a.handle_timeout(t);
        let (ts, _) = drain(a);
        for (dst, body) in bodies(&ts) {
            if let Some(Body::Ping { seq, target }) = body {
                return (t, seq, target, dst);
            }
        }
    }
    panic!("no probe sent");
}

#[test]
fn direct_ack_completes_round() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    let (t, seq, target, dst) = next_probe(&mut a);
    let i = target.as_bytes()[0] - b'a' + 1;
    assert_eq!(dst, addr(i));
    a.handle_datagram(t, dst, &datagram(&target, Some(Body::Ack { seq }), vec![]));
    // Nothing more happens for this round: no ping-req, no suspicion.
    a.handle_timeout(t + Duration::from_millis(999));
    let (ts, events) = drain(&mut a);
    assert!(bodies(&ts)
        .iter()
        .all(|(_, b)| !matches!(b, Some(Body::PingReq { .. }))));
    assert!(events.is_empty());
    assert_eq!((a.stats().probes_acked, a.stats().probes_failed), (1, 0));
    assert_eq!(a.health_score(), 0);
}

#[test]
fn failed_round_sends_ping_reqs_then_suspects() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    let (t, seq, target, _) = next_probe(&mut a);
    a.handle_timeout(t + Duration::from_millis(500));
    let (ts, _) = drain(&mut a);
    let reqs: Vec<_> = bodies(&ts)
        .into_iter()
        .filter_map(|(dst, b)| match b {
            Some(Body::PingReq {
                seq: s, target: tg, ..
            }) => Some((dst, s, tg)),
            _ => None,
        })
        .collect();
    // indirect_checks = 3, but only the two other members qualify.
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|(_, s, tg)| *s == seq && *tg == target));
    // One helper nacks; the other stays silent.
    a.handle_datagram(
        t + Duration::from_millis(800),
        reqs[0].0,
        &datagram("x", Some(Body::Nack { seq }), vec![]),
    );
    a.handle_timeout(t + Duration::from_secs(1));
    let (_, events) = drain(&mut a);
    assert!(events.iter().any(|e| matches!(e,
        Event::Changed { member, reason: ChangeReason::ProbeFailed, .. }
            if member.name == target && member.state == MemberState::Suspected)));
    assert_eq!(
        (a.stats().probes_failed, a.stats().suspicions_raised),
        (1, 1)
    );
    assert_eq!(a.health_score(), 1, "failed round");
    // Nacks are counted one (scaled) probe timeout after the round: 2 × 500 ms.
    a.handle_timeout(t + Duration::from_millis(1999));
    assert_eq!(a.health_score(), 1);
    a.handle_timeout(t + Duration::from_millis(2000));
    assert_eq!(a.health_score(), 2, "plus one nack that never came");
}

#[test]
fn indirect_ack_counts_as_success() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    let (t, seq, _, _) = next_probe(&mut a);
    a.handle_timeout(t + Duration::from_millis(500));
    drain(&mut a);
    a.handle_datagram(
        t + Duration::from_millis(600),
        addr(9),
        &datagram("helper", Some(Body::Ack { seq }), vec![]),
    );
    a.handle_timeout(t + Duration::from_secs(1));
    let (_, events) = drain(&mut a);
    assert!(events.is_empty());
    assert_eq!(a.stats().probes_indirect_acked, 1);
}

#[test]
fn serves_indirect_probes_table() {
    let t0 = Instant::now();
    // (target acks?, expected answer to the requester)
    let cases = [
        (true, Body::Ack { seq: 77 }),
        (false, Body::Nack { seq: 77 }),
    ];
    for (acks, want) in cases {
        let mut a = cluster(t0);
        let req = Body::PingReq {
            seq: 77,
            target: "c".into(),
            target_addr: addr(3),
        };
        a.handle_datagram(t0, addr(2), &datagram("b", Some(req), vec![]));
        let (ts, _) = drain(&mut a);
        let Some((dst, Some(Body::Ping { seq, target }))) = bodies(&ts).pop() else {
            panic!("no ping sent");
        };
        assert_eq!((dst, target.as_str()), (addr(3), "c"));
        let t = if acks {
            a.handle_datagram(t0, addr(3), &datagram("c", Some(Body::Ack { seq }), vec![]));
            t0
        } else {
            t0 + Duration::from_millis(500)
        };
        a.handle_timeout(t);
        let (ts, _) = drain(&mut a);
        let answers: Vec<_> = bodies(&ts)
            .into_iter()
            .filter(|(_, b)| matches!(b, Some(Body::Ack { .. } | Body::Nack { .. })))
            .collect();
        assert_eq!(answers, vec![(addr(2), Some(want.clone()))], "acks {acks}");
    }
}

#[test]
fn update_merge_table() {
    use MemberState::*;
    let t0 = Instant::now();
    // (held by a: inc, state; incoming: inc, state, address; expect state, inc, addr, event)
    let cases = [
        ((1, Alive), (2, Alive, 9), (Alive, 2, 9, true)),
        ((2, Alive), (1, Suspected, 2), (Alive, 2, 2, false)),
        ((1, Alive), (1, Alive, 2), (Alive, 1, 2, false)),
        ((1, Alive), (1, Suspected, 9), (Suspected, 1, 2, true)),
        ((1, Suspected), (1, Down, 2), (Down, 1, 2, true)),
        ((1, Down), (1, Suspected, 2), (Down, 1, 2, false)),
        ((1, Down), (2, Alive, 9), (Alive, 2, 9, true)),
        ((1, Down), (1, Down, 9), (Down, 1, 2, false)),
        ((1, Down), (1, Leaving, 9), (Leaving, 1, 9, true)),
        ((1, Leaving), (2, Down, 2), (Leaving, 1, 2, false)),
        ((1, Leaving), (2, Alive, 9), (Alive, 2, 9, true)),
    ];
    for ((inc, state), (u_inc, u_state, u_addr), (w_state, w_inc, w_addr, w_event)) in cases {
        let mut a = cluster(t0);
        let setup = vec![
            fact("b", 2, inc, if state == Alive { Alive } else { Suspected }),
            fact("b", 2, inc, state),
        ];
        a.handle_datagram(t0, addr(2), &datagram("x", None, setup));
        drain(&mut a);
        let pending = a.pending_broadcasts();
        a.handle_datagram(
            t0,
            addr(2),
            &datagram("x", None, vec![fact("b", u_addr, u_inc, u_state)]),
        );
        let (_, events) = drain(&mut a);
        let b = a.member("b").unwrap();
        let what = format!("{inc}/{state:?} <- {u_inc}/{u_state:?}");
        assert_eq!(
            (b.state, b.incarnation, b.addr),
            (w_state, w_inc, addr(w_addr)),
            "{what}"
        );
        assert_eq!(!events.is_empty(), w_event, "{what}: event");
        // Accepted facts are re-gossiped (replacing the older pending one about b).
        assert_eq!(
            a.pending_broadcasts(),
            pending,
            "{what}: one pending fact per member"
        );
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
    // N = 4, k = min(3, 2) = 2, min = 4 s, max = 24 s; no confirmations yet.
    a.handle_timeout(t0 + Duration::from_millis(23_999));
    assert_eq!(a.member("c").unwrap().state, MemberState::Suspected);
    // A second independent accuser shrinks it to 24 - 20 × log(2)/log(3) ≈ 11.38 s.
    let mut confirm = fact("c", 3, 1, MemberState::Suspected);
    confirm.accuser = "d".into();
    let mut b = cluster(t0);
    b.handle_datagram(
        t0,
        addr(2),
        &datagram("b", None, vec![fact("c", 3, 1, MemberState::Suspected)]),
    );
    b.handle_datagram(t0, addr(4), &datagram("d", None, vec![confirm]));
    b.handle_timeout(t0 + Duration::from_millis(11_300));
    assert_eq!(b.member("c").unwrap().state, MemberState::Suspected);
    b.handle_timeout(t0 + Duration::from_millis(11_400));
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
    for _ in 0..20 {
        let t = a.poll_timeout().unwrap();
        a.handle_timeout(t);
        let (ts, _) = drain(&mut a);
        assert!(
            bodies(&ts).iter().all(|(_, b)| b.is_none()),
            "only gossip while leaving"
        );
    }
}

#[test]
fn set_meta_bumps_incarnation_and_broadcasts() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    let meta = NodeMeta {
        region: "eu".into(),
        ..NodeMeta::default()
    };
    a.set_meta(t0, meta.clone());
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
    seed.handle_push_pull(t0, &joiner.push_pull_payload())
        .unwrap();
    assert_eq!(seed.member("j").map(|m| m.state), Some(MemberState::Alive));
    joiner
        .handle_push_pull(t0, &seed.push_pull_payload())
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
        .handle_push_pull(t0, &seed.push_pull_payload())
        .unwrap();
    assert_eq!(
        (joiner.local().state, joiner.local().incarnation),
        (MemberState::Alive, 4)
    );
    seed.handle_push_pull(t0, &joiner.push_pull_payload())
        .unwrap();
    let j = seed.member("j").unwrap();
    assert_eq!(
        (j.state, j.incarnation, j.addr),
        (MemberState::Alive, 4, addr(9))
    );
}

#[test]
fn datagrams_respect_size_budget_and_buddy_goes_first() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    // Many pending facts about members that are not probed (DOWN), so datagrams fill up.
    let many: Vec<_> = (0..200u32)
        .map(|i| fact(&format!("member-{i:04}"), 5, 1, MemberState::Down))
        .collect();
    for chunk in many.chunks(100) {
        a.handle_datagram(t0, addr(2), &datagram("b", None, chunk.to_vec()));
    }
    drain(&mut a);
    let max = Config::default().max_datagram_size;
    let (mut pings_to_c, mut fullest) = (0, 0);
    let mut now = t0;
    for inc in 1..400 {
        if pings_to_c >= 2 {
            break;
        }
        // A fresh suspicion of c (newer incarnation) is pending before every step.
        let fresh = fact("c", 3, inc, MemberState::Suspected);
        a.handle_datagram(now, addr(2), &datagram("b", None, vec![fresh]));
        now = now.max(a.poll_timeout().unwrap());
        a.handle_timeout(now);
        let (ts, _) = drain(&mut a);
        for tr in &ts {
            assert!(tr.payload.len() <= max, "{} bytes", tr.payload.len());
            let d = decode_datagram(&tr.payload).unwrap();
            if matches!(&d.body, Some(Body::Ping { target, .. }) if target == "c") {
                pings_to_c += 1;
                assert_eq!(
                    d.updates.first().map(|u| u.name.as_str()),
                    Some("c"),
                    "buddy first"
                );
            }
            fullest = fullest.max(tr.payload.len());
        }
    }
    assert!(pings_to_c >= 2, "c was never probed");
    // Datagrams are filled up to the budget (less than one more update's worth left).
    assert!(fullest > max - 60, "fullest datagram {fullest} bytes");
}

#[test]
fn gossip_tick_sends_nothing_when_nothing_pending() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    while a.pending_broadcasts() > 0 {
        let t = a.poll_timeout().unwrap();
        a.handle_timeout(t);
        drain(&mut a);
    }
    let t = a.poll_timeout().unwrap();
    a.handle_timeout(t);
    let (ts, _) = drain(&mut a);
    assert!(
        bodies(&ts).iter().all(|(_, b)| b.is_some()),
        "no body-less datagram"
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
    assert_eq!(got.len(), 8);
    assert!(got.iter().all(|p| [addr(2), addr(3), addr(4)].contains(p)));
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
        if a.handle_push_pull(t0, &bytes).is_err() {
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
