//! Datagram framing: header byte + prost `Envelope`, with hard size and count limits.
//!
//! Everything that arrives from the network passes through [`decode_datagram`] or
//! [`decode_push_pull`] and comes out validated (addresses parsed, states known, sizes bounded),
//! so the rest of the core never sees raw wire data.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use prost::Message;

use super::limits::{self, LimitError, MAX_INCARNATION};
use super::payloads;
use super::state::Update;
use super::{DropReason, MemberState, NodeMeta};
use crate::wire;

/// Wire version carried in the first byte of every SWIM datagram. Its 0x40 bit is clear so the
/// runtime can tell SWIM datagrams from QUIC packets on the shared port.
pub const WIRE_VERSION: u8 = 0x01;
/// Largest datagram accepted. Members build datagrams of at most
/// [`Config::max_datagram_size`](super::Config::max_datagram_size) (1,400 bytes); this leaves
/// room for a larger configured size without letting one datagram carry a flood of facts.
pub const MAX_DATAGRAM_BYTES: usize = 4096;
/// Most piggybacked updates accepted in one datagram; more than fit [`MAX_DATAGRAM_BYTES`]
/// unless each is nearly empty.
pub const MAX_UPDATES: usize = 128;
/// Largest push-pull message accepted (bounds memory per exchange): 10,000 members (the default
/// `--max-members`) of the largest metadata the limits allow fit in it.
pub const MAX_PUSH_PULL_BYTES: usize = 16 * 1024 * 1024;
/// Most members accepted in one push-pull message.
pub const MAX_PUSH_PULL_MEMBERS: usize = 100_000;

/// The body of a datagram, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// "Are you alive?"; `target` empty means "whoever you are".
    Ping {
        /// Probe sequence number to echo.
        seq: u32,
        /// Name of the intended receiver.
        target: String,
    },
    /// Probe answer.
    Ack {
        /// Sequence number of the probe answered.
        seq: u32,
    },
    /// Indirect prober's "no answer in time".
    Nack {
        /// Sequence number of the requester's probe.
        seq: u32,
    },
    /// "Probe `target` at `target_addr` for me."
    PingReq {
        /// Requester's sequence number to answer with.
        seq: u32,
        /// Name of the member to probe.
        target: String,
        /// Where to probe it.
        target_addr: SocketAddr,
    },
}

/// A decoded, validated datagram.
#[derive(Clone, Debug, PartialEq)]
pub struct Datagram {
    /// Name of the sending member.
    pub sender: String,
    /// Probe message, or `None` for a pure gossip datagram.
    pub body: Option<Body>,
    /// Piggybacked membership facts.
    pub updates: Vec<Update>,
    /// Payloads of other cores riding along (opaque here; sizes bounded).
    pub payloads: Vec<Vec<u8>>,
}

/// A decoded, validated push-pull message.
#[derive(Clone, Debug, PartialEq)]
pub struct PushPull {
    /// Name of the sending member.
    pub sender: String,
    /// True when the sender is joining.
    pub join: bool,
    /// The sender's full member table.
    pub members: Vec<Update>,
}

/// Frames an envelope as a datagram: header byte, then the encoded envelope.
pub fn encode_datagram(env: &wire::Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + env.encoded_len());
    out.push(WIRE_VERSION);
    env.encode_raw(&mut out);
    out
}

/// Bytes one more `updates` entry of `len` encoded bytes adds to an envelope.
pub fn update_field_len(len: usize) -> usize {
    // One tag byte (field 8, length-delimited), the length prefix, then the message.
    1 + prost::length_delimiter_len(len) + len
}

/// Decodes and validates one datagram.
pub fn decode_datagram(data: &[u8]) -> Result<Datagram, DropReason> {
    if data.len() > MAX_DATAGRAM_BYTES {
        return Err(DropReason::Oversized);
    }
    let (&version, rest) = data.split_first().ok_or(DropReason::Malformed)?;
    if version != WIRE_VERSION {
        return Err(DropReason::UnknownVersion);
    }
    let env = wire::Envelope::decode(rest).map_err(|_| DropReason::Malformed)?;
    check_name(&env.sender)?;
    if env.updates.len() > MAX_UPDATES {
        return Err(DropReason::Oversized);
    }
    let too_big = |p: &Vec<u8>| p.len() > payloads::MAX_PAYLOAD_BYTES;
    if env.payloads.len() > payloads::MAX_PAYLOADS_PER_DATAGRAM || env.payloads.iter().any(too_big)
    {
        return Err(DropReason::Oversized);
    }
    let body = env.body.map(body_from_wire).transpose()?;
    let updates = env
        .updates
        .into_iter()
        .map(update_from_wire)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Datagram {
        sender: env.sender,
        body,
        updates,
        payloads: env.payloads,
    })
}

