//! The suspicion and dissemination policy: nacks as witnesses, telling a suspect at once and
//! checking it until the deadline, refuting straight to the accuser, and urgent facts sent to
//! many members at once.

use super::*;

/// Members b..f (10.0.0.2-6) besides "a": k = 3 indirect checks fit, log10 N < 1.
const OTHERS: [(&str, u8); 5] = [("b", 2), ("c", 3), ("d", 4), ("e", 5), ("f", 6)];

fn name_of(dst: SocketAddr) -> String {
    let i = match dst {
        SocketAddr::V4(v4) => v4.ip().octets()[3],
        SocketAddr::V6(_) => 0,
    };
    char::from(b'a' + i - 1).to_string()
}

/// A started node "a" with `config` that knows ALIVE members b..f, told by a third party.
fn six(t0: Instant, config: Config) -> Swim {
    let identity = Identity {
        name: "a".into(),
        addr: addr(1),
        meta: NodeMeta::default(),
    };
    let mut a = Swim::new(config, identity, 1, t0).expect("valid identity");
    a.start_alone(t0);
    let facts = OTHERS
        .iter()
        .map(|(n, i)| fact(n, *i, 1, MemberState::Alive))
        .collect();
    a.handle_datagram(t0, addr(9), &datagram("x", None, facts));
    drain(&mut a);
    a
}

/// Updates carried by body-less datagrams to `dst`.
fn facts_to(ts: &[Transmit], dst: SocketAddr) -> Vec<wire::MemberUpdate> {
    ts.iter()
        .filter(|t| t.dst == dst)
        .map(|t| decode_datagram(&t.payload).unwrap())
        .filter(|d| d.body.is_none())
        .flat_map(|d| d.updates)
        .map(|u| codec::update_to_wire(&u, false))
        .collect()
}

/// Runs `a` through one probe round that fails; the helpers' nacks come at the given offsets
/// from the probe (None: never). Returns (round end, target name, transmits at the round end).
fn failed_round(a: &mut Swim, nacks_at: &[Option<u64>]) -> (Instant, String, Vec<Transmit>) {
    let (t, seq, target, _) = next_probe_of(a);
    a.handle_timeout(t + Duration::from_millis(500));
    let (ts, _) = drain(a);
    let helpers: Vec<SocketAddr> = bodies(&ts)
        .into_iter()
        .filter_map(|(dst, b)| matches!(b, Some(Body::PingReq { .. })).then_some(dst))
        .collect();
    assert_eq!(helpers.len(), 3, "k = 3 ping-reqs");
    let end = t + Duration::from_secs(1);
    let mut at_end = Vec::new();
    let mut nacks: Vec<(Instant, SocketAddr)> = helpers
        .iter()
        .zip(nacks_at)
        .filter_map(|(h, at)| at.map(|ms| (t + Duration::from_millis(ms), *h)))
        .collect();
    nacks.sort();
    let mut ended = false;
    for (at, helper) in nacks {
        if at >= end && !ended {
            a.handle_timeout(end);
            at_end = drain(a).0;
            ended = true;
        }
        let nack = datagram(&name_of(helper), Some(Body::Nack { seq }), vec![]);
        a.handle_datagram(at, helper, &nack);
        // A duplicated nack is not a second witness.
        a.handle_datagram(at, helper, &nack);
    }
    if !ended {
        a.handle_timeout(end);
        at_end = drain(a).0;
    }
    (end, target, at_end)
}

