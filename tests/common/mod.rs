//! Harness for whole-daemon tests: starts real `meshd agent` processes on 127.0.x.y loopback
//! addresses (or each in a network namespace of its own, see [`netns`]), reads their
//! `/ha/status`, and always kills what it started (by PID).
//!
//! Each test passes its own `subnet` (the third octet), so tests running in parallel never share
//! an address; every node of a test listens on the default ports of its own 127.0.subnet.n.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod netns;
pub mod tools;

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Mesh (UDP/QUIC) port every test node uses on its own loopback address.
pub const MESH_PORT: u16 = 39527;
/// HTTP API port every test node uses on its own loopback address.
pub const HTTP_PORT: u16 = 39528;
/// How often waits re-check their condition.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// One running `meshd agent` process.
pub struct Node {
    /// Member name given with `--mesh-server-name`.
    pub name: String,
    /// IP the node's mesh socket binds and advertises (a loopback IP unless in a namespace).
    pub ip: Ipv4Addr,
    /// IP its HTTP API listens on, as seen from inside its network namespace.
    http_ip: Ipv4Addr,
    /// The network namespace it runs in (None: the test's own).
    netns: Option<String>,
    child: Option<Child>,
    log_path: PathBuf,
    extra_args: Vec<String>,
    seeds: Vec<SocketAddr>,
}

/// Flags that make detection faster than the memberlist defaults, for tests that only need the
/// behaviour, not production timing.
pub const FAST: &[&str] = &[
    "--probe-interval",
    "500ms",
    "--probe-timeout",
    "200ms",
    "--gossip-interval",
    "100ms",
];

/// The loopback IP of node `index` (1-based) in a test's `subnet`.
pub fn node_ip(subnet: u8, index: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, subnet, index)
}

impl Node {
    /// Starts `meshd agent` named `name` on `ip`, joining through `seeds`, with `extra` flags.
    pub fn start(name: &str, ip: Ipv4Addr, seeds: &[SocketAddr], extra: &[&str]) -> Node {
        Node::start_at(None, ip, name, ip, seeds, extra)
    }

    /// Starts `meshd agent` named `name` inside network namespace `netns`, its mesh socket on
    /// `ip` (an address of that namespace) and its HTTP API on the namespace's own loopback.
    pub fn start_in_netns(
        netns: &str,
        name: &str,
        ip: Ipv4Addr,
        seeds: &[SocketAddr],
        extra: &[&str],
    ) -> Node {
        Node::start_at(Some(netns), Ipv4Addr::LOCALHOST, name, ip, seeds, extra)
    }

    /// Like [`Node::start_in_netns`], with the HTTP API on `ip` too, so that callers in other
    /// namespaces reach it as remote (non-loopback) callers.
    pub fn start_in_netns_serving(
        netns: &str,
        name: &str,
        ip: Ipv4Addr,
        seeds: &[SocketAddr],
        extra: &[&str],
    ) -> Node {
        Node::start_at(Some(netns), ip, name, ip, seeds, extra)
    }

