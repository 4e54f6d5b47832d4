//! Hosts made of Linux network namespaces, for whole-daemon tests across real network
//! boundaries: each node gets a namespace of its own with one veth interface (`eth0`,
//! 10.203.subnet.i/24), plugged into a bridge of a "switch" namespace that the [`Lab`] also
//! creates. The switch holds two bridges, side A (`br0`) and side B (`br1`), joined by a veth
//! trunk (`ta`–`tb`): taking the trunk down cuts the cluster in two at a real link, with no
//! firewall rule involved.
//!
//! Faults on the way into a node are iptables rules (legacy backend) in a chain of that node's
//! own namespace, `MESHD_FAULTS`, which sees every UDP datagram to the mesh port (SWIM and
//! QUIC). Rules drop on the receiving side on purpose: a DROP in OUTPUT makes the sender's
//! `sendto` fail with EPERM, which no real network does. Delay is an NFQUEUE rule plus a
//! [`Delayer`] thread that holds each datagram's verdict for a fixed time (netem is not
//! available on every kernel these tests run on).
//!
//! Nothing is configured in the machine's root namespace: veth pairs are created directly
//! inside the switch namespace with their peer end in the node's. Names carry the test
//! process's PID, so parallel runs never collide, and a [`Lab`] deletes everything it made when
//! dropped (also on panic); namespaces left behind by a test process that no longer exists are
//! swept at the next start.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Node, MESH_PORT};

/// Every namespace a lab creates starts with this, then the test process's PID.
const PREFIX: &str = "meshdt";
/// Where `ip netns` keeps its namespace handles.
const NETNS_DIR: &str = "/run/netns";
/// The per-node chain every inbound mesh datagram passes through.
const CHAIN: &str = "MESHD_FAULTS";
/// The NFQUEUE number a node's delayer binds (queues are per namespace, so one number is enough).
const QUEUE: u16 = 0;

/// `ip netns exec ns program`: `ip` execs `program` in place, so the child's PID is
/// `program`'s (checked by [`await_exec`]). The child gets SIGKILL if the test thread that
/// spawned it dies without cleaning up (a SIGKILLed test), so no agent outlives its test.
pub fn command_in(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Waits until process `pid` runs `program` inside namespace `ns`; panics after 5 s. Proves
/// that the PID the test will kill is the agent itself, in the namespace it was meant for.
pub fn await_exec(pid: i32, program: &str, ns: &str) {
    let want = std::fs::canonicalize(program).expect("meshd binary path resolves");
    let exe = format!("/proc/{pid}/exe");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if std::fs::read_link(&exe).is_ok_and(|p| p == want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} did not become {} within 5 s (is {:?}): `ip netns exec` should exec it",
            want.display(),
            std::fs::read_link(&exe)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let of_pid = std::fs::metadata(format!("/proc/{pid}/ns/net")).expect("pid's netns readable");
    let of_ns = std::fs::metadata(Path::new(NETNS_DIR).join(ns)).expect("netns handle readable");
    assert_eq!(
        (of_pid.dev(), of_pid.ino()),
        (of_ns.dev(), of_ns.ino()),
        "pid {pid} runs outside namespace {ns}"
    );
}

/// Moves the calling thread into namespace `ns` (for good: call it on a thread of its own).
fn enter(ns: &str) -> io::Result<()> {
    let handle = File::open(Path::new(NETNS_DIR).join(ns))?;
    // SAFETY: setns(2) on a namespace fd we own; it affects only the calling thread.
    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a thread inside namespace `ns` and returns its result: sockets `f` opens (an
/// HTTP request to a node's loopback API) belong to that namespace.
pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns).unwrap_or_else(|e| panic!("cannot enter netns {ns}: {e}"));
                f()
            })
            .join()
            .expect("thread inside the namespace panicked")
    })
}

/// Runs a command to completion; Err holds its stderr (or why it could not start).
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `ip` with the whitespace-separated `args`; a failure is a bug in the test: panic with
/// the command's stderr.
fn ip(args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    run("ip", &args).unwrap_or_else(|e| panic!("{e}"));
}

/// Counters of one node's fault chain since its faults were last cleared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Datagrams to the mesh port that entered the chain.
    pub seen: u64,
    /// Datagrams each rule of the chain matched, in rule order.
    pub matched: Vec<u64>,
}

