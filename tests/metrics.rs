//! `GET /metrics` on real `meshd agent` processes: values, not just names.

mod common;

use std::time::Duration;

use common::*;

/// Three nodes converge; each exports its two peers connected and three members ALIVE; after a
/// kill -9 every survivor reads the killed peer's gauge 0 and one member DOWN; after a restart
/// under the same name, gauge 1 again and one reconnect.
#[test]
fn metrics_follow_a_crash() {
    let mut nodes = start_cluster("met", 30, 3, FAST);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3)).expect("3 nodes converge");

    let (code, text) = nodes[0].get_text("/metrics").expect("/metrics answers");
    assert_eq!(code, 200);
    assert!(
        text.contains("# TYPE router_mesh_peer_connections gauge"),
        "{text}"
    );
    for n in &all {
        let peers = all.iter().filter(|p| p.name != n.name);
        for p in peers {
            let labels = format!("peer=\"{}\"", p.name);
            assert_eq!(
                n.metric("router_mesh_peer_connections", &labels),
                Some(1.0),
                "{} → {}",
                n.name,
                p.name
            );
        }
        assert_eq!(
            n.metric("meshd_members", "state=\"alive\""),
            Some(3.0),
            "{}",
            n.name
        );
        assert_eq!(
            n.metric("meshd_members", "state=\"down\""),
            Some(0.0),
            "{}",
            n.name
        );
        assert_eq!(n.metric("meshd_incarnation", ""), Some(1.0), "{}", n.name);
    }

    // Traffic counters are positive and growing.
    let sent = |n: &Node| n.metric("router_mesh_batches_total", "direction=\"sent\"");
    let first = sent(&nodes[0]).expect("batches exported");
    assert!(first > 0.0, "sent batches {first}");
    wait_until(Duration::from_secs(5), || {
        sent(&nodes[0]).is_some_and(|v| v > first)
    })
    .expect("sent batches grow");
    // Probing and the joiner's push-pull show up within a few probe intervals.
    let checks = [
        (0, "router_mesh_bytes_total", "direction=\"received\""),
        (0, "meshd_probes_total", "result=\"ack\""),
        (0, "meshd_probe_rtt_seconds_count", ""),
        (0, "meshd_probe_rtt_seconds_bucket", "le=\"+Inf\""),
        (1, "router_mesh_snapshot_trigger_total", ""),
        (1, "router_mesh_batches_total", "direction=\"received\""),
    ];
    for (i, name, labels) in checks {
        wait_until(Duration::from_secs(5), || {
            nodes[i].metric(name, labels).is_some_and(|v| v > 0.0)
        })
        .unwrap_or_else(|| panic!("{name}{{{labels}}} at {} stays 0", nodes[i].name));
    }

    nodes[2].kill9();
    let survivors: Vec<&Node> = nodes[..2].iter().collect();
    wait_until(Duration::from_secs(30), || {
        survivors.iter().all(|n| {
            n.metric("router_mesh_peer_connections", "peer=\"met3\"") == Some(0.0)
                && n.metric("meshd_members", "state=\"down\"") == Some(1.0)
        })
    })
    .unwrap_or_else(|| {
        let seen: Vec<String> = survivors
            .iter()
            .map(|n| {
                format!(
                    "{}: gauge {:?} down {:?}",
                    n.name,
                    n.metric("router_mesh_peer_connections", "peer=\"met3\""),
                    n.metric("meshd_members", "state=\"down\"")
                )
            })
            .collect();
        panic!("met3 not 0/DOWN in every survivor's metrics within 30 s: {seen:?}")
    });
    for n in &survivors {
        assert_eq!(
            n.metric("meshd_members", "state=\"alive\""),
            Some(2.0),
            "{}",
            n.name
        );
        let other = if n.name == "met1" { "met2" } else { "met1" };
        let labels = format!("peer=\"{other}\"");
        assert_eq!(n.metric("router_mesh_peer_connections", &labels), Some(1.0));
    }
    // At each survivor that held met3 SUSPECTED before DOWN, the wait is timed; the survivor
    // whose probe failed did.
    let timed: f64 = survivors
        .iter()
        .filter_map(|n| n.metric("router_mesh_convergence_ms_count", "outcome=\"down\""))
        .sum();
    assert!(
        timed >= 1.0,
        "a suspicion of met3 resolved DOWN and was timed"
    );

    // Restarted under the same name, met3 is back: gauge 1 and one reconnect at each survivor.
    // (Counted from here: a false suspicion under load may have added one before.)
    let reconnects = |n: &Node| n.metric("router_mesh_peer_reconnects_total", "");
    let before: Vec<Option<f64>> = survivors.iter().map(|n| reconnects(n)).collect();
    nodes[2].restart();
    let survivors: Vec<&Node> = nodes[..2].iter().collect();
    wait_until(Duration::from_secs(20), || {
        survivors.iter().zip(&before).all(|(n, before)| {
            n.metric("router_mesh_peer_connections", "peer=\"met3\"") == Some(1.0)
                && reconnects(n) == before.map(|b| b + 1.0)
        })
    })
    .expect("met3 reconnected (DOWN → ALIVE) at every survivor");
}
