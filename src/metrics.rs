//! Prometheus metrics: the mapping from the runtime's snapshots and events to named series.
//!
//! [`Metrics`] owns a per-process recorder (`metrics-exporter-prometheus`, no HTTP listener: the
//! API renders it at `GET /metrics`). Nothing is installed globally, so several nodes in one test
//! process each keep their own series. Values come from two places:
//! - every scrape copies the latest [`Snapshot`] in ([`Metrics::render`]): gauges are set, and
//!   counters that mirror the core's [`crate::swim::Stats`] and the runtime's
//!   [`crate::runtime::RuntimeCounters`] are set to their absolute totals;
//! - a task follows the [`EventFeed`] ([`Metrics::follow`]) for what only events tell: peers
//!   coming back to ALIVE (`router_mesh_peer_reconnects_total`) and how long suspicions take to
//!   resolve (`router_mesh_convergence_ms`).
//!
//! The probe round-trip histogram is kept by the core in fixed buckets and rendered here as text
//! ([`render_rtt`]), because the exporter's histograms take raw samples, not buckets.
//! docs/api.md#metrics lists every series with its meaning.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use metrics::{counter, gauge, histogram, with_local_recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::sync::broadcast::error::RecvError;

use crate::coordination::LeaderView;
use crate::runtime::replication::StoreCounts;
use crate::runtime::vitals::{self, ProcessSample};
use crate::runtime::{EventFeed, Snapshot};
use crate::swim::probe::{RttHistogram, RTT_BUCKETS};
use crate::swim::{DropReason, Event, MemberState, Refusal};

/// `Content-Type` of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (ms) of `router_mesh_convergence_ms`: from a refutation within one probe
/// interval to the suspicion ceiling of a large cluster (6 × 4 × log10(N) × 1 s, ~72 s at
/// N = 1,000), and beyond it for a stretched local health.
const CONVERGENCE_BUCKETS_MS: [f64; 11] = [
    250.0, 500.0, 1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0, 32_000.0, 64_000.0, 128_000.0,
    256_000.0,
];

/// Name of the probe round-trip histogram, rendered by hand from the core's buckets.
const PROBE_RTT: &str = "meshd_probe_rtt_seconds";

