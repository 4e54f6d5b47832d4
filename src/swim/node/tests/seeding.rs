//! Joining through seeds and refreshing them, driven by hand: lookups answered with chosen
//! addresses, exchanges answered, refused or left to time out.

use super::*;
use crate::swim::seeding::{Notice, JOIN_BACKOFF_START, MAX_CONTACTS_PER_REFRESH};

/// The joiner "j" at 10.0.0.9.
fn joiner(t0: Instant) -> Swim {
    node("j", 9, t0)
}

/// Every push-pull request the node asks for now.
fn requests(n: &mut Swim) -> Vec<PushPullRequest> {
    std::iter::from_fn(|| n.poll_push_pull()).collect()
}

fn notices(n: &mut Swim) -> Vec<Notice> {
    std::iter::from_fn(|| n.poll_notice()).collect()
}

/// The table of a started seed "s" at `addr(i)`.
fn seed_table(i: u8, t0: Instant) -> Vec<u8> {
    let mut seed = node("s", i, t0);
    seed.start_alone(t0);
    seed.push_pull_payload()
}

/// Joins `j` through one lookup answered with `resolved` and returns the first request.
fn start(j: &mut Swim, t0: Instant, resolved: &[SocketAddr]) -> Vec<PushPullRequest> {
    j.join(t0);
    assert!(j.poll_seed_lookup(), "joining starts with a lookup");
    assert!(!j.poll_seed_lookup(), "asked once");
    j.handle_seeds_resolved(t0, resolved);
    requests(j)
}

#[test]
fn a_round_tries_each_seed_in_turn_skipping_our_own_address() {
    let t0 = Instant::now();
    let mut j = joiner(t0);
    let first = start(&mut j, t0, &[addr(9), addr(2), addr(3), addr(2)]);
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].peer, first[0].purpose), (addr(2), Purpose::Join));
    // Nobody at .2: the next seed is tried at once.
    j.handle_push_pull_reply(t0, &first[0], ExchangeOutcome::Unanswered)
        .expect("no data, no error");
    let second = requests(&mut j);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].peer, addr(3));
    assert_ne!(second[0].id, first[0].id);
    // .3 answers: joined.
    let table = seed_table(3, t0);
    j.handle_push_pull_reply(t0, &second[0], ExchangeOutcome::Answered(&table))
        .expect("merged");
    assert_eq!(j.local().state, MemberState::Alive);
    assert_eq!(notices(&mut j), [Notice::Joined { seed: addr(3) }]);
    assert_eq!(j.timers.get(Timer::Join), None, "no more rounds");
    assert_eq!(j.stats().join_rounds_failed, 0);
}

#[test]
fn a_failed_round_backs_off_then_resolves_again() {
    let t0 = Instant::now();
    let mut j = joiner(t0);
    let req = start(&mut j, t0, &[addr(2)]);
    j.handle_push_pull_reply(t0, &req[0], ExchangeOutcome::Unanswered)
        .expect("no data");
    let notes = notices(&mut j);
    let [Notice::JoinRoundFailed { tried, retry_in }] = notes.as_slice() else {
        panic!("one round failure, got {notes:?}");
    };
    assert_eq!(tried, &[addr(2)]);
    assert!(*retry_in >= JOIN_BACKOFF_START / 2 && *retry_in <= JOIN_BACKOFF_START);
    assert_eq!(j.stats().join_rounds_failed, 1);
    assert_eq!(j.poll_timeout(), Some(t0 + *retry_in));
    assert!(!j.poll_seed_lookup(), "nothing until the backoff ends");
    j.handle_timeout(t0 + *retry_in);
    assert!(
        j.poll_seed_lookup(),
        "the next round resolves the seeds again"
    );
    // Nothing resolves this time: the round fails naming no address, and the wait doubles.
    j.handle_seeds_resolved(t0 + *retry_in, &[]);
    let notes = notices(&mut j);
    let [Notice::JoinRoundFailed {
        tried,
        retry_in: second,
    }] = notes.as_slice()
    else {
        panic!("one round failure, got {notes:?}");
    };
    assert!(tried.is_empty());
    assert!(*second >= JOIN_BACKOFF_START && *second <= JOIN_BACKOFF_START * 2);
}

#[test]
fn a_seed_that_never_reports_is_given_up_after_the_attempt_timeout() {
    let t0 = Instant::now();
    let mut j = joiner(t0);
    let req = start(&mut j, t0, &[addr(2), addr(3)]);
    let timeout = Config::default().seed_attempt_timeout;
    assert_eq!(j.poll_timeout(), Some(t0 + timeout));
    j.handle_timeout(t0 + timeout);
    let next = requests(&mut j);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].peer, addr(3));
    // The late answer of .2 is still merged (it is a member's table), but does not end the
    // attempt with .3 early: only the current attempt advances the round.
    let table = seed_table(2, t0);
    j.handle_push_pull_reply(t0 + timeout, &req[0], ExchangeOutcome::Answered(&table))
        .expect("merged");
    assert_eq!(
        j.local().state,
        MemberState::Alive,
        "a table joins whoever sent it"
    );
    assert_eq!(
        notices(&mut j),
        [],
        "not the attempt in flight: no Joined notice"
    );
    assert_eq!(j.timers.get(Timer::Join), None, "joined: the round is over");
}