/// Runs `a` to its next probe and returns (time, seq, target name, target addr).
fn next_probe_of(a: &mut Swim) -> (Instant, u32, String, SocketAddr) {
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

fn state_at(a: &mut Swim, at: Instant, name: &str) -> MemberState {
    a.handle_timeout(at);
    drain(a);
    a.member(name).unwrap().state
}

#[test]
fn nacks_are_witnesses_that_shorten_the_suspicion() {
    let t0 = Instant::now();
    // N = 6: k = 3, floor 0.75 s, ceiling 24 s; timeout after c witnesses:
    // 24 − 23.25 × log(c + 1)/log 4.
    let ms = Duration::from_millis;
    // (nack offsets from the probe, timeout from the round end)
    let cases: [(&[Option<u64>], Duration); 6] = [
        (&[None, None, None], ms(24_000)),
        (&[Some(1_010), None, None], ms(12_375)),
        (&[Some(1_010), Some(1_020), None], ms(5_574)),
        (&[Some(1_010), Some(1_020), Some(1_030)], ms(750)),
        // Nacks before the round ended count the same, at its end.
        (&[Some(900), Some(950), Some(1_010)], ms(750)),
        (&[Some(900), Some(950), Some(990)], ms(750)),
    ];
    for (nacks, timeout) in cases {
        let mut a = six(t0, Config::default());
        let (end, target, _) = failed_round(&mut a, nacks);
        let before = end + timeout - ms(5);
        assert_eq!(
            state_at(&mut a, before, &target),
            MemberState::Suspected,
            "{nacks:?}: still suspected just before {timeout:?}"
        );
        assert_eq!(
            state_at(&mut a, end + timeout + ms(5), &target),
            MemberState::Down,
            "{nacks:?}: DOWN at {timeout:?}"
        );
    }
}

#[test]
fn nack_witnesses_are_not_gossiped() {
    let t0 = Instant::now();
    let mut a = six(t0, Config::default());
    let (_, target, _) = failed_round(&mut a, &[Some(1_010), Some(1_020), Some(1_030)]);
    let pending = a.broadcasts.get(&target).unwrap();
    assert_eq!(
        (pending.state, pending.accuser.as_str()),
        (wire::MemberState::Suspected as i32, "a"),
        "only our own accusation is queued; others keep their longer timers"
    );
}

#[test]
fn suspect_is_told_at_once_then_checked_until_the_deadline() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut a = six(t0, Config::default());
    let (end, target, at_end) = failed_round(&mut a, &[Some(900), Some(950), Some(990)]);
    let target_addr = a.member(&target).unwrap().addr;
    let told = facts_to(&at_end, target_addr);
    assert!(
        told.iter()
            .any(|u| u.name == target && u.state == wire::MemberState::Suspected as i32),
        "told at the round end: {told:?}"
    );
    // Floor 0.75 s: 8 checks per timeout, but no more often than the 200 ms gossip interval:
    // at +200, +400, +600 ms; none at or after the deadline.
    let mut checks = Vec::new();
    while let Some(at) = a.poll_timeout().filter(|at| *at < end + ms(2000)) {
        a.handle_timeout(at);
        let (ts, _) = drain(&mut a);
        let accusations = facts_to(&ts, target_addr)
            .into_iter()
            .filter(|u| u.name == target && u.state == wire::MemberState::Suspected as i32)
            .count();
        if accusations > 0 {
            checks.push(at - end);
        }
    }
    assert_eq!(checks, [ms(200), ms(400), ms(600)]);
    assert_eq!(a.member(&target).unwrap().state, MemberState::Down);
}

#[test]
fn refutation_goes_straight_to_the_accuser() {
    let t0 = Instant::now();
    let mut a = cluster(t0);
    // b relays c's accusation of us.
    let mut accusation = fact("a", 1, 1, MemberState::Suspected);
    accusation.accuser = "c".into();
    a.handle_datagram(t0, addr(2), &datagram("b", None, vec![accusation]));
    let (ts, _) = drain(&mut a);
    assert_eq!(a.local().incarnation, 2);
    for (who, dst) in [("accuser", addr(3)), ("relay", addr(2))] {
        let got = facts_to(&ts, dst);
        assert!(
            got.iter().any(|u| u.name == "a"
                && u.incarnation == 2
                && u.state == wire::MemberState::Alive as i32),
            "{who}: {got:?}"
        );
    }
    assert!(
        facts_to(&ts, addr(4)).is_empty(),
        "d hears it by gossip, not at once"
    );
}

#[derive(Clone, Copy, Debug)]
enum Urgent {
    Join,
    Leave,
    DownVerdict,
    RefutedDown,
}

/// Distinct members that got `subject`'s fact in `state`, alone in a body-less datagram.
fn told_alone(ts: &[Transmit], subject: &str, state: MemberState) -> usize {
    let dsts: std::collections::HashSet<SocketAddr> = ts
        .iter()
        .filter(|t| {
            let d = decode_datagram(&t.payload).unwrap();
            d.body.is_none()
                && d.updates.len() == 1
                && d.updates[0].name == subject
                && d.updates[0].state == state
        })
        .map(|t| t.dst)
        .collect();
    dsts.len()
}

