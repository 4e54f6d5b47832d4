//! The mapping over hand-made snapshots and events: values in, rendered values out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::swim::{ChangeReason, MemberView, NodeMeta};

fn member(name: &str, state: MemberState, local: bool, since: Instant) -> MemberView {
    MemberView {
        name: name.to_string(),
        addr: SocketAddr::from(([127, 0, 0, 1], 7000)),
        state,
        incarnation: 4,
        meta: NodeMeta::default(),
        since,
        is_local: local,
    }
}

/// "n1" (self, ALIVE) with peers n2 ALIVE, n3 SUSPECTED, n4 DOWN, n5 LEAVING.
fn snapshot(t0: Instant) -> Snapshot {
    let local = member("n1", MemberState::Alive, true, t0);
    let mut s = Snapshot::of_local(local.clone(), t0);
    s.members = vec![
        local,
        member("n2", MemberState::Alive, false, t0),
        member("n3", MemberState::Suspected, false, t0),
        member("n4", MemberState::Down, false, t0),
        member("n5", MemberState::Leaving, false, t0),
    ]
    .into();
    s.health_score = 3;
    s.pending_broadcasts = 7;
    s.stats.datagrams_sent = 100;
    s.stats.bytes_sent = 10_000;
    s.stats.datagrams_received = 90;
    s.stats.bytes_received = 9_000;
    s.stats.probes_acked = 40;
    s.stats.probes_indirect_acked = 2;
    s.stats.probes_failed = 1;
    s.stats.suspicions_raised = 1;
    s.stats.refutations = 2;
    s.stats.dropped.insert(DropReason::Malformed, 5);
    s.stats.dropped.insert(DropReason::UnknownVersion, 6);
    s.stats.refused.insert(Refusal::TableFull, 8);
    s.stats.probe_rtt.record(Duration::from_micros(1_500));
    s.counters.stream_sent(300);
    s.counters.stream_received(200);
    s.counters.stream_received(250);
    s.counters.push_pull_ok = 2;
    s.counters.push_pull_failed = 1;
    s.counters.datagrams_dropped_full = 4;
    s.counters.quic_bytes_sent = 4_100;
    s.counters.quic_bytes_received = 3_900;
    // Sealed: each datagram 29 bytes larger on the wire than the core built it.
    s.counters.swim_udp_bytes_sent = 10_000 + 29 * 100;
    s.counters.swim_udp_bytes_received = 9_000 + 29 * 90;
    s.counters.rejected_decrypt = 11;
    s.counters.keyring_version = 2;
    s
}

fn value(text: &str, name: &str, labels: &str) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("{name}{{{labels}}} missing in\n{text}"))
}