/// A set of namespaces wired as two switches joined by a trunk, one host per node; deletes all
/// of it (and stops its delayers, and kills whatever still runs inside) when dropped.
pub struct Lab {
    switch: String,
    hosts: Vec<String>,
    subnet: u8,
    iptables: &'static str,
    delayers: Vec<(usize, Delayer)>,
}

impl Lab {
    /// Builds a lab for `test` with `nodes` hosts on 10.203.`subnet`.0/24, hosts 1..=`side_a`
    /// on switch side A and the rest on side B, trunk up. Returns None after printing one
    /// `SKIP: <reason>` line when namespaces cannot be made here (not root, no `ip`, no
    /// iptables, `ip netns add` refused); any later failure is a test failure (panic).
    pub fn new(test: &str, subnet: u8, nodes: u8, side_a: u8) -> Option<Lab> {
        match Lab::try_new(test, subnet, nodes, side_a) {
            Ok(lab) => Some(lab),
            Err(reason) => {
                eprintln!("SKIP: {test}: {reason}");
                None
            }
        }
    }

    fn try_new(test: &str, subnet: u8, nodes: u8, side_a: u8) -> Result<Lab, String> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("network namespaces need root (run as root)".into());
        }
        run("ip", &["-V"]).map_err(|e| format!("no usable `ip` (apt: iproute2): {e}"))?;
        let iptables = ["iptables-legacy", "iptables"]
            .into_iter()
            .find(|p| run(p, &["--version"]).is_ok())
            .ok_or("iptables is not installed (bash .ci/install-test-deps installs it)")?;
        sweep_stale();
        let tag = format!("{PREFIX}-{}-{test}", std::process::id());
        let sw = format!("{tag}-sw");
        run("ip", &["netns", "add", &sw])
            .map_err(|e| format!("cannot create a network namespace: {e}"))?;
        // From here on, dropping the lab (an error below, a panic) deletes what was made.
        let mut lab = Lab {
            switch: sw.clone(),
            hosts: Vec::new(),
            subnet,
            iptables,
            delayers: Vec::new(),
        };
        // No STP: a bridge port forwards as soon as it is up, so a healed trunk carries at once.
        ip(&format!("-n {sw} link add br0 type bridge stp_state 0"));
        ip(&format!("-n {sw} link add br1 type bridge stp_state 0"));
        ip(&format!("-n {sw} link add ta type veth peer name tb"));
        for (bridge, port) in [("br0", "ta"), ("br1", "tb")] {
            ip(&format!("-n {sw} link set {bridge} up"));
            ip(&format!("-n {sw} link set {port} master {bridge} up"));
        }
        for i in 1..=nodes {
            let host = format!("{tag}-{i}");
            ip(&format!("netns add {host}"));
            lab.hosts.push(host.clone());
            let bridge = if i <= side_a { "br0" } else { "br1" };
            // Created inside the switch with its peer end inside the host: never in the root
            // namespace.
            ip(&format!(
                "-n {sw} link add p{i} type veth peer name eth0 netns {host}"
            ));
            ip(&format!("-n {sw} link set p{i} master {bridge} up"));
            ip(&format!("-n {host} addr add {}/24 dev eth0", lab.ip(i)));
            ip(&format!("-n {host} link set eth0 up"));
            ip(&format!("-n {host} link set lo up"));
            lab.try_iptables(i, &["-N", CHAIN])
                .map_err(|e| format!("iptables does not work in a namespace: {e}"))?;
            let jump = format!("-A INPUT -p udp --dport {MESH_PORT} -j {CHAIN}");
            lab.iptables(i, &jump.split_whitespace().collect::<Vec<_>>());
        }
        Ok(lab)
    }

    /// The address of host `i` (1-based).
    pub fn ip(&self, i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 203, self.subnet, i)
    }

    /// The mesh address of host `i`, for use as a seed.
    pub fn mesh_addr(&self, i: u8) -> SocketAddr {
        SocketAddr::from((self.ip(i), MESH_PORT))
    }

    /// The namespace of host `i`.
    pub fn host(&self, i: u8) -> &str {
        &self.hosts[usize::from(i) - 1]
    }

    /// Number of hosts.
    pub fn len(&self) -> u8 {
        u8::try_from(self.hosts.len()).expect("at most 254 hosts")
    }

    /// Starts one agent per host, named `{prefix}{i}`, all but the first seeded with host 1.
    pub fn start_cluster(&self, prefix: &str, extra: &[&str]) -> Vec<Node> {
        (1..=self.len())
            .map(|i| {
                let seeds = if i == 1 {
                    vec![]
                } else {
                    vec![self.mesh_addr(1)]
                };
                let name = format!("{prefix}{i}");
                Node::start_in_netns(self.host(i), &name, self.ip(i), &seeds, extra)
            })
            .collect()
    }

    /// Takes the trunk between the two sides of the switch down (a cut) or up (healed).
    pub fn set_trunk(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&format!("-n {} link set ta {state}", self.switch));
    }

    /// Appends `rule` (iptables match and target, e.g. `-s 10.203.1.2 -j DROP`) to the fault
    /// chain of host `i`: it applies to every mesh datagram host `i` receives.
    pub fn add_fault(&self, i: u8, rule: &[&str]) {
        let mut args = vec!["-A", CHAIN];
        args.extend_from_slice(rule);
        self.iptables(i, &args);
    }

    /// Removes every fault of host `i` and zeroes its counters.
    pub fn clear_faults(&self, i: u8) {
        self.iptables(i, &["-F", CHAIN]);
        self.iptables(i, &["-Z", "INPUT"]);
    }

    /// Packet counters of host `i`'s fault chain since its faults were last cleared.
    pub fn fault_counters(&self, i: u8) -> FaultCounters {
        let counts = |chain: &str| -> Vec<(u64, String)> {
            self.iptables(i, &["-L", chain, "-v", "-x", "-n"])
                .lines()
                .skip(2)
                .filter_map(|line| {
                    let mut cols = line.split_whitespace();
                    let pkts = cols.next()?.parse().ok()?;
                    let _bytes = cols.next()?;
                    Some((pkts, cols.next().unwrap_or("").to_string()))
                })
                .collect()
        };
        let seen = counts("INPUT")
            .into_iter()
            .filter(|(_, target)| target == CHAIN)
            .map(|(pkts, _)| pkts)
            .sum();
        let matched = counts(CHAIN).into_iter().map(|(pkts, _)| pkts).collect();
        FaultCounters { seen, matched }
    }

    /// Delays every mesh datagram host `i` receives by `delay` (an NFQUEUE rule and a
    /// [`Delayer`] thread). Returns Err when the kernel or iptables lacks NFQUEUE.
    pub fn start_delay(&mut self, i: u8, delay: Duration) -> Result<(), String> {
        let delayer = Delayer::start(self.host(i), QUEUE, delay)
            .map_err(|e| format!("cannot bind an NFQUEUE in {}: {e}", self.host(i)))?;
        let queue = QUEUE.to_string();
        // Bypass: should the delayer stop first, datagrams pass instead of being dropped.
        let rule = [
            "-A",
            CHAIN,
            "-j",
            "NFQUEUE",
            "--queue-num",
            &queue,
            "--queue-bypass",
        ];
        self.try_iptables(i, &rule)?;
        self.delayers.push((usize::from(i), delayer));
        Ok(())
    }

    /// Removes every delay (rules first, then the delayers release what they hold) and returns
    /// each delayer's statistics, by host.
    pub fn stop_delays(&mut self) -> Vec<(u8, DelayStats)> {
        let delayers = std::mem::take(&mut self.delayers);
        for (i, _) in &delayers {
            self.clear_faults(u8::try_from(*i).expect("host index fits"));
        }
        delayers
            .into_iter()
            .map(|(i, d)| (u8::try_from(i).expect("host index fits"), d.stop()))
            .collect()
    }

    fn try_iptables(&self, i: u8, args: &[&str]) -> Result<String, String> {
        // -w: the xtables lock file is shared by every namespace of the machine.
        let mut full = vec!["netns", "exec", self.host(i), self.iptables, "-w"];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    fn iptables(&self, i: u8, args: &[&str]) -> String {
        self.try_iptables(i, args).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, delayer) in std::mem::take(&mut self.delayers) {
            delayer.stop();
        }
        for ns in self.hosts.iter().chain(std::iter::once(&self.switch)) {
            remove_namespace(ns);
        }
    }
}