/// Encodes a push-pull message (no header byte: it travels alone on a QUIC stream).
pub fn encode_push_pull(msg: &wire::PushPull) -> Vec<u8> {
    msg.encode_to_vec()
}

/// Decodes and validates a push-pull message.
pub fn decode_push_pull(data: &[u8]) -> Result<PushPull, DropReason> {
    if data.len() > MAX_PUSH_PULL_BYTES {
        return Err(DropReason::Oversized);
    }
    if data.is_empty() {
        return Err(DropReason::Malformed);
    }
    let msg = wire::PushPull::decode(data).map_err(|_| DropReason::Malformed)?;
    check_name(&msg.sender)?;
    if msg.members.len() > MAX_PUSH_PULL_MEMBERS {
        return Err(DropReason::Oversized);
    }
    let members = msg
        .members
        .into_iter()
        .map(update_from_wire)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PushPull {
        sender: msg.sender,
        join: msg.join,
        members,
    })
}

/// Converts a body to its wire form.
pub fn body_to_wire(body: Body) -> wire::envelope::Body {
    use wire::envelope::Body as W;
    match body {
        Body::Ping { seq, target } => W::Ping(wire::Ping { seq, target }),
        Body::Ack { seq } => W::Ack(wire::Ack { seq }),
        Body::Nack { seq } => W::Nack(wire::Nack { seq }),
        Body::PingReq {
            seq,
            target,
            target_addr,
        } => W::PingReq(wire::PingReq {
            seq,
            target,
            target_address: target_addr.to_string(),
        }),
    }
}

fn body_from_wire(body: wire::envelope::Body) -> Result<Body, DropReason> {
    use wire::envelope::Body as W;
    Ok(match body {
        W::Ping(p) => {
            // An empty target means "whoever you are".
            if !p.target.is_empty() {
                check_name(&p.target)?;
            }
            Body::Ping {
                seq: p.seq,
                target: p.target,
            }
        }
        W::Ack(a) => Body::Ack { seq: a.seq },
        W::Nack(n) => Body::Nack { seq: n.seq },
        W::PingReq(r) => {
            check_name(&r.target)?;
            Body::PingReq {
                seq: r.seq,
                target: r.target,
                target_addr: parse_addr(&r.target_address)?,
            }
        }
    })
}

/// Converts a fact to its wire form; meta is carried only when `with_meta`.
pub fn update_to_wire(u: &Update, with_meta: bool) -> wire::MemberUpdate {
    wire::MemberUpdate {
        name: u.name.clone(),
        address: u.addr.to_string(),
        incarnation: u.incarnation,
        state: state_to_wire(u.state) as i32,
        meta: with_meta.then(|| meta_to_wire(&u.meta)),
        accuser: u.accuser.clone(),
    }
}

/// Validates a wire fact.
pub fn update_from_wire(u: wire::MemberUpdate) -> Result<Update, DropReason> {
    check_name(&u.name)?;
    if !u.accuser.is_empty() {
        check_name(&u.accuser)?;
    }
    if u.incarnation > MAX_INCARNATION {
        return Err(DropReason::InvalidField);
    }
    let state = match wire::MemberState::try_from(u.state) {
        Ok(wire::MemberState::Alive) => MemberState::Alive,
        Ok(wire::MemberState::Suspected) => MemberState::Suspected,
        Ok(wire::MemberState::Down) => MemberState::Down,
        Ok(wire::MemberState::Leaving) => MemberState::Leaving,
        // INIT is never gossiped: a node announces itself only once ALIVE.
        Ok(wire::MemberState::Init) | Err(_) => return Err(DropReason::InvalidField),
    };
    let meta = match u.meta {
        Some(m) => meta_from_wire(m)?,
        None => NodeMeta::default(),
    };
    Ok(Update {
        addr: parse_addr(&u.address)?,
        name: u.name,
        incarnation: u.incarnation,
        state,
        meta,
        accuser: u.accuser,
    })
}

/// Maps our state to the wire enum.
pub fn state_to_wire(state: MemberState) -> wire::MemberState {
    match state {
        MemberState::Init => wire::MemberState::Init,
        MemberState::Alive => wire::MemberState::Alive,
        MemberState::Suspected => wire::MemberState::Suspected,
        MemberState::Down => wire::MemberState::Down,
        MemberState::Leaving => wire::MemberState::Leaving,
    }
}

