//! A real Prometheus server (Debian's `prometheus` binary) scrapes a 3-node local cluster and
//! answers `count(router_mesh_peer_connections == 1)` with 6 (3 nodes × 2 peers), and every
//! PromQL expression of the Grafana dashboard (deploy/grafana/meshd.json) returns data.

mod common;

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The cluster's subnet (127.0.31.x); Prometheus listens on .100 of it.
const SUBNET: u8 = 31;

/// A running Prometheus server, killed by PID (and its data removed) when dropped.
struct Prometheus {
    child: Child,
    base: String,
    dir: PathBuf,
    log: PathBuf,
}

impl Prometheus {
    /// Starts `prometheus` scraping `targets` (host:port) every second, on a free port of `ip`.
    fn start(ip: Ipv4Addr, targets: &[String]) -> Prometheus {
        let binary = which("prometheus").unwrap_or_else(|| {
            panic!("the `prometheus` binary is missing: run `bash .ci/install-test-deps` (as root)")
        });
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("prometheus-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("prometheus temp dir");
        let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: meshd\n    static_configs:\n      - targets: [{}]\n",
            quoted.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let port = free_port(ip);
        let log = dir.join("prometheus.log");
        let out = File::create(&log).expect("prometheus log");
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={ip}:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle clones"))
            .stderr(out)
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            base: format!("http://{ip}:{port}"),
            dir,
            log,
        }
    }

    /// The samples of an instant query (`None` for an error answer or none at all).
    fn query(&self, query: &str) -> Option<Vec<Value>> {
        let url = format!("{}/api/v1/query?query={}", self.base, url_encode(query));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let body: Value = agent.get(&url).call().ok()?.body_mut().read_json().ok()?;
        body["data"]["result"].as_array().cloned()
    }

    /// The value of an instant query's single sample, as Prometheus prints it ("6").
    fn query_scalar(&self, query: &str) -> Option<String> {
        match self.query(query)?.as_slice() {
            [one] => one["value"][1].as_str().map(str::to_string),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!(
                "--- prometheus log (last lines, newest first) ---\n{}",
                tail.join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP port free on `ip` right now (bound, read, released).
fn free_port(ip: Ipv4Addr) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// The first `name` on PATH that is a file.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| Path::is_file(p))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_counts_six_connected_peers() {
    let nodes = start_cluster("prom", SUBNET, 3, FAST);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3)).expect("3 nodes converge");
    let targets: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}:{HTTP_PORT}", n.ip))
        .collect();
    let prometheus = Prometheus::start(node_ip(SUBNET, 100), &targets);

    let query = "count(router_mesh_peer_connections == 1)";
    let mut last = None;
    let found = wait_until(Duration::from_secs(60), || {
        last = prometheus.query_scalar(query);
        last.as_deref() == Some("6")
    });
    assert!(
        found.is_some(),
        "`{query}` did not reach 6 within 60 s; last answer {last:?}"
    );
    // Every node counts itself among the ALIVE members, as the alert rules assume.
    let alive = prometheus.query_scalar("min(meshd_members{state=\"alive\"})");
    assert_eq!(alive.as_deref(), Some("3"));
    // Every scrape succeeds, the hand-rendered round-trip histogram included.
    assert_eq!(prometheus.query_scalar("sum(up)").as_deref(), Some("3"));
    let rtt = "count(meshd_probe_rtt_seconds_bucket{le=\"+Inf\"})";
    assert_eq!(prometheus.query_scalar(rtt).as_deref(), Some("3"));
    every_dashboard_query_returns_data(&prometheus);
}

/// Every `expr` of deploy/grafana/meshd.json, in panel order.
fn dashboard_queries() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/meshd.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/meshd.json is readable");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

/// Polls each dashboard query until it returns at least one sample (rates need two scrapes),
/// then reports every one that never did.
fn every_dashboard_query_returns_data(prometheus: &Prometheus) {
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "only {} queries found", queries.len());
    let mut empty: Vec<&str> = queries.iter().map(String::as_str).collect();
    wait_until(Duration::from_secs(60), || {
        empty.retain(|q| prometheus.query(q).is_none_or(|samples| samples.is_empty()));
        empty.is_empty()
    });
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );
}

/// `promtool check metrics` (Prometheus' own linter) finds nothing wrong with a node's output.
#[test]
fn promtool_accepts_the_exposition() {
    let nodes = start_cluster("lint", SUBNET + 1, 2, FAST);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 2)).expect("2 nodes converge");
    // Wait for a direct ack, so the round-trip histogram has data too.
    wait_until(Duration::from_secs(5), || {
        nodes[0]
            .metric("meshd_probe_rtt_seconds_count", "")
            .is_some_and(|n| n > 0.0)
    })
    .expect("a probe round trip is recorded");
    let (_, text) = nodes[0].get_text("/metrics").expect("/metrics answers");
    let promtool = which("promtool").unwrap_or_else(|| {
        panic!("the `promtool` binary is missing: run `bash .ci/install-test-deps` (as root)")
    });
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // SMG's series name, kept so SMG dashboards work; every other finding fails.
    const ALLOWED: &str =
        "router_mesh_convergence_ms metric names should not contain abbreviated units";
    let findings: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != ALLOWED)
        .collect();
    let lint_only = out.status.success() || out.status.code() == Some(3);
    assert!(
        lint_only && findings.is_empty(),
        "promtool check metrics: {}\n{report}\n--- input ---\n{text}",
        out.status
    );
}
