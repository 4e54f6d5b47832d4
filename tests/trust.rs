//! Trust, shown by attack: hand-made datagrams and QUIC connections from an outsider on its own
//! loopback address against real `meshd agent` processes, once in the clear and once with a
//! cluster key (`--encrypt-key`). Each attack asserts what must hold with a key (and, where the
//! core defends itself regardless, without one) and prints one `MEASURED attack:` line with both
//! outcomes: the attack table of docs/security.md ("Without a key").
//!
//! Every wait is bounded by a deadline; every process is killed by PID when its `Node` drops.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use meshd::runtime::socket::SharedSocket;
use meshd::runtime::tls::TlsConfigs;
use meshd::runtime::{quic, socket::SwimDatagram};
use meshd::seal::{Key, Keyring, KEY_BYTES, NONCE_BYTES};
use meshd::swim::codec;
use meshd::wire;

/// The cluster key of the keyed runs, and another one an outsider might hold.
fn key(byte: u8) -> Key {
    Key::from_bytes([byte; KEY_BYTES])
}

/// Whether a run's cluster has a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Clear,
    Keyed,
}

impl Mode {
    fn flags(self) -> Vec<String> {
        let mut flags: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
        if self == Mode::Keyed {
            flags.extend(["--encrypt-key".to_string(), key(1).to_base64()]);
        }
        flags
    }
}

/// A 3-node cluster `{prefix}1..3` on 127.0.subnet.1..3, converged.
fn cluster(prefix: &str, subnet: u8, mode: Mode, extra: &[&str]) -> Vec<Node> {
    let mut flags = mode.flags();
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let nodes = start_cluster(prefix, subnet, 3, &flags);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3))
        .unwrap_or_else(|| panic!("{prefix} ({mode:?}) did not converge"));
    nodes
}

/// An outsider with a UDP socket on its own loopback address.
struct Attacker {
    socket: UdpSocket,
}

impl Attacker {
    fn new(ip: Ipv4Addr) -> Attacker {
        let socket = UdpSocket::bind((ip, 0)).expect("attacker binds its own loopback address");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        Attacker { socket }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("attacker address")
    }

    /// Sends an envelope as a plain datagram (an outsider has no key).
    fn send(&self, to: SocketAddr, envelope: &wire::Envelope) -> usize {
        self.send_bytes(to, &codec::encode_datagram(envelope))
    }

    fn send_bytes(&self, to: SocketAddr, bytes: &[u8]) -> usize {
        self.socket.send_to(bytes, to).expect("send");
        bytes.len()
    }

    /// Every datagram that arrives within `window`.
    fn receive_for(&self, window: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + window;
        let mut got = Vec::new();
        let mut buf = [0u8; 65_536];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
            }
        }
        got
    }
}

fn fact(
    name: &str,
    addr: SocketAddr,
    incarnation: u64,
    state: wire::MemberState,
) -> wire::MemberUpdate {
    wire::MemberUpdate {
        name: name.into(),
        address: addr.to_string(),
        incarnation,
        state: state as i32,
        meta: None,
        accuser: if state == wire::MemberState::Suspected {
            "n2".into()
        } else {
            String::new()
        },
    }
}

fn gossip(sender: &str, updates: Vec<wire::MemberUpdate>) -> wire::Envelope {
    wire::Envelope {
        sender: sender.into(),
        payloads: Vec::new(),
        body: None,
        updates,
    }
}

/// A counter of a node's `/metrics`, 0 when absent.
fn counter(node: &Node, name: &str, labels: &str) -> f64 {
    node.metric(name, labels).unwrap_or(0.0)
}

/// Whether `observer` ever shows `member` in something other than ALIVE at `addr` during
/// `window`; returns what it saw that was off (state, address), if anything.
fn disturbed(observer: &Node, member: &str, addr: SocketAddr, window: Duration) -> Option<String> {
    let mut seen = None;
    holds_for(window, || {
        if let Some(m) = observer.member(member) {
            let (state, address) = (m["state"].clone(), m["address"].clone());
            if state != "ALIVE" || address != addr.to_string() {
                seen.get_or_insert(format!("{state} at {address}"));
            }
        }
        true
    });
    seen
}

/// One row of the attack table.
fn report(attack: &str, clear: &str, keyed: &str) {
    eprintln!("MEASURED attack: {attack} | without a key: {clear} | with a key: {keyed}");
}

