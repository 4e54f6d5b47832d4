//! Probing rules: pings, acks, ping-reqs, indirect probes, datagram filling.

use super::*;

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
    let rtt = Duration::from_millis(7);
    let ack = datagram(&target, Some(Body::Ack { seq }), vec![]);
    a.handle_datagram(t + rtt, dst, &ack);
    // A second copy of the ack is not a second round trip.
    a.handle_datagram(t + rtt * 2, dst, &ack);
    let h = &a.stats().probe_rtt;
    assert_eq!((h.count, h.sum_micros), (1, 7_000), "one 7 ms round trip");
    assert_eq!(h.cumulative()[2..4], [0, 1], "in `le 10ms`, not `le 5ms`");
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
    assert_eq!(
        a.stats().probe_rtt.count,
        0,
        "only direct acks are round trips"
    );
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
fn gossip_timer_sleeps_while_nothing_is_pending_and_wakes_for_a_new_fact() {
    use crate::swim::timers::Timer;
    let t0 = Instant::now();
    let mut a = cluster(t0);
    let interval = Config::default().gossip_interval;
    // The facts about b, c and d go out within a few ticks; then the timer stops instead of
    // firing every interval with nothing to send.
    let mut now = t0;
    for _ in 0..20 {
        let Some(at) = a.timers.get(Timer::Gossip) else {
            break;
        };
        now = at;
        a.handle_timeout(now);
        drain(&mut a);
    }
    assert_eq!(a.pending_broadcasts(), 0, "queue drained");
    assert_eq!(
        a.timers.get(Timer::Gossip),
        None,
        "idle gossip timer stopped"
    );
    // A new member's ALIVE arrives: the timer wakes within one interval and carries it.
    let facts = vec![fact("e", 5, 1, MemberState::Alive)];
    a.handle_datagram(now, addr(2), &datagram("b", None, facts));
    drain(&mut a);
    let at = a.timers.get(Timer::Gossip).expect("gossip timer woken");
    assert!(at >= now && at < now + interval, "{:?}", at - now);
    a.handle_timeout(at);
    let (ts, _) = drain(&mut a);
    let carried_e = ts.iter().any(|t| {
        decode_datagram(&t.payload)
            .unwrap()
            .updates
            .iter()
            .any(|u| u.name == "e")
    });
    assert!(carried_e, "the woken tick gossips e");
}

#[test]
fn probing_a_suspect_tells_it_and_keeps_the_suspicion_spreading() {
    let t0 = Instant::now();
    // Enough retransmissions that the suspicion is still queued when a comes to probe b.
    let config = Config {
        retransmit_mult: 50,
        ..Config::default()
    };
    let mut a = cluster_with(t0, config);
    // c suspects b; a holds the suspicion queued for gossip.
    let suspicion = fact("b", 2, 1, MemberState::Suspected);
    a.handle_datagram(t0, addr(3), &datagram("c", None, vec![suspicion]));
    drain(&mut a);
    assert!(a.broadcasts.get("b").is_some());
    // Run a's timers until it probes b; answer every other probe.
    let mut ping_to_b = None;
    for _ in 0..200 {
        let Some(t) = a.poll_timeout() else { break };
        a.handle_timeout(t);
        let (ts, _) = drain(&mut a);
        for transmit in ts {
            let datagram_sent = decode_datagram(&transmit.payload).unwrap();
            match datagram_sent.body {
                Some(Body::Ping { target, .. }) if target == "b" => {
                    ping_to_b = Some(datagram_sent.updates)
                }
                Some(Body::Ping { seq, target }) => {
                    let ack = datagram(&target, Some(Body::Ack { seq }), vec![]);
                    a.handle_datagram(t, transmit.dst, &ack);
                }
                _ => {}
            }
        }
        if ping_to_b.is_some() {
            break;
        }
    }
    let carried = ping_to_b.expect("a probed b");
    assert!(
        carried
            .iter()
            .any(|u| u.name == "b" && u.state == MemberState::Suspected),
        "the ping to the suspect carries the suspicion: {carried:?}"
    );
    assert!(
        a.broadcasts.get("b").is_some(),
        "the suspicion left the gossip queue when b was probed"
    );
}