/// Kills what still runs in `ns` (by PID: nodes normally killed their own already) and deletes
/// it; its veth ends go with it. Reports, never panics: it runs in `Drop`.
fn remove_namespace(ns: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            eprintln!("netns cleanup: killing leftover pid {pid} in {ns}");
            // SAFETY: kill(2) on a process inside a namespace this harness created.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if let Err(e) = run("ip", &["netns", "delete", ns]) {
        eprintln!("netns cleanup: {e}");
    }
}

/// Deletes the namespaces of test processes that no longer exist (a run killed by SIGKILL
/// cannot clean up after itself).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("netns cleanup: removing stale {name} (test process {pid} is gone)");
            remove_namespace(&name);
        }
    }
}

// ---- NFQUEUE delayer -------------------------------------------------------------------------
// The netlink messages below are those of libnetfilter_queue, built by hand with the standard
// library and libc: <linux/netfilter/nfnetlink_queue.h>.

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NF_ACCEPT: u32 = 1;
/// Strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from an attribute type.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Longest the delayer sleeps before it looks at its stop flag again.
const STOP_POLL: Duration = Duration::from_millis(20);

/// What a delayer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelayStats {
    /// Datagrams held and then accepted.
    pub packets: u64,
    /// Longest any datagram was held beyond the delay (the delayer's own imprecision).
    pub max_late: Duration,
    /// Times the kernel dropped queued packets because the delayer's socket was full.
    pub overruns: u64,
}