/// One node's metrics: a recorder, its render handle, and the help texts registered once.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The leader whose `meshd_leader` series reads 1, so it is set back to 0 when another
    /// takes over.
    last_leader: Mutex<Option<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh recorder with every series described.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("router_mesh_convergence_ms".into()),
                &CONVERGENCE_BUCKETS_MS,
            )
            .expect("the bucket list is a non-empty constant")
            .build_recorder();
        let handle = recorder.handle();
        let metrics = Metrics {
            recorder,
            handle,
            last_leader: Mutex::new(None),
        };
        metrics.with(|| {
            describe();
            // Exported from the start, so a rate() over it has a zero to start from.
            counter!("router_mesh_peer_reconnects_total").absolute(0);
            // Registered at zero, as Prometheus advises for labelled series, so alerts and
            // dashboards see every outcome before the first suspicion resolves.
            for state in [MemberState::Alive, MemberState::Down, MemberState::Leaving] {
                let _registered =
                    histogram!("router_mesh_convergence_ms", "outcome" => outcome(state));
            }
        });
        metrics
    }

    /// Runs `f` with this node's recorder as the target of the `metrics` macros.
    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        with_local_recorder(&self.recorder, f)
    }

    /// Copies `snapshot` into the series and renders everything in the text format.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        self.render_with(snapshot, || {})
    }

    /// Like [`Metrics::render`], after `record_more` has set further series (with the
    /// `metrics` macros) under this node's recorder: the API's own counters.
    pub fn render_with(&self, snapshot: &Snapshot, record_more: impl FnOnce()) -> String {
        self.with(|| {
            record_snapshot(snapshot);
            self.record_leader(&snapshot.leader);
            record_more();
        });
        let mut text = self.handle.render();
        render_rtt(&mut text, &snapshot.stats.probe_rtt);
        render_process(&mut text, &vitals::sample());
        text
    }

    /// `meshd_leader{name}`: 1 on the current leader's series, 0 on the one before it (a
    /// series per member that ever led, so a dashboard sees the hand-over); `meshd_has_quorum`.
    fn record_leader(&self, view: &LeaderView) {
        // A poisoned lock only means another scrape panicked mid-update: the name is still valid.
        let mut last = self.last_leader.lock().unwrap_or_else(|e| e.into_inner());
        if *last != view.leader {
            if let Some(old) = last.take() {
                gauge!("meshd_leader", "name" => old).set(0.0);
            }
            *last = view.leader.clone();
        }
        if let Some(name) = &view.leader {
            gauge!("meshd_leader", "name" => name.clone()).set(1.0);
        }
        gauge!("meshd_has_quorum").set(if view.has_quorum { 1.0 } else { 0.0 });
    }

    /// Applies one membership event (reconnects, convergence, a reaped peer's gauge).
    pub fn observe(&self, tracker: &mut Tracker, event: &Event) {
        self.with(|| tracker.observe(event));
    }

    /// Follows `feed` for as long as it runs: starts from a snapshot, then applies every later
    /// event once. A watcher that falls behind (`Lagged`) starts over from a new snapshot; the
    /// events it missed are not counted (logged as a warning).
    pub async fn follow(self: Arc<Self>, feed: EventFeed) {
        loop {
            let (snapshot, mut events) = feed.subscribe();
            let mut tracker = Tracker::new(&snapshot);
            loop {
                match events.recv().await {
                    Ok(e) if e.seq <= snapshot.last_event_seq => {}
                    Ok(e) => self.observe(&mut tracker, &e.event),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "metrics fell behind the event stream; resyncing");
                        break;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}

/// What the event follower remembers: each member's state and since when, as of the last event.
#[derive(Debug, Default)]
pub struct Tracker {
    states: HashMap<String, (MemberState, Instant)>,
}

impl Tracker {
    /// Starts from the members listed in `snapshot`.
    pub fn new(snapshot: &Snapshot) -> Self {
        let states = snapshot
            .members
            .iter()
            .map(|m| (m.name.clone(), (m.state, m.since)))
            .collect();
        Tracker { states }
    }

    /// Records what `event` means for the event-driven series (call under the node's recorder).
    fn observe(&mut self, event: &Event) {
        let (member, previous) = match event {
            Event::Reaped { name } => {
                // A reaped peer reads 0 (it was DOWN or LEAVING) until the process restarts.
                gauge!("router_mesh_peer_connections", "peer" => name.clone()).set(0.0);
                self.states.remove(name);
                return;
            }
            Event::Changed {
                member, previous, ..
            } => (member, previous),
        };
        let before = self.states.get(&member.name).copied();
        if member.is_local {
            self.states
                .insert(member.name.clone(), (member.state, member.since));
            return;
        }
        let came_back = matches!(previous, Some(MemberState::Suspected | MemberState::Down))
            && member.state == MemberState::Alive;
        if came_back {
            counter!("router_mesh_peer_reconnects_total").increment(1);
        }
        if let Some((MemberState::Suspected, suspected_at)) = before {
            if member.state != MemberState::Suspected {
                let waited = member.since.saturating_duration_since(suspected_at);
                histogram!("router_mesh_convergence_ms", "outcome" => outcome(member.state))
                    .record(waited.as_secs_f64() * 1_000.0);
            }
        }
        let since = match before {
            Some((state, since)) if state == member.state => since,
            _ => member.since,
        };
        self.states
            .insert(member.name.clone(), (member.state, since));
    }
}

/// The `outcome` label of a resolved suspicion.
fn outcome(state: MemberState) -> &'static str {
    match state {
        MemberState::Alive => "alive",
        MemberState::Down => "down",
        MemberState::Leaving => "leaving",
        MemberState::Suspected | MemberState::Init => "other",
    }
}

/// The `state` label of `meshd_members` (INIT is never exported: a node counts itself once it
/// is ALIVE).
const MEMBER_STATES: [(MemberState, &str); 4] = [
    (MemberState::Alive, "alive"),
    (MemberState::Suspected, "suspected"),
    (MemberState::Down, "down"),
    (MemberState::Leaving, "leaving"),
];

/// The `reason` label of `meshd_dropped_packets_total` for the core's drop reasons.
fn drop_label(reason: DropReason) -> &'static str {
    match reason {
        DropReason::Malformed => "malformed",
        DropReason::UnknownVersion => "unknown_version",
        DropReason::Oversized => "oversized",
        DropReason::InvalidField => "invalid_field",
        DropReason::NotForUs => "not_for_us",
    }
}