#[test]
fn snapshot_values_are_rendered() {
    let m = Metrics::new();
    let text = m.render(&snapshot(Instant::now()));
    let cases: &[(&str, &str, f64)] = &[
        ("router_mesh_peer_connections", r#"peer="n2""#, 1.0),
        ("router_mesh_peer_connections", r#"peer="n3""#, 0.0),
        ("router_mesh_peer_connections", r#"peer="n4""#, 0.0),
        ("router_mesh_peer_connections", r#"peer="n5""#, 0.0),
        ("meshd_members", r#"state="alive""#, 2.0),
        ("meshd_members", r#"state="suspected""#, 1.0),
        ("meshd_members", r#"state="down""#, 1.0),
        ("meshd_members", r#"state="leaving""#, 1.0),
        ("router_mesh_batches_total", r#"direction="sent""#, 101.0),
        ("router_mesh_batches_total", r#"direction="received""#, 92.0),
        ("router_mesh_bytes_total", r#"direction="sent""#, 10_300.0),
        (
            "router_mesh_bytes_total",
            r#"direction="received""#,
            9_450.0,
        ),
        (
            "meshd_udp_bytes_total",
            r#"direction="sent",kind="swim""#,
            12_900.0,
        ),
        (
            "meshd_udp_bytes_total",
            r#"direction="sent",kind="quic""#,
            4_100.0,
        ),
        (
            "meshd_udp_bytes_total",
            r#"direction="received",kind="swim""#,
            11_610.0,
        ),
        (
            "meshd_datagrams_rejected_total",
            r#"reason="decrypt""#,
            11.0,
        ),
        (
            "meshd_datagrams_rejected_total",
            r#"reason="unsealed""#,
            0.0,
        ),
        ("meshd_keyring_version", "", 2.0),
        (
            "meshd_udp_bytes_total",
            r#"direction="received",kind="quic""#,
            3_900.0,
        ),
        ("router_mesh_snapshot_trigger_total", "", 3.0),
        ("meshd_probes_total", r#"result="ack""#, 40.0),
        ("meshd_probes_total", r#"result="indirect_ack""#, 2.0),
        ("meshd_probes_total", r#"result="timeout""#, 1.0),
        ("meshd_suspicions_raised_total", "", 1.0),
        ("meshd_suspicions_refuted_total", "", 2.0),
        ("meshd_local_health_score", "", 3.0),
        ("meshd_incarnation", "", 4.0),
        ("meshd_broadcast_queue_depth", "", 7.0),
        ("meshd_dropped_packets_total", r#"reason="malformed""#, 5.0),
        (
            "meshd_dropped_packets_total",
            r#"reason="unknown_version""#,
            6.0,
        ),
        ("meshd_dropped_packets_total", r#"reason="oversized""#, 0.0),
        ("meshd_dropped_packets_total", r#"reason="queue_full""#, 4.0),
        ("meshd_facts_refused_total", r#"reason="table_full""#, 8.0),
        (
            "meshd_facts_refused_total",
            r#"reason="address_conflict""#,
            0.0,
        ),
        ("meshd_probe_rtt_seconds_bucket", r#"le="0.001""#, 0.0),
        ("meshd_probe_rtt_seconds_bucket", r#"le="0.002""#, 1.0),
        ("meshd_probe_rtt_seconds_bucket", r#"le="+Inf""#, 1.0),
        ("meshd_probe_rtt_seconds_sum", "", 0.0015),
        ("meshd_probe_rtt_seconds_count", "", 1.0),
    ];
    for (name, labels, want) in cases {
        assert_eq!(value(&text, name, labels), *want, "{name}{{{labels}}}");
    }
    assert!(sample(&text, "router_mesh_peer_connections", r#"peer="n1""#).is_none());
    assert!(text.contains("# TYPE meshd_probe_rtt_seconds histogram"));
    assert!(text.contains("# TYPE router_mesh_peer_connections gauge"));
    assert!(text.contains("# TYPE router_mesh_batches_total counter"));
}

#[test]
fn the_leader_series_reads_1_and_its_predecessor_0() {
    let m = Metrics::new();
    let mut s = snapshot(Instant::now());
    s.leader = crate::coordination::leader(s.members.iter(), None);
    let text = m.render(&s);
    // n1 and n2 ALIVE of n1-n4 (n5 LEAVING): n1 leads, 2 of 4 is no quorum.
    assert_eq!(value(&text, "meshd_leader", r#"name="n1""#), 1.0);
    assert_eq!(value(&text, "meshd_has_quorum", ""), 0.0);
    s.leader.leader = Some("n2".into());
    s.leader.has_quorum = true;
    let text = m.render(&s);
    assert_eq!(value(&text, "meshd_leader", r#"name="n1""#), 0.0);
    assert_eq!(value(&text, "meshd_leader", r#"name="n2""#), 1.0);
    assert_eq!(value(&text, "meshd_has_quorum", ""), 1.0);
}

#[test]
fn labelled_series_are_exported_at_zero_before_their_first_event() {
    let text = Metrics::new().render(&snapshot(Instant::now()));
    for outcome in ["alive", "down", "leaving"] {
        let labels = format!(r#"outcome="{outcome}""#);
        assert_eq!(
            value(&text, "router_mesh_convergence_ms_count", &labels),
            0.0
        );
    }
    assert_eq!(value(&text, "router_mesh_peer_reconnects_total", ""), 0.0);
}

#[test]
fn the_process_series_come_from_proc() {
    let text = Metrics::new().render(&snapshot(Instant::now()));
    assert!(value(&text, "process_resident_memory_bytes", "") > 1_000_000.0);
    assert!(value(&text, "process_open_fds", "") >= 3.0);
    assert!(value(&text, "process_cpu_seconds_total", "") >= 0.0);
    assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
}

#[test]
fn counters_follow_the_latest_totals() {
    let m = Metrics::new();
    let mut s = snapshot(Instant::now());
    m.render(&s);
    s.stats.datagrams_sent = 250;
    let text = m.render(&s);
    assert_eq!(
        value(&text, "router_mesh_batches_total", r#"direction="sent""#),
        251.0
    );
}

fn changed(m: MemberView, previous: Option<MemberState>) -> Event {
    Event::Changed {
        member: m,
        previous,
        reason: ChangeReason::Gossip { from: "n9".into() },
    }
}

#[test]
fn events_count_reconnects_and_time_suspicions() {
    let t0 = Instant::now();
    let m = Metrics::new();
    let snap = snapshot(t0);
    let mut tracker = Tracker::new(&snap);
    let at = |ms| t0 + Duration::from_millis(ms);
    let events = [
        // n3 (SUSPECTED since t0) refutes after 1.5 s: a reconnect, and 1,500 ms "alive".
        changed(
            member("n3", MemberState::Alive, false, at(1_500)),
            Some(MemberState::Suspected),
        ),
        // n2 suspected at 2 s (reincarnated suspicion keeps the first since), DOWN at 7 s.
        changed(
            member("n2", MemberState::Suspected, false, at(2_000)),
            Some(MemberState::Alive),
        ),
        changed(
            member("n2", MemberState::Suspected, false, at(2_000)),
            Some(MemberState::Suspected),
        ),
        changed(
            member("n2", MemberState::Down, false, at(7_000)),
            Some(MemberState::Suspected),
        ),
        // n4 DOWN → ALIVE: a reconnect, no suspicion timed.
        changed(
            member("n4", MemberState::Alive, false, at(8_000)),
            Some(MemberState::Down),
        ),
        // Self going ALIVE from SUSPECTED is not a peer reconnect.
        changed(
            member("n1", MemberState::Alive, true, at(8_000)),
            Some(MemberState::Suspected),
        ),
        // A new member appearing ALIVE is not a reconnect.
        changed(member("n6", MemberState::Alive, false, at(8_000)), None),
        Event::Reaped { name: "n5".into() },
    ];
    for e in &events {
        m.observe(&mut tracker, e);
    }
    let mut s = snapshot(t0);
    s.members = s
        .members
        .iter()
        .filter(|m| m.name != "n5")
        .cloned()
        .collect();
    let text = m.render(&s);
    assert_eq!(value(&text, "router_mesh_peer_reconnects_total", ""), 2.0);
    let conv = "router_mesh_convergence_ms";
    assert_eq!(
        value(&text, &format!("{conv}_count"), r#"outcome="alive""#),
        1.0
    );
    assert_eq!(
        value(&text, &format!("{conv}_sum"), r#"outcome="alive""#),
        1_500.0
    );
    assert_eq!(
        value(&text, &format!("{conv}_count"), r#"outcome="down""#),
        1.0
    );
    assert_eq!(
        value(&text, &format!("{conv}_sum"), r#"outcome="down""#),
        5_000.0
    );
    assert_eq!(
        value(
            &text,
            &format!("{conv}_bucket"),
            r#"outcome="down",le="4000""#
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            &format!("{conv}_bucket"),
            r#"outcome="down",le="8000""#
        ),
        1.0
    );
    assert!(text.contains(&format!("# TYPE {conv} histogram")));
    // The reaped peer still reads 0 (it is no longer in the snapshot).
    assert_eq!(
        value(&text, "router_mesh_peer_connections", r#"peer="n5""#),
        0.0
    );
}

#[test]
fn two_nodes_in_one_process_keep_separate_series() {
    let t0 = Instant::now();
    let (a, b) = (Metrics::new(), Metrics::new());
    let mut s = snapshot(t0);
    a.render(&s);
    s.stats.probes_acked = 1;
    let text_b = b.render(&s);
    let text_a = a.render(&snapshot(t0));
    assert_eq!(
        value(&text_a, "meshd_probes_total", r#"result="ack""#),
        40.0
    );
    assert_eq!(value(&text_b, "meshd_probes_total", r#"result="ack""#), 1.0);
}

#[test]
fn sample_reads_exact_series_only() {
    let text = "a_total{x=\"1\"} 3\na_total 4\na_total_sum 9\n";
    assert_eq!(sample(text, "a_total", "x=\"1\""), Some(3.0));
    assert_eq!(sample(text, "a_total", ""), Some(4.0));
    assert_eq!(sample(text, "a", ""), None);
}