#[test]
fn urgent_facts_go_to_the_announce_fanout_at_once_table() {
    let t0 = Instant::now();
    // (event, announce_fanout, members told at once); a knows 5 others.
    let cases = [
        (Urgent::Join, 256, 6), // the joiner tells a and b..f
        (Urgent::Join, 2, 2),
        (Urgent::Join, 0, 0),
        (Urgent::Leave, 256, 5),
        (Urgent::Leave, 0, 3), // a leave still goes to 3, and the process waits for them
        (Urgent::DownVerdict, 256, 4), // not to the dead one
        (Urgent::DownVerdict, 2, 2),
        (Urgent::RefutedDown, 256, 5),
        (Urgent::RefutedDown, 1, 1),
    ];
    for (event, fanout, want) in cases {
        let config = Config {
            announce_fanout: fanout,
            ..Config::default()
        };
        let mut a = six(t0, config.clone());
        let (ts, subject, state) = match event {
            Urgent::Join => {
                let identity = Identity {
                    name: "j".into(),
                    addr: addr(10),
                    meta: NodeMeta::default(),
                };
                let mut j = Swim::new(config, identity, 7, t0).expect("valid identity");
                j.handle_push_pull(t0, addr(1), &a.push_pull_payload())
                    .unwrap();
                (drain(&mut j).0, "j", MemberState::Alive)
            }
            Urgent::Leave => {
                a.leave(t0);
                (drain(&mut a).0, "a", MemberState::Leaving)
            }
            Urgent::DownVerdict => {
                a.handle_datagram(
                    t0,
                    addr(2),
                    &datagram("b", None, vec![fact("c", 3, 1, MemberState::Suspected)]),
                );
                drain(&mut a);
                // Unconfirmed: the ceiling, 24 s.
                a.handle_timeout(t0 + Duration::from_secs(24));
                (drain(&mut a).0, "c", MemberState::Down)
            }
            Urgent::RefutedDown => {
                a.handle_datagram(
                    t0,
                    addr(2),
                    &datagram("b", None, vec![fact("a", 1, 1, MemberState::Down)]),
                );
                (drain(&mut a).0, "a", MemberState::Alive)
            }
        };
        assert_eq!(
            told_alone(&ts, subject, state),
            want,
            "{event:?} with fanout {fanout}"
        );
    }
}

#[test]
fn join_announcements_are_regossiped_only_beyond_the_fanout() {
    let t0 = Instant::now();
    // (announce_fanout, sender, expect e's ALIVE queued); a knows 6 members with itself.
    let cases = [
        (256, "e2", false), // e tells us itself, and it told everyone: not passed on
        (5, "e2", false),   // 6 ≤ 5 + 1: still covered
        (4, "e2", true),    // 6 > 4 + 1: some members were not told, pass it on
        (256, "b", true),   // b passing on e's ALIVE is ordinary gossip
    ];
    for (fanout, sender, queued) in cases {
        let config = Config {
            announce_fanout: fanout,
            ..Config::default()
        };
        let mut a = six(t0, config);
        let mut e2 = fact("e2", 7, 1, MemberState::Alive);
        e2.meta = None;
        a.handle_datagram(t0, addr(7), &datagram(sender, None, vec![e2]));
        assert_eq!(a.member("e2").map(|m| m.state), Some(MemberState::Alive));
        assert_eq!(
            a.broadcasts.get("e2").is_some(),
            queued,
            "fanout {fanout}, from {sender}"
        );
    }
}

#[test]
fn first_push_pull_after_a_join_comes_about_one_interval_later() {
    let t0 = Instant::now();
    let seed = six(t0, Config::default());
    let interval = Config::default().push_pull_interval; // N = 7: not scaled
    for rng_seed in 0..20 {
        let identity = Identity {
            name: "j".into(),
            addr: addr(10),
            meta: NodeMeta::default(),
        };
        let mut j = Swim::new(Config::default(), identity, rng_seed, t0).expect("valid identity");
        j.handle_push_pull(t0, addr(1), &seed.push_pull_payload())
            .unwrap();
        let at = j.timers.get(Timer::PushPull).unwrap() - t0;
        assert!(
            at >= interval / 2 && at < interval * 3 / 2,
            "seed {rng_seed}: first exchange after {at:?}"
        );
    }
}