/// A forged DOWN or LEAVING about a live member. With the highest incarnation (2^64 − 1) it is
/// not believed even in the clear (the codec caps incarnations at 2^48, so a member can always
/// refute); with the next incarnation it is believed in the clear until the victim refutes;
/// with a key it is never even opened.
#[test]
fn forged_down_and_leaving_change_nothing_with_a_key() {
    let mut rows = Vec::new();
    for (mode, subnet) in [(Mode::Clear, 86), (Mode::Keyed, 87)] {
        let nodes = cluster("fd", subnet, mode, &[]);
        let (n1, n3) = (&nodes[0], &nodes[2]);
        let attacker = Attacker::new(node_ip(subnet, 200));
        let mut outcome = Vec::new();
        for (what, at_max, state) in [
            ("DOWN at 2^64-1", true, wire::MemberState::Down),
            ("LEAVING at 2^64-1", true, wire::MemberState::Leaving),
            ("DOWN at incarnation+1", false, wire::MemberState::Down),
            (
                "LEAVING at incarnation+1",
                false,
                wire::MemberState::Leaving,
            ),
        ] {
            let held = n1.incarnation_of("fd3").expect("fd3 listed");
            let inc = if at_max { u64::MAX } else { held + 1 };
            let forged = gossip("x", vec![fact("fd3", n3.mesh_addr(), inc, state)]);
            attacker.send(n1.mesh_addr(), &forged);
            let seen = disturbed(n1, "fd3", n3.mesh_addr(), Duration::from_secs(2));
            if mode == Mode::Keyed || at_max {
                assert_eq!(seen, None, "{mode:?}: forged {what} was believed");
            }
            // Whatever happened, the victim is ALIVE everywhere again (it refuted).
            let all: Vec<&Node> = nodes.iter().collect();
            wait_until(Duration::from_secs(20), || all_see_alive(&all, 3))
                .unwrap_or_else(|| panic!("{mode:?}: the cluster did not recover from {what}"));
            outcome.push(format!(
                "{what}: {}",
                seen.map_or("ignored".to_string(), |s| format!(
                    "believed ({s}), then refuted"
                ))
            ));
        }
        if mode == Mode::Keyed {
            assert!(counter(n1, "meshd_datagrams_rejected_total", r#"reason="unsealed""#) >= 4.0);
        }
        rows.push(outcome.join("; "));
    }
    report("forged DOWN / LEAVING", &rows[0], &rows[1]);
}

/// A forged ALIVE at a higher incarnation, claiming the victim now lives at the attacker's
/// address. In the clear, sent as if by the victim itself, it moves the victim until the victim
/// hears of it and refutes; relayed as a third party's gossip it is refused (a live member
/// moves only by its own word). With a key nothing opens.
#[test]
fn a_forged_alive_cannot_steal_a_live_members_address_with_a_key() {
    let mut rows = Vec::new();
    for (mode, subnet) in [(Mode::Clear, 72), (Mode::Keyed, 73)] {
        let nodes = cluster("fa", subnet, mode, &[]);
        let (n1, n3) = (&nodes[0], &nodes[2]);
        let attacker = Attacker::new(node_ip(subnet, 200));
        let stolen = |inc| vec![fact("fa3", attacker.addr(), inc, wire::MemberState::Alive)];
        // As gossip from a third party: refused even in the clear.
        attacker.send(n1.mesh_addr(), &gossip("fa2", stolen(5)));
        let relayed = disturbed(n1, "fa3", n3.mesh_addr(), Duration::from_secs(2));
        assert_eq!(
            relayed, None,
            "{mode:?}: a relayed address change was believed"
        );
        // As the victim itself, from the address it claims.
        attacker.send(n1.mesh_addr(), &gossip("fa3", stolen(10)));
        let direct = disturbed(n1, "fa3", n3.mesh_addr(), Duration::from_secs(2));
        if mode == Mode::Keyed {
            assert_eq!(direct, None, "keyed: the address moved");
        }
        let back = wait_until(Duration::from_secs(20), || {
            n1.member("fa3").is_some_and(|m| {
                m["address"] == n3.mesh_addr().to_string() && m["state"] == "ALIVE"
            })
        });
        assert!(
            back.is_some(),
            "{mode:?}: fa3 never got its address back at fa1"
        );
        let conflicts = counter(
            n1,
            "meshd_facts_refused_total",
            r#"reason="address_conflict""#,
        );
        rows.push(format!(
            "relayed: refused ({conflicts} counted); as the victim: {}",
            direct.map_or("ignored".to_string(), |s| format!(
                "believed ({s}) until it refuted"
            ))
        ));
    }
    report("forged ALIVE moving a member's address", &rows[0], &rows[1]);
}

/// 100 forged suspicions, each at the victim's next incarnation, make a live member refute 100
/// times in the clear (its incarnation climbs); with a key, none arrives.
#[test]
fn forged_suspicions_do_not_drive_incarnations_with_a_key() {
    let mut rows = Vec::new();
    for (mode, subnet) in [(Mode::Clear, 74), (Mode::Keyed, 75)] {
        let nodes = cluster("fs", subnet, mode, &[]);
        let (n1, n3) = (&nodes[0], &nodes[2]);
        let attacker = Attacker::new(node_ip(subnet, 200));
        let before = n3.incarnation_of("fs3").expect("fs3 lists itself");
        for i in 1..=100 {
            let forged = gossip(
                "x",
                vec![fact(
                    "fs3",
                    n3.mesh_addr(),
                    before + i,
                    wire::MemberState::Suspected,
                )],
            );
            attacker.send(n1.mesh_addr(), &forged);
        }
        match mode {
            // The victim hears the newest suspicion and outbids it.
            Mode::Clear => {
                let refuted = wait_until(Duration::from_secs(10), || {
                    n3.incarnation_of("fs3").is_some_and(|i| i > before + 100)
                });
                assert!(
                    refuted.is_some(),
                    "clear: fs3 never refuted the forged suspicions"
                );
            }
            Mode::Keyed => {
                let unchanged = holds_for(Duration::from_secs(2), || {
                    n3.incarnation_of("fs3") == Some(before)
                });
                assert!(unchanged, "keyed: the victim refuted forged suspicions");
            }
        }
        let after = n3.incarnation_of("fs3").expect("fs3 lists itself");
        rows.push(format!("incarnation {before} -> {after}"));
    }
    report("100 forged suspicions", &rows[0], &rows[1]);
}

/// Hand-made member facts: a flood of 50,000 fake members in datagrams, names with a newline
/// and a terminal escape, metadata over the limits. In the clear the table stops at
/// `--max-members` and invalid names and metadata are dropped by the codec; with a key nothing
/// gets in at all.
#[test]
fn fake_members_and_hostile_names_get_nowhere() {
    let mut rows = Vec::new();
    for (mode, subnet) in [(Mode::Clear, 76), (Mode::Keyed, 77)] {
        let nodes = cluster("fm", subnet, mode, &["--max-members", "2000"]);
        let n1 = &nodes[0];
        let attacker = Attacker::new(node_ip(subnet, 200));
        // First the hostile facts alone, so that nothing but the codec can be what drops them.
        let hostile = [
            "evil\n2026-12-02T00:00:00Z  INFO forged: membership changed member=admin",
            "tty\u{1b}[2J\u{1b}[31mred",
        ];
        for name in hostile {
            let forged = vec![fact(name, attacker.addr(), 1, wire::MemberState::Alive)];
            attacker.send(n1.mesh_addr(), &gossip("x", forged));
        }
        let mut fat = fact("fat", attacker.addr(), 1, wire::MemberState::Alive);
        fat.meta = Some(wire::NodeMeta {
            region: String::new(),
            zone: String::new(),
            tags: (0..32)
                .map(|i| (format!("k{i}"), "v".repeat(250)))
                .collect(),
        });
        attacker.send(n1.mesh_addr(), &gossip("x", vec![fat]));
        let dropped = || match mode {
            Mode::Clear => {
                counter(
                    n1,
                    "meshd_dropped_packets_total",
                    r#"reason="invalid_field""#,
                ) + counter(n1, "meshd_dropped_packets_total", r#"reason="oversized""#)
            }
            Mode::Keyed => counter(n1, "meshd_datagrams_rejected_total", r#"reason="unsealed""#),
        };
        let all_dropped = wait_until(Duration::from_secs(5), || dropped() >= 3.0);
        assert!(
            all_dropped.is_some(),
            "{mode:?}: hostile datagrams not dropped ({})",
            dropped()
        );
        let log = n1.log_tail(100_000);
        assert!(
            !log.contains('\u{1b}'),
            "{mode:?}: an escape byte reached the log"
        );
        assert!(!log.contains("\nforged"), "{mode:?}: a forged log line");
        assert!(
            n1.member("fat").is_none(),
            "{mode:?}: over-limit metadata accepted"
        );
        // Then the flood.
        let mut sent = 0usize;
        let fake = |i: usize| {
            let addr = SocketAddr::from(([127, 99, (i / 250) as u8 % 250, (i % 250) as u8 + 1], 9));
            fact(&format!("fake{i}"), addr, 1, wire::MemberState::Alive)
        };
        for chunk in (0..50_000).collect::<Vec<_>>().chunks(100) {
            sent += attacker.send(
                n1.mesh_addr(),
                &gossip("x", chunk.iter().map(|&i| fake(i)).collect()),
            );
        }
        let listed = || {
            n1.status()
                .and_then(|s| s["nodes"].as_array().map(Vec::len))
                .unwrap_or(0)
        };
        let refused = || counter(n1, "meshd_facts_refused_total", r#"reason="table_full""#);
        match mode {
            Mode::Clear => {
                let full = wait_until(Duration::from_secs(15), || {
                    listed() >= 2000 && refused() > 0.0
                });
                assert!(
                    full.is_some(),
                    "clear: the fakes did not fill the table ({})",
                    listed()
                );
            }
            Mode::Keyed => {
                assert!(
                    holds_for(Duration::from_secs(3), || listed() == 3),
                    "keyed: fakes listed"
                );
            }
        }
        let last = listed();
        match mode {
            Mode::Clear => assert!(last <= 2000, "table beyond --max-members: {last}"),
            Mode::Keyed => assert_eq!(last, 3, "keyed: fake members got in"),
        }
        let (refused, invalid) = (refused(), dropped());
        rows.push(format!(
            "{last} members listed after 50,000 fakes in {sent} bytes (--max-members 2000; \
             {refused} facts refused for a full table); 2 hostile names and 8 KB of tags: \
             {invalid} datagrams dropped"
        ));
    }
    report(
        "fake members, hostile names, huge metadata",
        &rows[0],
        &rows[1],
    );
}

/// A stranger's ping is answered with a bare ack, no bigger than the ping (no gossip to an
/// address that is no member's); a stranger's ping-req for a third party is not served. With a
/// key, neither gets an answer at all.
#[test]
fn strangers_cannot_use_the_cluster_as_a_reflector() {
    let mut rows = Vec::new();
    for (mode, subnet) in [(Mode::Clear, 78), (Mode::Keyed, 79)] {
        let nodes = cluster("rf", subnet, mode, &[]);
        let n1 = &nodes[0];
        let attacker = Attacker::new(node_ip(subnet, 200));
        let victim = Attacker::new(node_ip(subnet, 201));
        let ping = wire::Envelope {
            sender: "x".into(),
            payloads: Vec::new(),
            body: Some(wire::envelope::Body::Ping(wire::Ping {
                seq: 1,
                target: String::new(),
            })),
            updates: vec![],
        };
        let sent = attacker.send(n1.mesh_addr(), &ping);
        let answers = attacker.receive_for(Duration::from_millis(800));
        let answered: usize = answers.iter().map(Vec::len).sum();
        assert!(
            answered <= sent,
            "{mode:?}: {answered} bytes back for {sent}"
        );
        let req = wire::Envelope {
            sender: "x".into(),
            payloads: Vec::new(),
            body: Some(wire::envelope::Body::PingReq(wire::PingReq {
                seq: 2,
                target: "rf2".into(),
                target_address: victim.addr().to_string(),
            })),
            updates: vec![],
        };
        attacker.send(n1.mesh_addr(), &req);
        let reflected = victim.receive_for(Duration::from_millis(800));
        assert!(
            reflected.is_empty(),
            "{mode:?}: the cluster pinged a third party for a stranger"
        );
        if mode == Mode::Keyed {
            assert!(answers.is_empty(), "keyed: a stranger got an answer");
        }
        rows.push(format!(
            "ping of {sent} B answered with {answered} B; ping-req for a third party: {} datagrams to it",
            reflected.len()
        ));
    }
    report(
        "reflection (stranger's ping / ping-req)",
        &rows[0],
        &rows[1],
    );
}

/// A QUIC client with its own certificate (no key, or another key) pushing 1,000 fake members:
/// accepted in the clear (that is what running without a key means), refused in the handshake
/// with a key, the request never read.
#[test]
fn a_push_pull_from_a_foreign_certificate_is_refused_with_a_key() {
    let mut rows = Vec::new();
    for (mode, subnet, outsider_keys) in [
        (Mode::Clear, 80, vec![]),
        (Mode::Keyed, 81, vec![]),
        (Mode::Keyed, 82, vec![key(9)]),
    ] {
        let nodes = cluster("pp", subnet, mode, &[]);
        let n1 = &nodes[0];
        let fakes: Vec<wire::MemberUpdate> = (0..1000)
            .map(|i| {
                fact(
                    &format!("ghost{i}"),
                    SocketAddr::from(([127, 98, 0, 1], 9000 + i as u16)),
                    1,
                    wire::MemberState::Alive,
                )
            })
            .collect();
        let payload = codec::encode_push_pull(&wire::PushPull {
            sender: "outsider".into(),
            join: false,
            members: fakes,
            keyring: None,
            store_roots: None,
        });
        let result = push_pull_as_outsider(
            node_ip(subnet, 200),
            &outsider_keys,
            n1.mesh_addr(),
            &payload,
        );
        let listed = n1
            .status()
            .and_then(|s| s["nodes"].as_array().map(Vec::len))
            .unwrap_or(0);
        // Counters reach /metrics with the node's next published snapshot.
        let counted = wait_until(Duration::from_secs(5), || {
            counter(n1, "meshd_quic_handshakes_failed_total", "") >= 1.0
        });
        let refused = counter(n1, "meshd_quic_handshakes_failed_total", "");
        match mode {
            Mode::Clear => assert!(result.is_ok(), "clear: {result:?}"),
            Mode::Keyed => {
                let err = result
                    .clone()
                    .expect_err("keyed: a foreign certificate got through");
                assert!(err.contains("handshake"), "{err}");
                assert_eq!(listed, 3, "keyed: ghosts listed");
                assert!(
                    counted.is_some(),
                    "keyed: the refusal is counted ({refused})"
                );
            }
        }
        let who = if outsider_keys.is_empty() {
            "no key"
        } else {
            "another key"
        };
        rows.push(format!(
            "outsider with {who}: {} ({listed} members listed)",
            match &result {
                Ok(_) => "exchange accepted".to_string(),
                Err(e) => e.clone(),
            }
        ));
    }
    report(
        "QUIC push-pull of 1,000 fake members",
        &rows[0],
        &format!("{}; {}", rows[1], rows[2]),
    );
}

/// Runs one push-pull from `ip` with a QUIC endpoint trusting `keys` (empty: the built-in
/// public identity of a node without a key).
fn push_pull_as_outsider(
    ip: Ipv4Addr,
    keys: &[Key],
    to: SocketAddr,
    payload: &[u8],
) -> Result<usize, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let udp = Arc::new(tokio::net::UdpSocket::bind((ip, 0)).await.expect("bind"));
        let (tx, _rx) = tokio::sync::mpsc::channel::<SwimDatagram>(16);
        let tls = TlsConfigs::new(keys, b"", quic::transport()).expect("tls");
        let endpoint =
            quic::endpoint(Arc::new(SharedSocket::new(udp, tx)), &tls).expect("endpoint");
        let dial = tls.push_pull_dial();
        let result = quic::exchange(&endpoint, &dial, to, payload, Duration::from_secs(3)).await;
        endpoint.close(0u32.into(), b"done");
        match result {
            Ok(reply) => Ok(reply.len()),
            Err(e) if e.is_handshake_refusal() => Err(format!("refused in the handshake ({e})")),
            Err(e) => Err(format!("failed: {e}")),
        }
    })
}

/// Replays of captured sealed datagrams (the test holds the key, as a wiretap of a member
/// would hold its datagrams): a suspicion and a leave of an incarnation the victim has since
/// outbid change nothing; a datagram sealed 10 minutes ago does not open at all.
#[test]
fn replayed_sealed_datagrams_change_nothing() {
    let nodes = cluster("rp", 83, Mode::Keyed, &[]);
    let (n1, n3) = (&nodes[0], &nodes[2]);
    let attacker = Attacker::new(node_ip(83, 200));
    let ring = Keyring::new(vec![key(1)]).expect("keyring");
    let now = || {
        u32::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs(),
        )
        .expect("fits")
    };
    let sealed_at = |at: u32, nonce: u8, env: &wire::Envelope| {
        ring.seal(b"", at, [nonce; NONCE_BYTES], &codec::encode_datagram(env))
    };
    let inc = n1.incarnation_of("rp3").expect("rp3 listed");
    // "Captured" when they were current: rp2 suspecting rp3, and a leave of rp3.
    let suspicion = sealed_at(
        now(),
        1,
        &gossip(
            "rp2",
            vec![fact(
                "rp3",
                n3.mesh_addr(),
                inc,
                wire::MemberState::Suspected,
            )],
        ),
    );
    let leave = sealed_at(
        now(),
        2,
        &gossip(
            "rp3",
            vec![fact("rp3", n3.mesh_addr(), inc, wire::MemberState::Leaving)],
        ),
    );
    // Played once: rp3 is suspected and refutes, outbidding both.
    attacker.send_bytes(n1.mesh_addr(), &suspicion);
    let refuted = wait_until(Duration::from_secs(10), || {
        n1.incarnation_of("rp3").is_some_and(|i| i > inc)
    });
    assert!(refuted.is_some(), "rp3 did not refute the first suspicion");
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(10), || all_see_alive(&all, 3)).expect("alive again");
    let outbid = n1.incarnation_of("rp3").expect("listed");
    // Replayed later: stale by incarnation, nothing happens.
    for replay in [&suspicion, &leave] {
        attacker.send_bytes(n1.mesh_addr(), replay);
    }
    let seen = disturbed(n1, "rp3", n3.mesh_addr(), Duration::from_secs(2));
    assert_eq!(seen, None, "a replay changed rp3");
    assert_eq!(
        n1.incarnation_of("rp3"),
        Some(outbid),
        "a replay made rp3 refute again"
    );
    // Sealed 10 minutes ago (a member since forgotten, say): refused by age.
    let old = sealed_at(
        now() - 600,
        3,
        &gossip(
            "rp9",
            vec![fact("rp9", attacker.addr(), 1, wire::MemberState::Alive)],
        ),
    );
    attacker.send_bytes(n1.mesh_addr(), &old);
    let stale = wait_until(Duration::from_secs(5), || {
        counter(n1, "meshd_datagrams_rejected_total", r#"reason="stale""#) >= 1.0
    });
    assert!(
        stale.is_some(),
        "an old sealed datagram was not refused as stale"
    );
    assert!(n1.member("rp9").is_none(), "a replay brought a member in");
    report(
        "replay of captured sealed datagrams",
        "(no sealing: anything can be forged, replays included)",
        &format!(
            "suspicion and leave of incarnation {inc} replayed after rp3 reached {outbid}: \
             ignored; a datagram sealed 600 s ago: refused as stale"
        ),
    );
}

/// A node with another key (or none, or another label) is never let in and says why once; one
/// that shares the key joins.
#[test]
fn a_node_with_the_wrong_key_stays_out_and_says_why() {
    let subnet = 84;
    let seed = Node::start(
        "wk1",
        node_ip(subnet, 1),
        &[],
        &Mode::Keyed
            .flags()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let seeds = [seed.mesh_addr()];
    let wrong_key = key(2).to_base64();
    let right_key = key(1).to_base64();
    let mut fast: Vec<&str> = FAST.to_vec();
    let cases: [(&str, Vec<&str>); 3] = [
        ("wk2", vec!["--encrypt-key", &wrong_key]),
        (
            "wk3",
            vec!["--encrypt-key", &right_key, "--cluster-label", "other"],
        ),
        ("wk4", vec![]),
    ];
    let mut outsiders = Vec::new();
    for (i, (name, flags)) in cases.iter().enumerate() {
        let mut all = fast.clone();
        all.extend(flags.iter().copied());
        outsiders.push(Node::start(
            name,
            node_ip(subnet, i as u8 + 2),
            &seeds,
            &all,
        ));
    }
    for node in &outsiders[..2] {
        let said = wait_until(Duration::from_secs(15), || {
            node.log_tail(200)
                .contains("nothing they sent could be opened")
        });
        assert!(
            said.is_some(),
            "{} never said its seeds refused its key:\n{}",
            node.name,
            node.log_tail(20)
        );
        let lines = node
            .log_tail(10_000)
            .matches("nothing they sent could be opened")
            .count();
        assert_eq!(lines, 1, "{}: the line is logged once", node.name);
    }
    let joined = holds_for(Duration::from_secs(2), || {
        outsiders
            .iter()
            .all(|n| n.get("/ha/health").is_some_and(|(code, _)| code == 503))
    });
    assert!(joined, "an outsider joined");
    assert_eq!(seed.alive_count(), 1, "the seed lists an outsider");
    fast.extend(["--encrypt-key", &right_key]);
    let insider = Node::start("wk5", node_ip(subnet, 5), &seeds, &fast);
    let both = [&seed, &insider];
    wait_until(Duration::from_secs(15), || all_see_alive(&both, 2)).expect("the key holder joins");
    let refused = counter(&seed, "meshd_quic_handshakes_failed_total", "");
    assert!(refused >= 2.0, "refused handshakes are counted: {refused}");
    report(
        "join with a wrong key / label / no key",
        "(no key: anyone joins)",
        &format!("all three stay out (INIT, 503); the seed counted {refused} refused handshakes; each logged one line naming a key or label mismatch"),
    );
}

/// Runs `meshd keys …` against `node`'s API; returns (success, stdout + stderr).
fn keys_cli(node: &Node, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_meshd"))
        .arg("keys")
        .args(args)
        .args(["--http-addr", &format!("{}:{HTTP_PORT}", node.ip)])
        .output()
        .expect("meshd keys runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The keys of a keyring file, primary first.
fn file_keys(path: &std::path::Path) -> Vec<Key> {
    meshd::seal::file::load(path)
        .expect("keyring file readable")
        .keys()
        .to_vec()
}

/// Online rotation with one node stopped (serf#579): install and use a new key while it is
/// away; started again with its old keyring file it rejoins (the others still hold the old
/// key), takes the new keyring from its join and writes it to its file; then the old key is
/// removed everywhere and everyone still talks.
#[test]
fn a_rotation_reaches_a_node_that_was_away_and_the_old_key_can_go() {
    let subnet = 85;
    let dir = std::env::temp_dir().join(format!("meshd-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let (old, new) = (key(1), key(2));
    let file = |i: u8| dir.join(format!("keyring-{i}.json"));
    let flags = |i: u8| -> Vec<String> {
        let mut f: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
        f.extend([
            "--encrypt-key".into(),
            old.to_base64(),
            "--keyring-file".into(),
            file(i).display().to_string(),
        ]);
        f
    };
    let seed = SocketAddr::from((node_ip(subnet, 1), MESH_PORT));
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| {
            let seeds = if i == 1 { vec![] } else { vec![seed] };
            let f = flags(i);
            let f: Vec<&str> = f.iter().map(String::as_str).collect();
            Node::start(&format!("kr{i}"), node_ip(subnet, i), &seeds, &f)
        })
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3)).expect("converge");
    for i in 1..=3 {
        assert_eq!(
            file_keys(&file(i)),
            vec![old.clone()],
            "file {i} created from the key"
        );
    }

    nodes[2].kill9();
    let first_two: Vec<&Node> = nodes[..2].iter().collect();
    wait_state_everywhere(&first_two, "kr3", "DOWN", Duration::from_secs(30));
    let (ok, out) = keys_cli(&nodes[0], &["install", &new.to_base64()]);
    assert!(ok, "install: {out}");
    assert!(out.contains("install: 2/2 members acknowledged"), "{out}");
    let (ok, out) = keys_cli(&nodes[0], &["use", &new.id().to_string()]);
    assert!(ok, "use: {out}");
    for i in 1..=2 {
        assert_eq!(
            file_keys(&file(i)),
            [new.clone(), old.clone()],
            "file {i} after use"
        );
    }
    assert_eq!(
        file_keys(&file(3)),
        vec![old.clone()],
        "the stopped node's file is untouched"
    );

    nodes[2].restart();
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(30), || all_see_alive(&all, 3))
        .expect("the node that was away rejoins");
    wait_until(Duration::from_secs(10), || {
        file_keys(&file(3)) == [new.clone(), old.clone()]
    })
    .expect("it took the new keyring and wrote it to its file");
    let (ok, out) = keys_cli(&nodes[0], &["remove", &old.to_base64()]);
    assert!(ok, "remove: {out}");
    assert!(out.contains("remove: 3/3 members acknowledged"), "{out}");
    let (ok, out) = keys_cli(&nodes[0], &["remove", &new.to_base64()]);
    assert!(
        !ok && out.contains("primary"),
        "removing the primary key: {out}"
    );
    for i in 1..=3 {
        assert_eq!(
            file_keys(&file(i)),
            vec![new.clone()],
            "file {i} after remove"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file(i))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "file {i} mode");
        }
    }
    // Everyone still talks, under the new key alone: nothing is rejected, nobody is suspected.
    let rejected = |n: &Node| counter(n, "meshd_datagrams_rejected_total", r#"reason="decrypt""#);
    let before: Vec<f64> = nodes.iter().map(rejected).collect();
    let quiet = holds_for(Duration::from_secs(3), || all_see_alive(&all, 3));
    assert!(quiet, "someone fell out after the old key was removed");
    let after: Vec<f64> = nodes.iter().map(rejected).collect();
    assert_eq!(before, after, "datagrams rejected after the rotation");
    let (ok, out) = keys_cli(&nodes[2], &["list"]);
    assert!(ok && out.contains(&new.id().to_string()), "list: {out}");
    report(
        "key rotation with a member stopped",
        "(no keyring)",
        "install and use acknowledged by the 2 live members; the stopped one rejoined with its \
         old file and took the new keyring from its join; remove acknowledged by 3/3; no \
         datagram rejected afterwards",
    );
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

/// True when the server has closed `stream`: a read gives end-of-file or a reset, rather than
/// timing out with nothing to read.
fn closed_by_peer(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Slowloris: 1,050 connections from one address that each send half a request and then
/// nothing. The API keeps answering `/ha/health` to everyone else throughout; the 64 the
/// server admits from that address are closed once their headers are overdue (10 s), the rest
/// at once; both are counted.
#[test]
fn half_sent_requests_do_not_silence_the_api() {
    use std::io::Write;
    let subnet = 88;
    let node = Node::start("sl1", node_ip(subnet, 1), &[], FAST);
    wait_until(Duration::from_secs(10), || {
        node.get("/ha/health").is_some_and(|(c, _)| c == 200)
    })
    .expect("the agent answers");
    let api = SocketAddr::from((node.ip, HTTP_PORT));
    let attacker = SocketAddr::from((node_ip(subnet, 200), 0));
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..1050 {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .bind(&attacker.into())
            .expect("bind the attacker's address");
        if socket
            .connect_timeout(&api.into(), Duration::from_secs(1))
            .is_err()
        {
            continue; // the listen backlog may be full for a moment: that is the attack working
        }
        let mut stream: std::net::TcpStream = socket.into();
        let _ = stream.write_all(b"GET /ha/health HTTP/1.1\r\nHost: x\r\n");
        held.push(stream);
    }
    let opened = held.len();
    // Health answers promptly all along, past the header deadline of the admitted ones.
    let mut slowest = Duration::ZERO;
    let healthy = holds_for(Duration::from_secs(12), || {
        let asked = Instant::now();
        let ok = node.get("/ha/health").is_some_and(|(c, _)| c == 200);
        slowest = slowest.max(asked.elapsed());
        ok && asked.elapsed() < Duration::from_secs(1)
    });
    assert!(
        healthy,
        "/ha/health stopped answering within 1 s (slowest {slowest:?})"
    );
    // Every half-sent request's connection is closed by now (read gives EOF or an error).
    let closed = held.iter_mut().map(closed_by_peer).filter(|c| *c).count();
    assert_eq!(
        closed,
        opened,
        "half-sent requests still open after {:?}",
        started.elapsed()
    );
    let waited = started.elapsed();
    let refused = counter(
        &node,
        "meshd_http_connections_refused_total",
        r#"reason="per_ip_cap""#,
    );
    let timed_out = counter(&node, "meshd_http_connections_timed_out_total", "");
    assert!(
        refused >= (opened - 64) as f64,
        "refused {refused} of {opened}"
    );
    assert!(timed_out >= 64.0, "timed out {timed_out}");
    eprintln!(
        "MEASURED slowloris: {opened} half-sent requests from one address: {refused} closed at \
         once (64 per address), {timed_out} closed for overdue headers; {closed} of them closed \
         after {:.1}s; /ha/health answered every poll, slowest {:.0} ms",
        waited.as_secs_f64(),
        slowest.as_secs_f64() * 1000.0
    );
}

/// A member paused (SIGSTOP) through `install` and `use` holds only the old key when it
/// resumes; the others still hold that key too, and answer it in the key it speaks, so not
/// one datagram is dropped on either side while it catches up from its next push-pull.
#[test]
fn a_member_a_rotation_missed_loses_no_datagram() {
    let subnet = 89;
    let (old, new) = (key(1), key(2));
    let mut flags: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
    flags.extend([
        "--encrypt-key".into(),
        old.to_base64(),
        "--push-pull-interval".into(),
        "5s".into(),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let nodes = start_cluster("pz", subnet, 3, &flags);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3)).expect("converge");
    let rejected = |n: &Node| counter(n, "meshd_datagrams_rejected_total", r#"reason="decrypt""#);
    nodes[2].signal(libc::SIGSTOP);
    let (ok, out) = keys_cli(&nodes[0], &["install", &new.to_base64()]);
    assert!(
        !ok && out.contains("not acknowledged: pz3"),
        "install: {out}"
    );
    // By now pz3 may be DOWN at pz1 (then not asked) or not yet (then not acknowledging).
    let (_, out) = keys_cli(&nodes[0], &["use", &new.to_base64()]);
    assert!(out.contains("use: 2/"), "use: {out}");
    nodes[2].signal(libc::SIGCONT);
    let caught_up = wait_until(Duration::from_secs(30), || {
        nodes[2].metric("meshd_keyring_version", "") == Some(2.0)
    })
    .expect("the paused member takes the new keyring from a push-pull");
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3)).expect("all ALIVE again");
    let dropped: Vec<f64> = nodes.iter().map(rejected).collect();
    assert_eq!(
        dropped,
        [0.0, 0.0, 0.0],
        "datagrams dropped while the rotation caught up"
    );
    report(
        "rotation missed by a paused member",
        "(no keyring)",
        &format!(
            "{} datagrams rejected anywhere; it held the new keyring {:.1}s after it resumed",
            dropped.iter().sum::<f64>(),
            caught_up.as_secs_f64()
        ),
    );
}