    fn start_at(
        netns: Option<&str>,
        http_ip: Ipv4Addr,
        name: &str,
        ip: Ipv4Addr,
        seeds: &[SocketAddr],
        extra: &[&str],
    ) -> Node {
        let mut node = Node {
            name: name.to_string(),
            ip,
            http_ip,
            netns: netns.map(str::to_string),
            child: None,
            log_path: log_dir().join(format!("{name}-{ip}.log")),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            seeds: seeds.to_vec(),
        };
        // A fresh log per test run; restarts of this node append to it.
        File::create(&node.log_path).expect("test log file can be created");
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let log = File::options()
            .append(true)
            .open(&self.log_path)
            .expect("test log file can be opened");
        let mut cmd = match &self.netns {
            None => Command::new(env!("CARGO_BIN_EXE_meshd")),
            Some(ns) => netns::command_in(ns, env!("CARGO_BIN_EXE_meshd")),
        };
        cmd.arg("agent")
            .args(["--mesh-server-name", &self.name])
            .args(["--mesh-host", &self.ip.to_string()])
            .args(["--mesh-port", &MESH_PORT.to_string()])
            .args(["--host", &self.http_ip.to_string()])
            .args(["--port", &HTTP_PORT.to_string()]);
        if !self.seeds.is_empty() {
            let seeds: Vec<String> = self.seeds.iter().map(|s| s.to_string()).collect();
            cmd.args(["--mesh-peer-urls", &seeds.join(",")]);
        }
        cmd.args(&self.extra_args)
            .env("RUST_LOG", "meshd=debug,info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle clones"))
            .stderr(log);
        let child = cmd.spawn().expect("meshd binary starts");
        if let Some(ns) = &self.netns {
            // The PID we hold must be meshd's own, or kill9 would only kill a wrapper.
            let pid = i32::try_from(child.id()).expect("pid fits in i32");
            self.child = Some(child);
            netns::await_exec(pid, env!("CARGO_BIN_EXE_meshd"), ns);
        } else {
            self.child = Some(child);
        }
    }

    /// Runs `f` where this node's HTTP API is reachable: inside its namespace, if it has one.
    fn on_host<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.netns {
            None => f(),
            Some(ns) => netns::run_in(ns, f),
        }
    }

    /// This node's mesh address, for use as a seed.
    pub fn mesh_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, MESH_PORT))
    }

    /// Process ID of the running process.
    pub fn pid(&self) -> i32 {
        let child = self.child.as_ref().expect("node is running");
        i32::try_from(child.id()).expect("pid fits in i32")
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to this node's process by PID.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a PID we spawned and still own; no memory is involved.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again with the same name, address and flags.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Waits up to `limit` for the process to exit by itself and returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(POLL_EVERY);
        }
        None
    }

    /// GETs `path` from this node's HTTP API: (status code, JSON body), or None if unreachable.
    pub fn get(&self, path: &str) -> Option<(u16, Value)> {
        let url = format!("http://{}:{HTTP_PORT}{path}", self.http_ip);
        self.on_host(|| http_get(&url))
    }

    /// GETs `path` from this node's HTTP API: (status code, raw body), or None if unreachable.
    pub fn get_text(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://{}:{HTTP_PORT}{path}", self.http_ip);
        self.on_host(|| {
            let mut resp = agent().get(&url).call().ok()?;
            let code = resp.status().as_u16();
            let body = resp.body_mut().read_to_string().ok()?;
            Some((code, body))
        })
    }

    /// The value of series `name{labels}` in this node's `/metrics` (labels as rendered, e.g.
    /// `peer="n1"`; empty for none), if it answers and exports it.
    pub fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let (_, text) = self.get_text("/metrics")?;
        meshd::metrics::sample(&text, name, labels)
    }

    /// POSTs `{}` as JSON to `path` on this node's HTTP API: (status code, JSON body).
    pub fn post(&self, path: &str) -> Option<(u16, Value)> {
        let url = format!("http://{}:{HTTP_PORT}{path}", self.http_ip);
        self.on_host(|| {
            let request = agent()
                .post(&url)
                .header("Content-Type", "application/json");
            let mut resp = request.send("{}").ok()?;
            let code = resp.status().as_u16();
            let body = resp.body_mut().read_json::<Value>().ok()?;
            Some((code, body))
        })
    }

    /// Sends `method` to `path` with `body` as JSON (when given): (status code, JSON body).
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
        let url = format!("http://{}:{HTTP_PORT}{path}", self.http_ip);
        let body = body.map(Value::to_string);
        self.on_host(|| {
            let agent = agent();
            let response = match (method, body) {
                ("GET", _) => agent.get(&url).call(),
                ("DELETE", _) => agent.delete(&url).call(),
                ("PUT", Some(body)) => agent
                    .put(&url)
                    .header("Content-Type", "application/json")
                    .send(body),
                ("POST", Some(body)) => agent
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .send(body),
                _ => return None,
            };
            let mut resp = response.ok()?;
            let code = resp.status().as_u16();
            let body = resp.body_mut().read_json::<Value>().ok()?;
            Some((code, body))
        })
    }

    /// This node's `/ha/status` body, if it answers.
    pub fn status(&self) -> Option<Value> {
        self.get("/ha/status").map(|(_, body)| body)
    }

    /// The entry for member `name` in this node's `/ha/status`, if listed.
    pub fn member(&self, name: &str) -> Option<Value> {
        let status = self.status()?;
        status["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
    }

    /// State string ("ALIVE", "DOWN", …) of member `name` as this node sees it.
    pub fn state_of(&self, name: &str) -> Option<String> {
        self.member(name)
            .and_then(|m| m["state"].as_str().map(str::to_string))
    }

    /// Incarnation of member `name` as this node sees it.
    pub fn incarnation_of(&self, name: &str) -> Option<u64> {
        self.member(name).and_then(|m| m["incarnation"].as_u64())
    }

    /// Number of members this node lists as ALIVE.
    pub fn alive_count(&self) -> usize {
        self.status()
            .and_then(|s| {
                s["nodes"]
                    .as_array()
                    .map(|nodes| nodes.iter().filter(|n| n["state"] == "ALIVE").count())
            })
            .unwrap_or(0)
    }

    /// Every membership change this node has logged so far, oldest first (restarts included).
    pub fn changes(&self) -> Vec<Change> {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        text.lines().filter_map(Change::parse).collect()
    }

    /// The last `lines` lines of this node's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// One `membership changed` line of a node's log: what it saw happen to one member.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// When, in seconds since the Unix epoch (the log line's UTC timestamp).
    pub at: f64,
    /// The member whose entry changed.
    pub member: String,
    /// Its state before ("NEW" for a member seen for the first time).
    pub from: String,
    /// Its state after.
    pub to: String,
    /// Its incarnation after.
    pub incarnation: u64,
    /// Why, as logged ("probe failed", "gossip from n2", "refuted", ...).
    pub reason: String,
}