fn meta_to_wire(meta: &NodeMeta) -> wire::NodeMeta {
    wire::NodeMeta {
        region: meta.region.clone(),
        zone: meta.zone.clone(),
        tags: meta
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn meta_from_wire(m: wire::NodeMeta) -> Result<NodeMeta, DropReason> {
    // prost has already built the map; the count is checked before anything else is.
    if m.tags.len() > limits::MAX_TAGS {
        return Err(DropReason::Oversized);
    }
    let meta = NodeMeta {
        region: m.region,
        zone: m.zone,
        tags: m.tags.into_iter().collect::<BTreeMap<_, _>>(),
    };
    limits::check_meta(&meta).map_err(drop_reason)?;
    Ok(meta)
}

/// Checks a name from the network against [`limits::check_name`].
fn check_name(s: &str) -> Result<(), DropReason> {
    limits::check_name(s).map_err(drop_reason)
}

/// Too long (or too many) is `Oversized`; anything else about the value is `InvalidField`.
fn drop_reason(err: LimitError) -> DropReason {
    match err {
        LimitError::TooLong { .. } => DropReason::Oversized,
        LimitError::Empty(_) | LimitError::BadChar { .. } => DropReason::InvalidField,
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, DropReason> {
    s.parse().map_err(|_| DropReason::InvalidField)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::limits::{MAX_NAME_BYTES, MAX_TAGS, MAX_TAG_KEY_BYTES};

    fn update(name: &str) -> wire::MemberUpdate {
        wire::MemberUpdate {
            name: name.into(),
            address: "10.0.0.1:39527".into(),
            incarnation: 3,
            state: wire::MemberState::Alive as i32,
            meta: None,
            accuser: String::new(),
        }
    }

    fn envelope(updates: Vec<wire::MemberUpdate>) -> wire::Envelope {
        wire::Envelope {
            sender: "a".into(),
            payloads: Vec::new(),
            body: Some(wire::envelope::Body::Ping(wire::Ping {
                seq: 7,
                target: "b".into(),
            })),
            updates,
        }
    }

    fn with_tags(n: usize, key_len: usize) -> wire::MemberUpdate {
        let mut u = update("x");
        let mut meta = wire::NodeMeta::default();
        for i in 0..n {
            meta.tags.insert(format!("{i:0>key_len$}"), "v".into());
        }
        u.meta = Some(meta);
        u
    }

    fn with_sender(sender: &str) -> wire::Envelope {
        let mut env = envelope(vec![]);
        env.sender = sender.into();
        env
    }

    fn with_accuser(accuser: &str) -> wire::MemberUpdate {
        let mut u = update("x");
        u.state = wire::MemberState::Suspected as i32;
        u.accuser = accuser.into();
        u
    }

    fn with_incarnation(incarnation: u64) -> wire::MemberUpdate {
        let mut u = update("x");
        u.incarnation = incarnation;
        u
    }

    #[test]
    fn datagram_limits_table() {
        let mut bad_state = update("x");
        bad_state.state = 99;
        let mut init_state = update("x");
        init_state.state = 0;
        let mut bad_addr = update("x");
        bad_addr.address = "nope".into();
        let mut bad_sender = envelope(vec![]);
        bad_sender.sender.clear();
        let mut bad_req = envelope(vec![]);
        bad_req.body = Some(wire::envelope::Body::PingReq(wire::PingReq {
            seq: 1,
            target: "b".into(),
            target_address: "1.2.3.4".into(),
        }));
        let cases: Vec<(&str, Vec<u8>, Result<(), DropReason>)> = vec![
            ("ok", encode_datagram(&envelope(vec![update("x")])), Ok(())),
            ("empty", vec![], Err(DropReason::Malformed)),
            ("version", vec![0x02, 0, 0], Err(DropReason::UnknownVersion)),
            (
                "garbage",
                vec![WIRE_VERSION, 0xff, 0xff],
                Err(DropReason::Malformed),
            ),
            (
                "too big",
                vec![WIRE_VERSION; MAX_DATAGRAM_BYTES + 1],
                Err(DropReason::Oversized),
            ),
            (
                "too many updates",
                encode_datagram(&envelope(vec![update("x"); MAX_UPDATES + 1])),
                Err(DropReason::Oversized),
            ),
            (
                "long name",
                encode_datagram(&envelope(vec![update(&"n".repeat(MAX_NAME_BYTES + 1))])),
                Err(DropReason::Oversized),
            ),
            (
                "empty name",
                encode_datagram(&envelope(vec![update("")])),
                Err(DropReason::InvalidField),
            ),
            (
                "bad state",
                encode_datagram(&envelope(vec![bad_state])),
                Err(DropReason::InvalidField),
            ),
            (
                "init state",
                encode_datagram(&envelope(vec![init_state])),
                Err(DropReason::InvalidField),
            ),
            (
                "bad address",
                encode_datagram(&envelope(vec![bad_addr])),
                Err(DropReason::InvalidField),
            ),
            (
                "empty sender",
                encode_datagram(&bad_sender),
                Err(DropReason::InvalidField),
            ),
            (
                "bad target address",
                encode_datagram(&bad_req),
                Err(DropReason::InvalidField),
            ),
            (
                "as many tags as allowed",
                encode_datagram(&envelope(vec![with_tags(MAX_TAGS, 3)])),
                Ok(()),
            ),
            (
                "one tag too many",
                encode_datagram(&envelope(vec![with_tags(MAX_TAGS + 1, 3)])),
                Err(DropReason::Oversized),
            ),
            (
                "long tag key",
                encode_datagram(&envelope(vec![with_tags(1, MAX_TAG_KEY_BYTES + 1)])),
                Err(DropReason::Oversized),
            ),
            (
                "newline in a name",
                encode_datagram(&envelope(vec![update("evil\nINFO forged")])),
                Err(DropReason::InvalidField),
            ),
            (
                "escape byte in the sender",
                encode_datagram(&with_sender("\u{1b}[2Jx")),
                Err(DropReason::InvalidField),
            ),
            (
                "bad accuser",
                encode_datagram(&envelope(vec![with_accuser("a b")])),
                Err(DropReason::InvalidField),
            ),
            (
                "incarnation at the ceiling",
                encode_datagram(&envelope(vec![with_incarnation(MAX_INCARNATION)])),
                Ok(()),
            ),
            (
                "incarnation above the ceiling",
                encode_datagram(&envelope(vec![with_incarnation(u64::MAX)])),
                Err(DropReason::InvalidField),
            ),
        ];
        for (what, bytes, want) in cases {
            assert_eq!(decode_datagram(&bytes).map(|_| ()), want, "{what}");
        }
    }

    #[test]
    fn datagram_round_trip() {
        let env = envelope(vec![update("x")]);
        let d = decode_datagram(&encode_datagram(&env)).unwrap();
        assert_eq!(d.sender, "a");
        assert_eq!(
            d.body,
            Some(Body::Ping {
                seq: 7,
                target: "b".into()
            })
        );
        assert_eq!(d.updates.len(), 1);
        assert_eq!(d.updates[0].incarnation, 3);
        assert_eq!(d.updates[0].state, MemberState::Alive);
    }

    #[test]
    fn update_field_len_matches_prost() {
        for n in [0usize, 1, 5, 40] {
            let base = envelope(vec![]);
            let with = envelope(vec![update("member-name"); n]);
            let one = update("member-name").encoded_len();
            assert_eq!(
                with.encoded_len(),
                base.encoded_len() + n * update_field_len(one)
            );
        }
    }

    #[test]
    fn push_pull_limits_table() {
        let ok = wire::PushPull {
            sender: "a".into(),
            join: true,
            members: vec![update("x")],
            keyring: None,
            store_roots: None,
        };
        let no_sender = wire::PushPull {
            sender: String::new(),
            join: true,
            members: vec![],
            keyring: None,
            store_roots: None,
        };
        let cases: Vec<(&str, Vec<u8>, Result<(), DropReason>)> = vec![
            ("ok", encode_push_pull(&ok), Ok(())),
            ("empty", vec![], Err(DropReason::Malformed)),
            (
                "garbage",
                vec![0xff, 0xff, 0xff],
                Err(DropReason::Malformed),
            ),
            (
                "too big",
                vec![0; MAX_PUSH_PULL_BYTES + 1],
                Err(DropReason::Oversized),
            ),
            (
                "no sender",
                encode_push_pull(&no_sender),
                Err(DropReason::InvalidField),
            ),
        ];
        for (what, bytes, want) in cases {
            assert_eq!(decode_push_pull(&bytes).map(|_| ()), want, "{what}");
        }
    }

    #[test]
    fn push_pull_member_count_limit() {
        let many = wire::PushPull {
            sender: "a".into(),
            join: false,
            members: vec![update("x"); MAX_PUSH_PULL_MEMBERS + 1],
            keyring: None,
            store_roots: None,
        };
        assert_eq!(
            decode_push_pull(&encode_push_pull(&many)).map(|_| ()),
            Err(DropReason::Oversized)
        );
    }
}