/// The `reason` label of `meshd_facts_refused_total`, for every refusal.
const REFUSALS: [(Refusal, &str); 5] = [
    (Refusal::TableFull, "table_full"),
    (Refusal::AddressConflict, "address_conflict"),
    (Refusal::IncarnationJump, "incarnation_jump"),
    (Refusal::PingReqUnknown, "ping_req_unknown"),
    (Refusal::AckLargerThanPing, "ack_larger_than_ping"),
];

const CORE_DROP_REASONS: [DropReason; 5] = [
    DropReason::Malformed,
    DropReason::UnknownVersion,
    DropReason::Oversized,
    DropReason::InvalidField,
    DropReason::NotForUs,
];

/// Sets every snapshot-derived series (call under the node's recorder).
fn record_snapshot(s: &Snapshot) {
    for m in s.members.iter().filter(|m| !m.is_local) {
        let up = if m.state == MemberState::Alive {
            1.0
        } else {
            0.0
        };
        gauge!("router_mesh_peer_connections", "peer" => m.name.clone()).set(up);
    }
    for (state, label) in MEMBER_STATES {
        gauge!("meshd_members", "state" => label).set(s.count(state) as f64);
    }
    let (stats, rt) = (&s.stats, &s.counters);
    let sent = stats.datagrams_sent + rt.stream_messages_sent;
    let received = stats.datagrams_received + rt.stream_messages_received;
    counter!("router_mesh_batches_total", "direction" => "sent").absolute(sent);
    counter!("router_mesh_batches_total", "direction" => "received").absolute(received);
    let sent = stats.bytes_sent + rt.stream_bytes_sent;
    let received = stats.bytes_received + rt.stream_bytes_received;
    counter!("router_mesh_bytes_total", "direction" => "sent").absolute(sent);
    counter!("router_mesh_bytes_total", "direction" => "received").absolute(received);
    for (direction, swim, quic) in [
        ("sent", rt.swim_udp_bytes_sent, rt.quic_bytes_sent),
        (
            "received",
            rt.swim_udp_bytes_received,
            rt.quic_bytes_received,
        ),
    ] {
        counter!("meshd_udp_bytes_total", "direction" => direction, "kind" => "swim")
            .absolute(swim);
        counter!("meshd_udp_bytes_total", "direction" => direction, "kind" => "quic")
            .absolute(quic);
    }
    let exchanges = rt.push_pull_ok + rt.push_pull_failed;
    counter!("router_mesh_snapshot_trigger_total").absolute(exchanges);
    counter!("meshd_push_pull_total", "result" => "ok").absolute(rt.push_pull_ok);
    counter!("meshd_push_pull_total", "result" => "failed").absolute(rt.push_pull_failed);

    counter!("meshd_probes_total", "result" => "ack").absolute(stats.probes_acked);
    counter!("meshd_probes_total", "result" => "indirect_ack")
        .absolute(stats.probes_indirect_acked);
    counter!("meshd_probes_total", "result" => "timeout").absolute(stats.probes_failed);
    counter!("meshd_suspicions_raised_total").absolute(stats.suspicions_raised);
    counter!("meshd_suspicions_refuted_total").absolute(stats.refutations);
    gauge!("meshd_local_health_score").set(f64::from(s.health_score));
    gauge!("meshd_incarnation").set(s.local.incarnation as f64);
    gauge!("meshd_broadcast_queue_depth").set(s.pending_broadcasts as f64);
    for reason in CORE_DROP_REASONS {
        let n = stats.dropped.get(&reason).copied().unwrap_or(0);
        counter!("meshd_dropped_packets_total", "reason" => drop_label(reason)).absolute(n);
    }
    for (refusal, label) in REFUSALS {
        let n = stats.refused.get(&refusal).copied().unwrap_or(0);
        counter!("meshd_facts_refused_total", "reason" => label).absolute(n);
    }
    counter!("meshd_dropped_packets_total", "reason" => "queue_full")
        .absolute(rt.datagrams_dropped_full);
    counter!("meshd_dropped_packets_total", "reason" => "quic_oversize")
        .absolute(rt.quic_dropped_oversize);
    counter!("meshd_datagrams_rejected_total", "reason" => "decrypt").absolute(rt.rejected_decrypt);
    counter!("meshd_datagrams_rejected_total", "reason" => "unsealed")
        .absolute(rt.rejected_unsealed);
    counter!("meshd_datagrams_rejected_total", "reason" => "stale").absolute(rt.rejected_stale);
    gauge!("meshd_keyring_version").set(rt.keyring_version as f64);
    counter!("meshd_quic_handshakes_failed_total").absolute(rt.quic_handshakes_failed);
    counter!("meshd_socket_errors_total", "op" => "recv").absolute(rt.recv_errors);
    counter!("meshd_socket_errors_total", "op" => "send").absolute(rt.send_errors);
    counter!("meshd_join_rounds_failed_total").absolute(stats.join_rounds_failed);
    counter!("meshd_payloads_total", "result" => "received").absolute(stats.payloads_received);
    counter!("meshd_payloads_total", "result" => "dropped").absolute(stats.payloads_dropped);
    counter!("meshd_gossip_updates_dropped_total").absolute(stats.updates_dropped);
    record_stores(&s.stores);
}