impl Change {
    /// Parses a text-format log line; None for any other line.
    pub fn parse(line: &str) -> Option<Change> {
        let (_, fields) = line.split_once("membership changed ")?;
        // `reason` is last and may hold spaces; the fields before it do not.
        let (head, reason) = fields.split_once(" reason=")?;
        let field = |key: &str| {
            head.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some(Change {
            at: log_time(line.split_whitespace().next()?)?,
            member: field("member")?,
            from: field("from")?,
            to: field("to")?,
            incarnation: field("incarnation")?.parse().ok()?,
            reason: reason.trim().to_string(),
        })
    }
}

/// Seconds since the Unix epoch of a log timestamp such as `2026-12-02T14:08:00.919697Z`.
fn log_time(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let mut hms = time.splitn(3, ':');
    let h: f64 = hms.next()?.parse().ok()?;
    let min: f64 = hms.next()?.parse().ok()?;
    let sec: f64 = hms.next()?.parse().ok()?;
    // Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's
    // days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec)
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.name, self.log_tail(40));
        }
        // A stopped process cannot die of SIGKILL until it is continued.
        if self.child.is_some() {
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(self.pid(), libc::SIGCONT) };
        }
        self.kill9();
    }
}

/// Starts `count` nodes named `{prefix}1..` on 127.0.subnet.1.., all seeded with node 1.
pub fn start_cluster(prefix: &str, subnet: u8, count: u8, extra: &[&str]) -> Vec<Node> {
    let seed = SocketAddr::from((node_ip(subnet, 1), MESH_PORT));
    (1..=count)
        .map(|i| {
            let seeds = if i == 1 { vec![] } else { vec![seed] };
            Node::start(&format!("{prefix}{i}"), node_ip(subnet, i), &seeds, extra)
        })
        .collect()
}

/// Polls `condition` until it holds or `limit` passes; returns how long it took.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return Some(start.elapsed());
        }
        std::thread::sleep(POLL_EVERY);
    }
    None
}

/// Checks `condition` again and again for the whole `window`: true if it held every time.
/// For "nothing happens" checks, where there is no event to wait for.
pub fn holds_for(window: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < window {
        if !condition() {
            return false;
        }
        std::thread::sleep(POLL_EVERY);
    }
    condition()
}

/// True when every node in `nodes` lists exactly `expected` members and all of them ALIVE.
pub fn all_see_alive(nodes: &[&Node], expected: usize) -> bool {
    nodes.iter().all(|n| n.alive_count() == expected)
}

/// Waits until every node in `observers` shows member `name` in `state`; panics after `limit`.
pub fn wait_state_everywhere(
    observers: &[&Node],
    name: &str,
    state: &str,
    limit: Duration,
) -> Duration {
    wait_until(limit, || {
        observers
            .iter()
            .all(|n| n.state_of(name).as_deref() == Some(state))
    })
    .unwrap_or_else(|| {
        let seen: Vec<String> = observers
            .iter()
            .map(|n| format!("{}: {:?}", n.name, n.state_of(name)))
            .collect();
        panic!("{name} not {state} everywhere within {limit:?}; seen {seen:?}")
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn http_get(url: &str) -> Option<(u16, Value)> {
    let mut resp = agent().get(url).call().ok()?;
    let code = resp.status().as_u16();
    let body = resp.body_mut().read_json::<Value>().ok()?;
    Some((code, body))
}

fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("meshd-test-logs");
    std::fs::create_dir_all(&dir).expect("log dir can be created");
    dir
}