/// A thread inside one namespace that holds every datagram queued to it for a fixed time,
/// then lets it pass: a constant added latency, in the order the datagrams came.
pub struct Delayer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<DelayStats>>,
}

impl Delayer {
    /// Binds NFQUEUE `queue` inside namespace `ns` and starts holding its packets for `delay`.
    pub fn start(ns: &str, queue: u16, delay: Duration) -> io::Result<Delayer> {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let ns = ns.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("delayer {ns}"))
            .spawn(move || match bind_queue(&ns, queue) {
                Ok(fd) => {
                    let _ = ready_tx.send(Ok(()));
                    pump(&fd, queue, delay, &flag)
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    DelayStats::default()
                }
            })?;
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| Err(io::Error::other("delayer did not start within 5 s")));
        let delayer = Delayer {
            stop,
            thread: Some(thread),
        };
        ready.map(|()| delayer)
    }

    /// Lets every held datagram pass at once, unbinds and returns the statistics.
    pub fn stop(mut self) -> DelayStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One netlink message to the queue subsystem: header, nfgenmsg (queue number big-endian) and
/// attributes, each padded to 4 bytes.
fn nfq_message(kind: u16, flags: u16, seq: u32, queue: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut msg = vec![0u8; 16];
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    msg.extend_from_slice(&queue.to_be_bytes());
    for (kind, payload) in attrs {
        let len = u16::try_from(4 + payload.len()).expect("attribute fits");
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(payload);
        msg.resize(msg.len().next_multiple_of(4), 0);
    }
    let len = u32::try_from(msg.len()).expect("message fits");
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    msg
}

fn send_to_kernel(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_nl is valid; pid 0 addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: msg and kernel outlive the call; lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            std::ptr::addr_of!(kernel).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one batch of messages; Ok(None) when nothing is waiting.
fn recv_batch(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: buf is valid for writes of its length.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            _ => Err(err),
        };
    }
    Ok(Some(usize::try_from(n).expect("non-negative")))
}