/// Appends the standard process series (the Prometheus client libraries' names) from
/// `/proc/self`, by hand: the CPU counter counts fractional seconds, which the exporter's
/// integer counters cannot.
fn render_process(text: &mut String, sample: &ProcessSample) {
    let series: [(&str, &str, &str, f64); 3] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time of this process, seconds",
            sample.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of this process (VmRSS)",
            sample.rss_bytes as f64,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors of this process",
            sample.open_fds as f64,
        ),
    ];
    for (name, kind, help, value) in series {
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
}

/// Why a local store write or an entry from the network may be refused (the bounds' names,
/// and the other checks): every reason is exported, at zero until it happens.
const STORE_REFUSALS: [&str; 14] = [
    "stores",
    "keys_per_store",
    "store_name",
    "key",
    "value",
    "member",
    "writer",
    "entry",
    "store_max_bytes",
    "invalid",
    "not_json",
    "wrong_kind",
    "not_found",
    "malformed",
];

fn record_stores(s: &StoreCounts) {
    gauge!("meshd_stores").set(s.stores as f64);
    gauge!("meshd_store_bytes").set(s.bytes as f64);
    let stats = &s.stats;
    counter!("meshd_store_writes_total").absolute(stats.writes);
    counter!("meshd_store_entries_total", "result" => "received").absolute(stats.entries_received);
    counter!("meshd_store_entries_total", "result" => "applied").absolute(stats.entries_applied);
    counter!("meshd_store_payloads_sent_total").absolute(stats.payloads_sent);
    counter!("meshd_store_digests_sent_total").absolute(stats.digests_sent);
    counter!("meshd_store_syncs_total").absolute(stats.syncs);
    counter!("meshd_store_sync_bytes_total").absolute(stats.sync_bytes);
    counter!("meshd_store_collected_total").absolute(stats.collected);
    for reason in STORE_REFUSALS {
        let writes = stats.writes_refused.get(reason).copied().unwrap_or(0);
        counter!("meshd_store_writes_refused_total", "reason" => reason).absolute(writes);
        let entries = stats.entries_refused.get(reason).copied().unwrap_or(0);
        counter!("meshd_store_entries_refused_total", "reason" => reason).absolute(entries);
    }
}

