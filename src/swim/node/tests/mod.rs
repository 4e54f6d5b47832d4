//! Rules of the state machine, one small scenario (or table) each, driven by hand-made
//! datagrams and explicit instants.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::*;
use crate::swim::codec::{decode_datagram, encode_datagram, WIRE_VERSION};
use crate::swim::seeding::{ExchangeOutcome, Purpose};

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 39527))
}

fn node(name: &str, i: u8, t0: Instant) -> Swim {
    let identity = Identity {
        name: name.into(),
        addr: addr(i),
        meta: NodeMeta::default(),
    };
    Swim::new(Config::default(), identity, u64::from(i), t0).expect("valid identity")
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
        payloads: Vec::new(),
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
    cluster_with(t0, Config::default())
}

/// Like [`cluster`], with `config`.
fn cluster_with(t0: Instant, config: Config) -> Swim {
    let identity = Identity {
        name: "a".into(),
        addr: addr(1),
        meta: NodeMeta::default(),
    };
    let mut a = Swim::new(config, identity, 1, t0).expect("valid identity");
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

mod lifecycle;
mod merge;
mod policy;
mod probing;
mod seeding;