/// Waits up to `timeout` for the socket to become readable.
fn wait_readable(fd: &OwnedFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

/// The netlink messages in a received batch: (type, payload after the 16-byte header).
fn messages(batch: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= batch.len() {
        let len = u32::from_ne_bytes(batch[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len < 16 || at + len > batch.len() {
            break;
        }
        let kind = u16::from_ne_bytes(batch[at + 4..at + 6].try_into().expect("2 bytes"));
        out.push((kind, &batch[at + 16..at + len]));
        at += len.next_multiple_of(4);
    }
    out
}

/// The packet id of a queued-packet message (its NFQA_PACKET_HDR), if it is one.
fn packet_id(kind: u16, payload: &[u8]) -> Option<u32> {
    if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
        return None;
    }
    let mut at = 4; // nfgenmsg
    while at + 4 <= payload.len() {
        let len = usize::from(u16::from_ne_bytes(payload[at..at + 2].try_into().ok()?));
        let kind = u16::from_ne_bytes(payload[at + 2..at + 4].try_into().ok()?) & NLA_TYPE_MASK;
        if len < 4 || at + len > payload.len() {
            return None;
        }
        if kind == NFQA_PACKET_HDR && len >= 8 {
            return Some(u32::from_be_bytes(payload[at + 4..at + 8].try_into().ok()?));
        }
        at += len.next_multiple_of(4);
    }
    None
}

/// Sends a config request and waits for the kernel's acknowledgement.
fn configure(fd: &OwnedFd, seq: u32, queue: u16, attr: (u16, &[u8])) -> io::Result<()> {
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    send_to_kernel(
        fd,
        &nfq_message(NFQNL_MSG_CONFIG, flags, seq, queue, &[attr]),
    )?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 8192];
    while Instant::now() < deadline {
        wait_readable(fd, Duration::from_millis(100));
        let Some(n) = recv_batch(fd, &mut buf)? else {
            continue;
        };
        for (kind, payload) in messages(&buf[..n]) {
            if kind == libc::NLMSG_ERROR as u16 && payload.len() >= 4 {
                let errno = i32::from_ne_bytes(payload[0..4].try_into().expect("4 bytes"));
                return match errno {
                    0 => Ok(()),
                    e => Err(io::Error::from_raw_os_error(-e)),
                };
            }
        }
    }
    Err(io::Error::other("no netlink acknowledgement within 2 s"))
}

/// Enters `ns`, opens a netfilter netlink socket there and binds `queue` (metadata only: the
/// verdict needs just the packet id).
fn bind_queue(ns: &str, queue: u16) -> io::Result<OwnedFd> {
    enter(ns)?;
    // SAFETY: plain socket(2); the fd is owned below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // A larger buffer so a burst (a push-pull's QUIC flight) cannot overrun it; best effort.
    let size: libc::c_int = 1 << 20;
    // SAFETY: size outlives the call.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    // SAFETY: an all-zero sockaddr_nl lets the kernel pick our port id.
    let mut local: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    local.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: local outlives the call.
    let rc = unsafe {
        libc::bind(
            raw,
            std::ptr::addr_of!(local).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let pf = (libc::AF_INET as u16).to_be_bytes();
    configure(
        &fd,
        1,
        queue,
        (NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, pf[0], pf[1]]),
    )?;
    let mut params = 0u32.to_be_bytes().to_vec(); // copy range: nothing of the payload
    params.push(NFQNL_COPY_META);
    configure(&fd, 2, queue, (NFQA_CFG_PARAMS, &params))?;
    Ok(fd)
}

/// Accepts packet `id`.
fn accept(fd: &OwnedFd, queue: u16, id: u32) {
    let mut verdict = NF_ACCEPT.to_be_bytes().to_vec();
    verdict.extend_from_slice(&id.to_be_bytes());
    let msg = nfq_message(
        NFQNL_MSG_VERDICT,
        libc::NLM_F_REQUEST as u16,
        0,
        queue,
        &[(NFQA_VERDICT_HDR, &verdict)],
    );
    // A failed verdict leaves the packet queued until the socket closes, then it is dropped:
    // a lost datagram, which the protocol under test survives by design.
    let _ = send_to_kernel(fd, &msg);
}

/// The delayer's loop: queue every packet id with its release time, accept each when due.
fn pump(fd: &OwnedFd, queue: u16, delay: Duration, stop: &AtomicBool) -> DelayStats {
    let mut stats = DelayStats::default();
    let mut held: VecDeque<(u32, Instant)> = VecDeque::new();
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while let Some(&(id, due)) = held.front() {
            if due > now {
                break;
            }
            accept(fd, queue, id);
            stats.packets += 1;
            stats.max_late = stats.max_late.max(now - due);
            held.pop_front();
        }
        let next = held
            .front()
            .map_or(STOP_POLL, |(_, due)| due.saturating_duration_since(now));
        wait_readable(fd, next.min(STOP_POLL));
        loop {
            match recv_batch(fd, &mut buf) {
                Ok(Some(n)) => {
                    let arrived = Instant::now();
                    for (kind, payload) in messages(&buf[..n]) {
                        if let Some(id) = packet_id(kind, payload) {
                            held.push_back((id, arrived + delay));
                        }
                    }
                }
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => stats.overruns += 1,
                Err(_) => break,
            }
        }
    }
    for (id, _) in held.drain(..) {
        accept(fd, queue, id);
        stats.packets += 1;
    }
    stats
}