#[test]
fn refusals_are_noticed_once_per_run() {
    let t0 = Instant::now();
    let mut j = joiner(t0);
    let mut req = start(&mut j, t0, &[addr(2)]);
    let mut refusal_notices = 0;
    let mut now = t0;
    for _ in 0..3 {
        j.handle_push_pull_reply(now, &req[0], ExchangeOutcome::Refused)
            .expect("no data");
        for notice in notices(&mut j) {
            match notice {
                Notice::SeedsRefusedOurKeys { refused } => {
                    assert_eq!(refused, [addr(2)]);
                    refusal_notices += 1;
                }
                Notice::JoinRoundFailed { retry_in, .. } => now += retry_in,
                other => panic!("unexpected {other:?}"),
            }
        }
        j.handle_timeout(now);
        assert!(j.poll_seed_lookup());
        j.handle_seeds_resolved(now, &[addr(2)]);
        req = requests(&mut j);
    }
    assert_eq!(refusal_notices, 1);
    assert_eq!(j.stats().join_rounds_failed, 3);
    assert_eq!(
        j.local().state,
        MemberState::Init,
        "refused seeds never let us in"
    );
}

#[test]
fn an_unusable_answer_moves_on_to_the_next_seed() {
    let t0 = Instant::now();
    let mut j = joiner(t0);
    let req = start(&mut j, t0, &[addr(2), addr(3)]);
    let err = j.handle_push_pull_reply(t0, &req[0], ExchangeOutcome::Answered(b"\xffjunk"));
    assert!(err.is_err(), "junk is dropped");
    assert_eq!(
        notices(&mut j),
        [Notice::SeedAnswerUnusable { seed: addr(2) }]
    );
    assert_eq!(requests(&mut j)[0].peer, addr(3));
}

#[test]
fn seeds_naming_only_this_node_start_it_alone() {
    let t0 = Instant::now();
    let mut j = joiner(t0);
    let req = start(&mut j, t0, &[addr(9), addr(9)]);
    assert!(req.is_empty());
    assert_eq!(j.local().state, MemberState::Alive);
    assert_eq!(notices(&mut j), [Notice::OnlySelf]);
    assert_eq!(j.timers.get(Timer::Join), None);
    assert!(
        j.timers.get(Timer::SeedRefresh).is_some(),
        "alone, it keeps resolving its seeds to find the others later"
    );
}

#[test]
fn a_peer_that_reaches_us_first_ends_joining() {
    let t0 = Instant::now();
    let mut j = joiner(t0);
    let req = start(&mut j, t0, &[addr(2)]);
    let table = seed_table(3, t0);
    j.handle_push_pull(t0, addr(3), &table).expect("merged");
    assert_eq!(j.local().state, MemberState::Alive);
    assert_eq!(notices(&mut j), [Notice::JoinedByPeer]);
    // The seed's answer that comes later changes nothing about joining.
    j.handle_push_pull_reply(t0, &req[0], ExchangeOutcome::Unanswered)
        .expect("no data");
    assert_eq!(notices(&mut j), []);
    assert_eq!(j.stats().join_rounds_failed, 0);
    assert!(requests(&mut j).iter().all(|r| r.purpose != Purpose::Join));
}

/// A node joined through seed .2 that knows b (.2, ALIVE), c (.3, DOWN); refresh due at once.
fn joined_with_refresh(t0: Instant) -> Swim {
    let config = Config {
        seed_refresh_interval: Duration::from_secs(30),
        ..Config::default()
    };
    let identity = Identity {
        name: "a".into(),
        addr: addr(1),
        meta: NodeMeta::default(),
    };
    let mut a = Swim::new(config, identity, 1, t0).expect("valid identity");
    a.join(t0);
    assert!(a.poll_seed_lookup());
    a.handle_seeds_resolved(t0, &[addr(2)]);
    let req = requests(&mut a);
    let mut b = node("b", 2, t0);
    b.start_alone(t0);
    b.handle_datagram(
        t0,
        addr(4),
        &datagram("d", None, vec![fact("c", 3, 1, MemberState::Down)]),
    );
    let table = b.push_pull_payload();
    a.handle_push_pull_reply(t0, &req[0], ExchangeOutcome::Answered(&table))
        .expect("joined");
    drain(&mut a);
    notices(&mut a);
    assert_eq!(a.member("c").map(|m| m.state), Some(MemberState::Down));
    a
}