/// Registers the HELP text of every series the recorder renders.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "router_mesh_peer_connections",
        "1 while the peer is ALIVE to this node, 0 otherwise (a reaped peer reads 0)"
    );
    describe_counter!(
        "router_mesh_peer_reconnects_total",
        "Peers that came back to ALIVE after SUSPECTED or DOWN"
    );
    describe_counter!(
        "router_mesh_batches_total",
        "SWIM datagrams and push-pull stream messages, by direction"
    );
    describe_counter!(
        "router_mesh_bytes_total",
        "Bytes of SWIM datagrams and push-pull stream messages, by direction"
    );
    describe_counter!(
        "meshd_udp_bytes_total",
        "UDP payload bytes on the mesh socket, by direction and kind: swim (SWIM datagrams) or \
         quic (every QUIC packet of push-pull exchanges: handshake, TLS, acks and data)"
    );
    describe_histogram!(
        "router_mesh_convergence_ms",
        "Time a peer stayed SUSPECTED at this node until the verdict (outcome: down, alive, leaving)"
    );
    describe_counter!(
        "router_mesh_snapshot_trigger_total",
        "Full-state push-pull exchanges this node took part in (either side, any outcome)"
    );
    describe_counter!("meshd_push_pull_total", "Push-pull exchanges, by result");
    describe_gauge!(
        "meshd_members",
        "Members this node lists in each state, itself included"
    );
    describe_counter!(
        "meshd_probes_total",
        "Probe rounds by result: ack, indirect_ack, timeout"
    );
    describe_counter!(
        "meshd_suspicions_raised_total",
        "Suspicions this node raised after a failed probe round"
    );
    describe_counter!(
        "meshd_suspicions_refuted_total",
        "Times this node refuted a suspicion (or DOWN) about itself"
    );
    describe_gauge!(
        "meshd_local_health_score",
        "Lifeguard local health score (0 is healthy)"
    );
    describe_gauge!("meshd_incarnation", "This node's incarnation");
    describe_gauge!(
        "meshd_broadcast_queue_depth",
        "Membership updates waiting to be piggybacked"
    );
    describe_counter!(
        "meshd_dropped_packets_total",
        "Received datagrams and push-pull messages dropped, by reason"
    );
    describe_counter!(
        "meshd_http_connections_refused_total",
        "API connections closed at once, by reason: total_cap (1,024 open) or per_ip_cap (64 \
         open from the same address)"
    );
    describe_counter!(
        "meshd_http_connections_timed_out_total",
        "API connections closed for sending nothing or headers too slowly (10 s), or idling \
         (60 s)"
    );
    describe_counter!(
        "meshd_http_tls_handshakes_failed_total",
        "API TLS handshakes that failed"
    );
    describe_counter!(
        "meshd_http_requests_refused_total",
        "Mutating API calls refused, by reason: access (not loopback and no valid token), \
         not_json (a POST without Content-Type: application/json), body_too_large (over 64 KiB)"
    );
    describe_counter!(
        "meshd_datagrams_rejected_total",
        "Datagrams dropped before decoding because they do not open: decrypt (no installed key \
         opens it: another key or cluster label, or forged), unsealed (plain, while this node \
         requires sealing) or stale (sealed over 5 minutes from our clock: replayed, or clock \
         skew)"
    );
    describe_counter!(
        "meshd_quic_handshakes_failed_total",
        "QUIC connections refused during the handshake: the peer holds none of our keys (or \
         runs under another cluster label), shows a foreign certificate, or is no meshd"
    );
    describe_gauge!(
        "meshd_keyring_version",
        "Version of this node's keyring: raised by one by every key command"
    );
    describe_counter!(
        "meshd_facts_refused_total",
        "Facts and ping-reqs in valid datagrams refused, by reason: table_full (--max-members), \
         address_conflict (a live member moved by someone else), incarnation_jump, \
         ping_req_unknown (requester or target not a member), ack_larger_than_ping (a \
         stranger's ping too small to answer without amplification)"
    );
    describe_counter!(
        "meshd_socket_errors_total",
        "UDP socket errors, by operation"
    );
    describe_counter!(
        "meshd_join_rounds_failed_total",
        "Join rounds in which no seed answered"
    );
    describe_counter!(
        "meshd_gossip_updates_dropped_total",
        "Membership updates dropped from a full gossip queue (most-sent, oldest first); the \
         full-state exchange that follows repairs them"
    );
    describe_gauge!(
        "meshd_leader",
        "1 on the series of the member this node names leader (lowest leader-priority, then name, \
         among ALIVE members), 0 on the one it named before"
    );
    describe_gauge!(
        "meshd_has_quorum",
        "1 while this node sees more than half of the expected members ALIVE"
    );
    describe_counter!(
        "meshd_payloads_total",
        "Store payloads carried by SWIM datagrams: received from members, or dropped (from a \
         sender that is no member at its address, or waiting in a full queue)"
    );
    describe_gauge!("meshd_stores", "Replicated stores held");
    describe_gauge!(
        "meshd_store_bytes",
        "Bytes of all replicated stores (bounded by --store-max-bytes)"
    );
    describe_counter!(
        "meshd_store_writes_total",
        "Store writes applied at this node"
    );
    describe_counter!(
        "meshd_store_writes_refused_total",
        "Store writes refused, by reason (a bound's name, invalid, not_json, wrong_kind, \
         not_found)"
    );
    describe_counter!(
        "meshd_store_entries_total",
        "Store entries from other nodes (gossip or anti-entropy): received, and applied (they \
         changed something here)"
    );
    describe_counter!(
        "meshd_store_entries_refused_total",
        "Store entries or messages from other nodes refused, by reason"
    );
    describe_counter!(
        "meshd_store_payloads_sent_total",
        "Store payloads handed to SWIM (local writes and deltas gossiped on)"
    );
    describe_counter!(
        "meshd_store_digests_sent_total",
        "Store roots digests sent to a random member, which starts anti-entropy if its stores differ"
    );
    describe_counter!(
        "meshd_store_syncs_total",
        "Store anti-entropy exchanges started or served"
    );
    describe_counter!(
        "meshd_store_sync_bytes_total",
        "Bytes of store anti-entropy messages sent and received"
    );
    describe_counter!(
        "meshd_store_collected_total",
        "Deleted store keys forgotten after --store-tombstone-retention"
    );
}

/// Appends the core's probe round-trip buckets to `out` as a Prometheus histogram (seconds).
pub fn render_rtt(out: &mut String, h: &RttHistogram) {
    let _ = writeln!(
        out,
        "# HELP {PROBE_RTT} Round trip of probes answered by a direct ack (ping sent to ack received)"
    );
    let _ = writeln!(out, "# TYPE {PROBE_RTT} histogram");
    for (bound, n) in RTT_BUCKETS.iter().zip(h.cumulative()) {
        let _ = writeln!(
            out,
            "{PROBE_RTT}_bucket{{le=\"{}\"}} {n}",
            bound.as_secs_f64()
        );
    }
    let _ = writeln!(out, "{PROBE_RTT}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{PROBE_RTT}_sum {}", h.sum_micros as f64 / 1e6);
    let _ = writeln!(out, "{PROBE_RTT}_count {}", h.count);
    out.push('\n');
}

/// The value of the series `name{labels}` (labels exactly as rendered, e.g.
/// `peer="n1"`; empty for none) in a rendered text, if present.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == series).then(|| value.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests;
