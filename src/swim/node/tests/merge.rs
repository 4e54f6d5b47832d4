//! Merge rules: precedence, new members, refutation, suspicion expiry.

use super::*;

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
        // b's own announcement in `cluster` was not queued (a join announcement); a setup
        // fact from x may have been.
        let b_pending = a.broadcasts.get("b").is_some();
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
            pending + usize::from(w_event && !b_pending),
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
fn corrections_never_exceed_the_datagram_size() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    let mut big = fact("b", 2, 2, MemberState::Alive);
    let mut meta = wire::NodeMeta::default();
    for i in 0..60 {
        meta.tags.insert(format!("key-{i}"), "v".repeat(250));
    }
    big.meta = Some(meta);
    a.handle_datagram(t0, addr(2), &datagram("b", None, vec![big]));
    drain(&mut a);
    a.handle_datagram(
        t0,
        addr(7),
        &datagram("stale", None, vec![fact("b", 2, 1, MemberState::Down)]),
    );
    let (ts, _) = drain(&mut a);
    assert!(ts
        .iter()
        .all(|t| t.payload.len() <= Config::default().max_datagram_size));
}