/// Fires the refresh timer and answers its lookup with `resolved`; returns the requests.
fn refresh(a: &mut Swim, resolved: &[SocketAddr]) -> (Instant, Vec<PushPullRequest>) {
    let at = a.timers.get(Timer::SeedRefresh).expect("refresh armed");
    a.handle_timeout(at);
    assert!(a.poll_seed_lookup(), "a refresh resolves the seeds");
    a.handle_seeds_resolved(at, resolved);
    let got: Vec<PushPullRequest> = requests(a)
        .into_iter()
        .filter(|r| r.purpose == Purpose::SeedRefresh)
        .collect();
    (at, got)
}

#[test]
fn the_first_refresh_comes_at_a_random_point_then_every_interval() {
    let t0 = Instant::now();
    let mut a = joined_with_refresh(t0);
    let first = a.timers.get(Timer::SeedRefresh).expect("armed once joined");
    let interval = Duration::from_secs(30);
    assert!(first >= t0 + interval / 2 && first < t0 + interval * 3 / 2);
    let (at, _) = refresh(&mut a, &[]);
    assert_eq!(a.timers.get(Timer::SeedRefresh), Some(at + interval));
}

#[test]
fn a_refresh_contacts_addresses_no_live_member_has() {
    let t0 = Instant::now();
    let mut a = joined_with_refresh(t0);
    // Ours, b's (ALIVE), c's (DOWN: something there came back), and a newcomer's.
    let (at, got) = refresh(&mut a, &[addr(1), addr(2), addr(3), addr(5)]);
    let peers: Vec<SocketAddr> = got.iter().map(|r| r.peer).collect();
    assert_eq!(peers, [addr(3), addr(5)]);
    // The newcomer answers with a table naming it: merged, noticed with the changes made.
    let mut e = node("e", 5, t0);
    e.start_alone(t0);
    let table = e.push_pull_payload();
    let to_e = got
        .iter()
        .find(|r| r.peer == addr(5))
        .expect("request to .5");
    a.handle_push_pull_reply(at, to_e, ExchangeOutcome::Answered(&table))
        .expect("merged");
    assert_eq!(a.member("e").map(|m| m.state), Some(MemberState::Alive));
    assert_eq!(
        notices(&mut a),
        [Notice::RefreshMerged {
            peer: addr(5),
            changed: 1
        }]
    );
    // Next refresh: .5 is live now; .3's exchange never reported, but it expired long ago.
    let (at, got) = refresh(&mut a, &[addr(3), addr(5)]);
    let peers: Vec<SocketAddr> = got.iter().map(|r| r.peer).collect();
    assert_eq!(peers, [addr(3)]);
    // Within its attempt timeout an address being contacted is not contacted again.
    a.on_seed_refresh_timer(at);
    assert!(a.poll_seed_lookup());
    a.handle_seeds_resolved(at, &[addr(3)]);
    assert!(requests(&mut a).is_empty());
}

#[test]
fn a_refresh_contacts_a_few_and_rotates_through_the_rest() {
    let t0 = Instant::now();
    let mut a = joined_with_refresh(t0);
    let resolved: Vec<SocketAddr> = (10..17).map(addr).collect();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (at, got) = refresh(&mut a, &resolved);
        assert_eq!(got.len(), MAX_CONTACTS_PER_REFRESH);
        for r in &got {
            seen.push(r.peer);
            a.handle_push_pull_reply(at, r, ExchangeOutcome::Unanswered)
                .expect("no data");
        }
    }
    for addr in &resolved {
        assert!(seen.contains(addr), "{addr} never contacted");
    }
}

#[test]
fn leaving_stops_joining_and_refreshing() {
    let t0 = Instant::now();
    let mut a = joined_with_refresh(t0);
    a.leave(t0);
    assert_eq!(a.timers.get(Timer::SeedRefresh), None);
    let mut j = joiner(t0);
    start(&mut j, t0, &[addr(2)]);
    j.leave(t0);
    assert_eq!(j.timers.get(Timer::Join), None);
    j.handle_timeout(t0 + Duration::from_secs(60));
    assert!(!j.poll_seed_lookup());
    assert!(requests(&mut j).is_empty());
}

#[test]
fn a_zero_refresh_interval_never_refreshes() {
    let t0 = Instant::now();
    let config = Config {
        seed_refresh_interval: Duration::ZERO,
        ..Config::default()
    };
    let identity = Identity {
        name: "j".into(),
        addr: addr(9),
        meta: NodeMeta::default(),
    };
    let mut j = Swim::new(config, identity, 9, t0).expect("valid identity");
    start(&mut j, t0, &[addr(9)]);
    assert_eq!(j.local().state, MemberState::Alive);
    assert_eq!(j.timers.get(Timer::SeedRefresh), None);
}
