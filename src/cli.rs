//! The command line: `meshd agent …` runs the daemon; `meshd members`, `leave` and `info` are
//! clients of a running agent's HTTP API (see [`crate::client`]).
//!
//! Every agent flag can also come from an environment variable `MESHD_<FLAG_IN_UPPER_SNAKE>`,
//! e.g. `MESHD_MESH_PEER_URLS`. Parse errors are clap's (exit 2); semantic checks below print one
//! `error: …` line and also exit 2; runtime failures (address in use) exit 1.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod profile;

pub use profile::Profile;

use crate::agent::{self, AgentConfig, ApiTls};
use crate::api::Access;
use crate::client;
use crate::coordination;
use crate::runtime::{entropy, RuntimeConfig, Seed, TrustConfig};
use crate::seal::{self, Key, Keyring};
use crate::store::{StoreConfig, StoreLimits};
use crate::swim::limits::{self, Field, LimitError};
use crate::swim::{self, Identity, NodeMeta};

/// Exit status for invalid flags or environment (as clap uses for usage errors).
const EXIT_USAGE: u8 = 2;
/// Exit status for failures while running (bind errors, crashed tasks).
const EXIT_FAILURE: u8 = 1;

/// The version with the optimisation level it was built with (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (opt-level ",
    env!("MESHD_OPT_LEVEL"),
    ")"
);

/// meshd: SWIM gossip membership daemon.
#[derive(Debug, Parser)]
#[command(name = "meshd", version = VERSION, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the membership agent (gossip on the mesh port, HTTP API on --host:--port).
    Agent(Box<AgentArgs>),
    /// List the members a running agent knows, as a table or JSON.
    Members(client::members::MembersArgs),
    /// Ask a running agent to leave the cluster gracefully and exit.
    Leave(client::leave::LeaveArgs),
    /// Show a running agent's own state and a summary of its cluster.
    Info(client::info::InfoArgs),
    /// Show who leads in a running agent's view (lowest leader priority, then name, among
    /// ALIVE members) and whether it sees a quorum.
    Leader(client::coordination::LeaderArgs),
    /// Follow a running agent's membership changes (and with --stores its store changes), one
    /// line each, like `serf monitor`.
    Monitor(client::monitor::MonitorArgs),
    /// Show which ALIVE member owns a key (rendezvous hashing): the one to take over a job or
    /// connection.
    Owner(client::coordination::OwnerArgs),
    /// Print a new random cluster key (base64), for --encrypt-key or `meshd keys install`.
    Keygen,
    /// Cluster keyring commands: list, install, use, remove (over a running agent's API).
    Keys(client::keys::KeysArgs),
    /// Replicated stores: ls, get, put, del, incr, add, remove, watch (over a running agent's
    /// API).
    Store(client::store::StoreArgs),
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `meshd agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Unique member name [default: Mesh_ + 4 random characters]
    #[arg(long, env = "MESHD_MESH_SERVER_NAME")]
    pub mesh_server_name: Option<String>,
    /// IP the mesh UDP socket (SWIM + QUIC) binds to
    #[arg(long, env = "MESHD_MESH_HOST", default_value = "0.0.0.0")]
    pub mesh_host: IpAddr,
    /// IP peers reach this node at; required when --mesh-host is 0.0.0.0 or ::
    #[arg(long, env = "MESHD_MESH_ADVERTISE_HOST")]
    pub mesh_advertise_host: Option<IpAddr>,
    /// UDP port for SWIM and QUIC
    #[arg(long, env = "MESHD_MESH_PORT", default_value_t = 39527,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub mesh_port: u16,
    /// Seed peers as host:port, comma-separated or repeated; DNS names may resolve to many
    #[arg(long, env = "MESHD_MESH_PEER_URLS", value_delimiter = ',', value_parser = parse_seed)]
    pub mesh_peer_urls: Vec<Seed>,
    /// IP the HTTP API binds to
    #[arg(long, env = "MESHD_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// HTTP API port
    #[arg(long, env = "MESHD_PORT", default_value_t = 39528,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Region label announced with this node
    #[arg(long, env = "MESHD_REGION", default_value = "")]
    pub region: String,
    /// Zone label announced with this node
    #[arg(long, env = "MESHD_ZONE", default_value = "")]
    pub zone: String,
    /// Tag key=value announced with this node (repeatable, or comma-separated)
    #[arg(long = "tag", env = "MESHD_TAG", value_delimiter = ',', value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// Timing preset after memberlist's LAN, WAN and local configs; the timing flags below
    /// override single values of it
    #[arg(long, env = "MESHD_PROFILE", value_enum, default_value_t = Profile::Lan)]
    pub profile: Profile,
    /// How often one member is probed [default: from --profile; lan 1s, wan 5s, local 1s]
    #[arg(long, env = "MESHD_PROBE_INTERVAL", value_parser = positive_duration)]
    pub probe_interval: Option<Duration>,
    /// Wait for a direct ack before probing indirectly; must be below --probe-interval
    /// [default: lan 500ms, wan 3s, local 200ms]
    #[arg(long, env = "MESHD_PROBE_TIMEOUT", value_parser = positive_duration)]
    pub probe_timeout: Option<Duration>,
    /// How the member probed each interval is picked: shuffled (each node its own random
    /// round-robin, as SWIM) or aligned (by wall-clock slot over the members' name order, so
    /// every member is probed about once an interval; needs clocks in sync, as NTP keeps them)
    #[arg(long, env = "MESHD_PROBE_SCHEDULE", value_enum, default_value_t = ScheduleArg::Shuffled)]
    pub probe_schedule: ScheduleArg,
    /// Members asked to probe indirectly, 0 disables indirect probes [default: lan 3, wan 3,
    /// local 1]
    #[arg(long, env = "MESHD_INDIRECT_CHECKS")]
    pub indirect_checks: Option<usize>,
    /// Suspicion timeout base multiplier (× log10 N × probe interval); the ceiling is
    /// --suspicion-max-timeout-mult times this base [default: lan 4, wan 6, local 3]
    #[arg(long, env = "MESHD_SUSPICION_MULT", value_parser = clap::value_parser!(u32).range(1..))]
    pub suspicion_mult: Option<u32>,
    /// Suspicion timeout of an unconfirmed suspicion, as a multiple of the base [default: 6 in
    /// every profile]
    #[arg(long, env = "MESHD_SUSPICION_MAX_TIMEOUT_MULT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub suspicion_max_timeout_mult: Option<u32>,
    /// Suspicion timeout once every expected witness confirms (× log10 N × probe interval)
    /// [default: 0.75 in every profile]
    #[arg(long, env = "MESHD_SUSPICION_CONFIRMED_MULT", value_parser = positive_f64)]
    pub suspicion_confirmed_mult: Option<f64>,
    /// Members an urgent fact (own join, leave, refuted DOWN, a DOWN verdict) is sent to at once
    /// [default: 256 in every profile]
    #[arg(long, env = "MESHD_ANNOUNCE_FANOUT")]
    pub announce_fanout: Option<usize>,
    /// How often piggyback gossip goes out [default: lan 200ms, wan 500ms, local 100ms]
    #[arg(long, env = "MESHD_GOSSIP_INTERVAL", value_parser = positive_duration)]
    pub gossip_interval: Option<Duration>,
    /// Members each gossip tick sends to [default: lan 3, wan 4, local 3]
    #[arg(long, env = "MESHD_GOSSIP_NODES")]
    pub gossip_nodes: Option<usize>,
    /// How long DOWN members still receive gossip [default: lan 30s, wan 1m, local 15s]
    #[arg(long, env = "MESHD_GOSSIP_TO_THE_DEAD", value_parser = humantime::parse_duration)]
    pub gossip_to_the_dead: Option<Duration>,
    /// Each update is sent retransmit-mult × ceil(log10(N+1)) times [default: lan 4, wan 4,
    /// local 2]
    #[arg(long, env = "MESHD_RETRANSMIT_MULT", value_parser = clap::value_parser!(u32).range(1..))]
    pub retransmit_mult: Option<u32>,
    /// Base interval of full-state push-pull exchanges [default: lan 30s, wan 1m, local 15s]
    #[arg(long, env = "MESHD_PUSH_PULL_INTERVAL", value_parser = positive_duration)]
    pub push_pull_interval: Option<Duration>,
    /// How often seeds are resolved again once joined (merges split clusters, finds members at
    /// new IPs); 0s disables
    #[arg(long, env = "MESHD_SEED_REFRESH_INTERVAL", default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub seed_refresh_interval: Duration,
    /// Most members this node lists (itself and DOWN or LEAVING ones included); facts about
    /// more new members are refused and counted
    #[arg(long, env = "MESHD_MAX_MEMBERS", default_value_t = 10_000,
          value_parser = parse_max_members)]
    pub max_members: usize,
    /// How long DOWN and LEAVING members stay listed
    #[arg(long, env = "MESHD_RETENTION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// Longest a graceful leave may take before the process exits anyway
    #[arg(long, env = "MESHD_LEAVE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub leave_timeout: Duration,
    /// Log format
    #[arg(long, env = "MESHD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// File whose first line is the API token: callers that are not on loopback may then make
    /// mutating calls (leave, tags, keys) with `Authorization: Bearer <token>`; without it
    /// mutating calls are loopback-only
    #[arg(long, env = "MESHD_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// PEM certificate chain for serving the HTTP/gRPC API over TLS (needs --api-tls-key)
    #[arg(long, env = "MESHD_API_TLS_CERT", requires = "api_tls_key")]
    pub api_tls_cert: Option<PathBuf>,
    /// PEM private key for --api-tls-cert
    #[arg(long, env = "MESHD_API_TLS_KEY", requires = "api_tls_cert")]
    pub api_tls_key: Option<PathBuf>,
    /// Cluster key (base64, 32 bytes; `meshd keygen` makes one): every datagram is sealed with
    /// it and push-pull peers must hold it. Without it (or --keyring-file) gossip is in the clear
    #[arg(long, env = "MESHD_ENCRYPT_KEY", value_parser = parse_key, hide_env_values = true)]
    pub encrypt_key: Option<Key>,
    /// Keyring file (JSON list of base64 keys, the first primary), kept up to date by key
    /// commands; created from --encrypt-key when missing, and wins over it when present
    #[arg(long, env = "MESHD_KEYRING_FILE")]
    pub keyring_file: Option<PathBuf>,
    /// Label bound into every sealed datagram and the QUIC identities: clusters with different
    /// labels never talk, even under one key
    #[arg(long, env = "MESHD_CLUSTER_LABEL", default_value = "")]
    pub cluster_label: String,
    /// Directory where the replicated stores are kept (one file, stores.redb), so a restarted
    /// node keeps its state and a write is acknowledged only once on disk; without it the
    /// stores live in memory only
    #[arg(long, env = "MESHD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Most bytes all replicated stores of this node may hold together (e.g. 64MiB, 1GiB);
    /// writes beyond it are refused with 413
    #[arg(long, env = "MESHD_STORE_MAX_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub store_max_bytes: usize,
    /// How long deleted store keys are remembered (tombstones) before they are forgotten; a
    /// node cut off for longer may bring a deleted key back
    #[arg(long, env = "MESHD_STORE_TOMBSTONE_RETENTION", default_value = "1h",
          value_parser = positive_duration)]
    pub store_tombstone_retention: Duration,
    /// How often this node sends one random member its stores' roots digest; a member whose
    /// stores differ starts anti-entropy with it (push-pulls compare the stores too)
    #[arg(long, env = "MESHD_STORE_SYNC_INTERVAL", default_value = "10s",
          value_parser = positive_duration)]
    pub store_sync_interval: Duration,
    /// This node's leader priority, announced as the tag leader-priority: the ALIVE member
    /// with the lowest priority (then name) is the leader of GET /ha/leader
    #[arg(long, env = "MESHD_LEADER_PRIORITY", allow_hyphen_values = true)]
    pub leader_priority: Option<i32>,
    /// Cluster size for the leader view's quorum (more than half of it ALIVE); without it the
    /// quorum counts the members ALIVE, SUSPECTED or DOWN and not yet reaped
    #[arg(long, env = "MESHD_EXPECT_NODES", value_parser = clap::value_parser!(u32).range(1..))]
    pub expect_nodes: Option<u32>,
    /// How often this node publishes its vitals (memory, CPU, descriptors, uptime, version,
    /// health score, its gateway's load) into the replicated store `nodes`
    #[arg(long, env = "MESHD_VITALS_INTERVAL", default_value = "10s",
          value_parser = positive_duration)]
    pub vitals_interval: Duration,
}

/// A byte size: a number with an optional unit B, KiB, MiB or GiB (also K, M, G).
fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 1048576, 512KiB, 64MiB, 1GiB)"))?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?}; use B, KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{s:?} must be above zero and fit this machine"))
}

/// Whole milliseconds of `d`, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn parse_key(s: &str) -> Result<Key, String> {
    Key::from_base64(s).map_err(|e| e.to_string())
}

fn parse_seed(s: &str) -> Result<Seed, String> {
    s.parse()
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("tag {s:?} must look like key=value")),
    }
}

fn parse_max_members(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        // This node and at least one other.
        Ok(n) if n >= 2 => Ok(n),
        Ok(_) => Err("must be at least 2 (this node and one other)".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (examples: 500ms, 1s, 2m)")),
    }
}

/// A finite number above zero (a multiplier of a timeout).
fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a number greater than zero".to_string()),
        Err(e) => Err(format!("{e} (examples: 0.75, 2)")),
    }
}

/// `Mesh_` plus 4 random alphanumerics, as SMG names unnamed nodes.
fn default_name() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bits = entropy::random_u64();
    let mut name = String::from("Mesh_");
    for _ in 0..4 {
        name.push(char::from(
            ALPHABET[(bits % ALPHABET.len() as u64) as usize],
        ));
        bits /= ALPHABET.len() as u64;
    }
    name
}

impl AgentArgs {
    /// Checks the flags that depend on each other and builds the agent's configuration.
    pub fn into_config(self) -> Result<AgentConfig, String> {
        let swim = self.timing();
        if swim.probe_timeout >= swim.probe_interval {
            let source = |explicit: bool| match explicit {
                true => String::new(),
                false => format!(", from --profile {}", self.profile.name()),
            };
            return Err(format!(
                "--probe-timeout ({}{}) must be shorter than --probe-interval ({}{})",
                humantime::format_duration(swim.probe_timeout),
                source(self.probe_timeout.is_some()),
                humantime::format_duration(swim.probe_interval),
                source(self.probe_interval.is_some()),
            ));
        }
        let name = match self.mesh_server_name {
            Some(name) => name.trim().to_string(),
            None => default_name(),
        };
        limits::check_name(&name).map_err(|e| format!("--mesh-server-name: {e}"))?;
        let advertise_ip = match self.mesh_advertise_host {
            Some(ip) if ip.is_unspecified() => {
                return Err(format!(
                    "--mesh-advertise-host {ip} is not an address peers can reach"
                ))
            }
            Some(ip) => ip,
            None if self.mesh_host.is_unspecified() => {
                return Err(format!(
                    "--mesh-host {} is not reachable by peers; set --mesh-advertise-host \
                     (or MESHD_MESH_ADVERTISE_HOST) to this node's IP",
                    self.mesh_host
                ))
            }
            None => self.mesh_host,
        };
        let mut tags = BTreeMap::new();
        for (key, value) in self.tags {
            if tags.insert(key.clone(), value).is_some() {
                return Err(format!("--tag {key} is given more than once"));
            }
        }
        if let Some(priority) = self.leader_priority {
            let tag = coordination::PRIORITY_TAG;
            if tags.insert(tag.to_string(), priority.to_string()).is_some() {
                return Err(format!(
                    "--leader-priority and --tag {tag} both set it; keep one"
                ));
            }
        }
        let meta = NodeMeta {
            region: self.region,
            zone: self.zone,
            tags,
        };
        limits::check_meta(&meta).map_err(|e| format!("{}: {e}", meta_flag(&e)))?;
        let identity = Identity {
            name,
            addr: SocketAddr::new(advertise_ip, self.mesh_port),
            meta,
        };
        limits::check_cluster_label(&self.cluster_label)
            .map_err(|e| format!("--cluster-label: {e}"))?;
        let trust = trust_config(self.encrypt_key, self.keyring_file, self.cluster_label)?;
        let access = match &self.api_token_file {
            Some(path) => Access::from_file(path)?,
            None => Access::loopback_only(),
        };
        let api_tls = match (self.api_tls_cert, self.api_tls_key) {
            (Some(cert), Some(key)) => Some(ApiTls { cert, key }),
            _ => None,
        };
        Ok(AgentConfig {
            runtime: RuntimeConfig {
                identity,
                bind: SocketAddr::new(self.mesh_host, self.mesh_port),
                swim,
                seeds: self.mesh_peer_urls,
                leave_timeout: self.leave_timeout,
                exchange_timeout: self.profile.exchange_timeout(),
                trust,
                stores: StoreConfig {
                    limits: StoreLimits {
                        max_bytes: self.store_max_bytes,
                        ..StoreLimits::default()
                    },
                    tombstone_retention_ms: millis(self.store_tombstone_retention),
                    sync_interval_ms: millis(self.store_sync_interval),
                    ..StoreConfig::default()
                },
                data_dir: self.data_dir,
                expect_nodes: self.expect_nodes.map(|n| n as usize),
            },
            http: SocketAddr::new(self.host, self.port),
            access,
            api_tls,
            vitals_interval: self.vitals_interval,
        })
    }
}

/// The keyring to start with: the keyring file's when it exists, else `--encrypt-key`'s (the
/// file is then created from it at start), else none.
fn trust_config(
    encrypt_key: Option<Key>,
    keyring_file: Option<PathBuf>,
    label: String,
) -> Result<TrustConfig, String> {
    let mut ignored_flag_key = None;
    let keyring = match (&keyring_file, encrypt_key) {
        (Some(path), key) if path.exists() => {
            let keyring = seal::file::load(path)?;
            ignored_flag_key = key.filter(|k| !keyring.contains(k)).map(|k| k.id());
            Some(keyring)
        }
        (Some(path), None) => {
            return Err(format!(
                "--keyring-file {} does not exist; give --encrypt-key too, to create it",
                path.display()
            ))
        }
        (_, Some(key)) => Some(Keyring::new(vec![key]).map_err(|e| e.to_string())?),
        (None, None) => None,
    };
    Ok(TrustConfig {
        keyring,
        keyring_file,
        label,
        ignored_flag_key,
    })
}

/// The flag that set the metadata value a limit refused.
fn meta_flag(err: &LimitError) -> &'static str {
    let field = match err {
        LimitError::TooLong { field, .. } | LimitError::BadChar { field, .. } => field,
        LimitError::Empty(field) => field,
    };
    match field {
        Field::Region => "--region",
        Field::Zone => "--zone",
        _ => "--tag",
    }
}

/// The log filter from `RUST_LOG`: comma-separated `target=level` directives and an optional
/// bare default level (`meshd=debug,warn`); unset or unparsable means `info`.
///
/// A plain target filter rather than tracing-subscriber's `EnvFilter`: that one also matches
/// span fields with regular expressions, which links a regex engine into the daemon (about
/// 0.3 MB of code, resident in every process) for a feature nobody uses here.
pub fn log_filter(rust_log: Option<&str>) -> Targets {
    rust_log
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

impl AgentArgs {
    /// The protocol knobs: the profile's, with every timing flag given (or set in the
    /// environment) taking its place.
    fn timing(&self) -> swim::Config {
        let profile = self.profile.swim();
        swim::Config {
            probe_interval: self.probe_interval.unwrap_or(profile.probe_interval),
            probe_timeout: self.probe_timeout.unwrap_or(profile.probe_timeout),
            indirect_checks: self.indirect_checks.unwrap_or(profile.indirect_checks),
            suspicion_mult: self.suspicion_mult.unwrap_or(profile.suspicion_mult),
            suspicion_max_timeout_mult: self
                .suspicion_max_timeout_mult
                .unwrap_or(profile.suspicion_max_timeout_mult),
            suspicion_confirmed_mult: self
                .suspicion_confirmed_mult
                .unwrap_or(profile.suspicion_confirmed_mult),
            announce_fanout: self.announce_fanout.unwrap_or(profile.announce_fanout),
            gossip_interval: self.gossip_interval.unwrap_or(profile.gossip_interval),
            gossip_nodes: self.gossip_nodes.unwrap_or(profile.gossip_nodes),
            gossip_to_the_dead: self
                .gossip_to_the_dead
                .unwrap_or(profile.gossip_to_the_dead),
            retransmit_mult: self.retransmit_mult.unwrap_or(profile.retransmit_mult),
            push_pull_interval: self
                .push_pull_interval
                .unwrap_or(profile.push_pull_interval),
            retention: self.retention,
            max_members: self.max_members,
            seed_refresh_interval: self.seed_refresh_interval,
            probe_schedule: self.probe_schedule.at_start(),
            ..profile
        }
    }
}

/// `--probe-schedule`: the choices of [`swim::ProbeSchedule`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// Each node its own shuffled round-robin (SWIM's).
    #[default]
    Shuffled,
    /// By wall-clock slot over the members' name order.
    Aligned,
}

impl ScheduleArg {
    /// The schedule, anchored to the wall clock now for `aligned`.
    fn at_start(self) -> swim::ProbeSchedule {
        match self {
            ScheduleArg::Shuffled => swim::ProbeSchedule::Shuffled,
            ScheduleArg::Aligned => swim::ProbeSchedule::Aligned {
                at: std::time::Instant::now(),
                unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default(),
            },
        }
    }
}

/// Installs the tracing subscriber: filter from `RUST_LOG` (default `info`), logs on stderr.
fn init_logging(format: LogFormat) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes help a human at a terminal but garble log files and collectors.
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(layer).init(),
        LogFormat::Json => registry.with(layer.json()).init(),
    }
}

/// Parses the command line and runs the chosen subcommand; the process exit status.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(args) => run_agent(*args),
        Command::Members(args) => client::finish(client::members::run(&args)),
        Command::Leave(args) => client::finish(client::leave::run(&args)),
        Command::Info(args) => client::finish(client::info::run(&args)),
        Command::Leader(args) => client::finish(client::coordination::run_leader(&args)),
        Command::Owner(args) => client::finish(client::coordination::run_owner(&args)),
        Command::Monitor(args) => client::finish(client::monitor::run(&args)),
        Command::Keygen => keygen(),
        Command::Keys(args) => client::finish(client::keys::run(&args)),
        Command::Store(args) => client::finish(client::store::run(&args)),
    }
}

/// Prints a new key from the operating system's random source.
fn keygen() -> ExitCode {
    use rand::TryRngCore;
    let mut bytes = [0u8; seal::KEY_BYTES];
    match rand::rngs::OsRng.try_fill_bytes(&mut bytes) {
        Ok(()) => {
            println!("{}", Key::from_bytes(bytes).to_base64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: the operating system's random source failed: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Most DNS lookups (seeds) that may block at once; each runs on its own blocking thread.
const MAX_BLOCKING_THREADS: usize = 4;

/// The agent's async runtime: one thread. The daemon waits on sockets and timers almost all the
/// time and its work per input is microseconds, so a second worker would only add memory (its
/// stack and malloc arena) and cross-thread wake-ups. Nothing in the agent blocks the thread:
/// DNS lookups go to tokio's blocking pool, which starts threads only while one is needed.
fn agent_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
}

fn run_agent(args: AgentArgs) -> ExitCode {
    let log_format = args.log_format;
    let config = match args.into_config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(log_format);
    let runtime = match agent_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(agent::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Plain stderr, not tracing: the reason must show even with RUST_LOG=off.
            eprintln!("error: {message}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<AgentArgs, clap::Error> {
        let mut argv = vec!["meshd", "agent"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Agent(args) => *args,
            other => panic!("parsed as {other:?}"),
        })
    }

    fn config(args: &[&str]) -> Result<AgentConfig, String> {
        parse(args).map_err(|e| e.to_string())?.into_config()
    }

    const LOCAL: [&str; 2] = ["--mesh-host", "127.0.0.1"];

    #[test]
    fn defaults_follow_memberlist_lan() {
        let config = config(&LOCAL).expect("defaults are valid");
        let rt = &config.runtime;
        assert_eq!(rt.swim, swim::Config::default());
        assert_eq!(rt.bind, "127.0.0.1:39527".parse().expect("addr"));
        assert_eq!(rt.identity.addr, rt.bind);
        assert!(rt.identity.name.starts_with("Mesh_") && rt.identity.name.len() == 9);
        assert!(rt.seeds.is_empty());
        assert_eq!(rt.leave_timeout, Duration::from_secs(2));
        assert_eq!(rt.swim.seed_refresh_interval, Duration::from_secs(30));
        assert_eq!(config.http, "127.0.0.1:39528".parse().expect("addr"));
        assert_eq!(rt.trust, TrustConfig::default(), "no key: in the clear");
        assert!(config.api_tls.is_none());
        assert_eq!(rt.swim.max_members, 10_000);
    }

    #[test]
    fn the_probe_schedule_is_shuffled_unless_aligned_is_asked_for() {
        let with = |extra: &[&str]| config(&[&LOCAL[..], extra].concat());
        let shuffled = with(&[]).expect("default");
        assert_eq!(
            shuffled.runtime.swim.probe_schedule,
            swim::ProbeSchedule::Shuffled
        );
        let aligned = with(&["--probe-schedule", "aligned"]).expect("aligned");
        let swim::ProbeSchedule::Aligned { unix, .. } = aligned.runtime.swim.probe_schedule else {
            panic!("{:?}", aligned.runtime.swim.probe_schedule);
        };
        assert!(
            unix > Duration::from_secs(1_700_000_000),
            "anchored to the wall clock"
        );
        let err = parse(&["--probe-schedule", "random"]).expect_err("unknown schedule");
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        assert!(err.to_string().contains("shuffled, aligned"), "{err}");
    }

    #[test]
    fn every_flag_maps_into_the_config() {
        let config = config(&[
            "--mesh-server-name",
            "node1",
            "--mesh-host",
            "0.0.0.0",
            "--mesh-advertise-host",
            "10.0.0.11",
            "--mesh-port",
            "7000",
            "--mesh-peer-urls",
            "10.0.0.12:7000,seed.local:7000",
            "--mesh-peer-urls",
            "[::1]:7000",
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
            "--region",
            "eu",
            "--zone",
            "eu-1a",
            "--tag",
            "role=gw",
            "--tag",
            "tier=edge",
            "--probe-interval",
            "2s",
            "--probe-timeout",
            "300ms",
            "--indirect-checks",
            "5",
            "--suspicion-mult",
            "5",
            "--suspicion-max-timeout-mult",
            "7",
            "--suspicion-confirmed-mult",
            "1.5",
            "--announce-fanout",
            "9",
            "--gossip-interval",
            "100ms",
            "--gossip-nodes",
            "4",
            "--gossip-to-the-dead",
            "1m",
            "--retransmit-mult",
            "6",
            "--push-pull-interval",
            "1m",
            "--retention",
            "1h",
            "--leave-timeout",
            "1500ms",
            "--seed-refresh-interval",
            "2m",
            "--log-format",
            "json",
            "--max-members",
            "500",
            "--cluster-label",
            "prod-eu",
            "--encrypt-key",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        ])
        .expect("valid");
        let rt = &config.runtime;
        assert_eq!(rt.identity.name, "node1");
        assert_eq!(rt.identity.addr, "10.0.0.11:7000".parse().expect("addr"));
        assert_eq!(rt.bind, "0.0.0.0:7000".parse().expect("addr"));
        let seeds: Vec<String> = rt.seeds.iter().map(ToString::to_string).collect();
        assert_eq!(seeds, ["10.0.0.12:7000", "seed.local:7000", "[::1]:7000"]);
        assert_eq!(config.http, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(rt.identity.meta.region, "eu");
        assert_eq!(rt.identity.meta.zone, "eu-1a");
        assert_eq!(
            rt.identity.meta.tags.get("tier").map(String::as_str),
            Some("edge")
        );
        assert_eq!(rt.swim.probe_interval, Duration::from_secs(2));
        assert_eq!(rt.swim.probe_timeout, Duration::from_millis(300));
        assert_eq!(rt.swim.indirect_checks, 5);
        assert_eq!(rt.swim.suspicion_mult, 5);
        assert_eq!(rt.swim.suspicion_max_timeout_mult, 7);
        assert_eq!(rt.swim.suspicion_confirmed_mult, 1.5);
        assert_eq!(rt.swim.announce_fanout, 9);
        assert_eq!(rt.swim.gossip_interval, Duration::from_millis(100));
        assert_eq!(rt.swim.gossip_nodes, 4);
        assert_eq!(rt.swim.gossip_to_the_dead, Duration::from_secs(60));
        assert_eq!(rt.swim.retransmit_mult, 6);
        assert_eq!(rt.swim.push_pull_interval, Duration::from_secs(60));
        assert_eq!(rt.swim.retention, Duration::from_secs(3600));
        assert_eq!(rt.leave_timeout, Duration::from_millis(1500));
        assert_eq!(rt.swim.seed_refresh_interval, Duration::from_secs(120));
        assert_eq!(rt.swim.max_members, 500);
        assert_eq!(rt.trust.label, "prod-eu");
        let keyring = rt.trust.keyring.as_ref().expect("a keyring");
        assert_eq!(keyring.keys(), [Key::from_bytes([1; seal::KEY_BYTES])]);
    }

    /// A scratch directory for one test, removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("meshd-cli-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("scratch dir");
            Scratch(dir)
        }

        fn file(&self, name: &str, contents: &str) -> String {
            let path = self.0.join(name);
            std::fs::write(&path, contents).expect("scratch file");
            path.display().to_string()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_keyring_comes_from_the_file_when_it_exists_else_from_the_key() {
        let dir = Scratch::new("keyring");
        let one = Key::from_bytes([1; seal::KEY_BYTES]);
        let two = Key::from_bytes([2; seal::KEY_BYTES]);
        let ring = seal::Keyring::new(vec![two.clone(), one.clone()]).expect("keyring");
        let file = dir.file("keyring.json", &seal::file::format(&ring));
        let missing = dir.0.join("new.json").display().to_string();
        let with = |extra: &[&str]| config(&[&LOCAL[..], extra].concat());

        let from_file = with(&["--keyring-file", &file, "--encrypt-key", &one.to_base64()])
            .expect("file and a key it holds");
        assert_eq!(from_file.runtime.trust.keyring, Some(ring.clone()));
        assert_eq!(from_file.runtime.trust.ignored_flag_key, None);
        let other = Key::from_bytes([3; seal::KEY_BYTES]);
        let wins = with(&["--keyring-file", &file, "--encrypt-key", &other.to_base64()])
            .expect("the file wins over a key it does not hold");
        assert_eq!(wins.runtime.trust.keyring, Some(ring));
        assert_eq!(wins.runtime.trust.ignored_flag_key, Some(other.id()));
        let created = with(&[
            "--keyring-file",
            &missing,
            "--encrypt-key",
            &one.to_base64(),
        ])
        .expect("a missing file is created from the key");
        assert_eq!(
            created.runtime.trust.keyring.map(|k| k.keys().to_vec()),
            Some(vec![one])
        );
        let err = with(&["--keyring-file", &missing]).expect_err("nothing to create it from");
        assert!(
            err.contains("does not exist") && err.contains("--encrypt-key"),
            "{err}"
        );
        let broken = dir.file("broken.json", "not json");
        let err = with(&["--keyring-file", &broken]).expect_err("unreadable file");
        assert!(
            err.contains("broken.json") && err.contains("not a JSON list"),
            "{err}"
        );
    }

    #[test]
    fn the_api_token_and_tls_flags_are_checked() {
        let dir = Scratch::new("token");
        let good = dir.file("token", "0123456789abcdef0123\n");
        let short = dir.file("short", "abc\n");
        let with = |extra: &[&str]| config(&[&LOCAL[..], extra].concat());
        let config = with(&["--api-token-file", &good]).expect("token");
        let remote = "10.0.0.1:1".parse().ok();
        assert!(config
            .access
            .check(remote, Some("Bearer 0123456789abcdef0123"))
            .is_ok());
        let err = with(&["--api-token-file", &short]).expect_err("short token");
        assert!(err.contains("at least 16"), "{err}");
        let err = parse(&["--api-tls-cert", "cert.pem"]).expect_err("cert without key");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let both = with(&["--api-tls-cert", "c.pem", "--api-tls-key", "k.pem"]).expect("both");
        assert_eq!(
            both.api_tls,
            Some(ApiTls {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
    }

    #[test]
    fn metadata_beyond_the_limits_is_refused_at_start_naming_the_limit() {
        let long_value = format!("url={}", "x".repeat(300));
        let cases: &[(&[&str], &str)] = &[
            (
                &["--tag", &long_value],
                "--tag: value of tag url is 300 bytes; the limit is 256",
            ),
            (&["--region", "eu west"], "--region: region contains ' '"),
            (
                &["--zone", &"z".repeat(65)],
                "--zone: zone is 65 bytes; the limit is 64",
            ),
            (
                &["--mesh-server-name", "a\u{1b}b"],
                "--mesh-server-name: member name contains",
            ),
            (
                &["--cluster-label", "prod label"],
                "--cluster-label: cluster label contains ' '",
            ),
        ];
        for (args, needle) in cases {
            let err = config(&[&LOCAL[..], args].concat()).expect_err(needle);
            assert!(err.contains(needle), "{err}");
        }
        let err = parse(&["--encrypt-key", "short"]).expect_err("bad key");
        assert!(
            err.to_string().contains("base64") || err.to_string().contains("32 bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_profile_sets_the_timing_and_flags_override_it() {
        let wan = config(&[&LOCAL[..], &["--profile", "wan"]].concat()).expect("wan");
        assert_eq!(wan.runtime.swim, Profile::Wan.swim());
        assert_eq!(
            wan.runtime.exchange_timeout,
            Profile::Wan.exchange_timeout()
        );
        let local = config(&[&LOCAL[..], &["--profile", "local"]].concat()).expect("local");
        assert_eq!(local.runtime.swim, Profile::Local.swim());

        let mixed = config(
            &[
                &LOCAL[..],
                &[
                    "--profile",
                    "wan",
                    "--probe-interval",
                    "4s",
                    "--gossip-nodes",
                    "2",
                ],
            ]
            .concat(),
        )
        .expect("wan with overrides");
        let swim = &mixed.runtime.swim;
        assert_eq!(swim.probe_interval, Duration::from_secs(4));
        assert_eq!(swim.gossip_nodes, 2);
        // Everything not given stays the profile's.
        assert_eq!(
            swim,
            &swim::Config {
                probe_interval: Duration::from_secs(4),
                gossip_nodes: 2,
                ..Profile::Wan.swim()
            }
        );
    }

    #[test]
    fn a_profile_also_comes_from_the_environment() {
        // Only this test reads MESHD_PROFILE, so setting it cannot disturb the others.
        std::env::set_var("MESHD_PROFILE", "local");
        let args = parse(&LOCAL);
        std::env::remove_var("MESHD_PROFILE");
        assert_eq!(args.expect("valid").profile, Profile::Local);
    }

    #[test]
    fn an_unknown_profile_is_refused_with_the_choices() {
        let err = parse(&["--profile", "metro"]).expect_err("unknown profile");
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        let text = err.to_string();
        assert!(
            text.contains("metro") && text.contains("lan, wan, local"),
            "{text}"
        );
    }

    #[test]
    fn an_override_that_clashes_with_the_profile_names_the_profile() {
        // WAN's 3 s probe timeout is not below a 2 s interval.
        let err = config(&[&LOCAL[..], &["--profile", "wan", "--probe-interval", "2s"]].concat())
            .expect_err("timeout above interval");
        assert!(
            err.contains("--probe-timeout (3s, from --profile wan)") && !err.contains('\n'),
            "{err}"
        );
    }

    #[test]
    fn unspecified_bind_needs_an_advertise_host() {
        let err = config(&[]).expect_err("0.0.0.0 without advertise host");
        assert!(err.contains("--mesh-advertise-host"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let err = config(&["--mesh-host", "::"]).expect_err(":: without advertise host");
        assert!(err.contains("not reachable"), "{err}");
        let err = config(&["--mesh-advertise-host", "0.0.0.0"]).expect_err("unspecified advertise");
        assert!(err.contains("--mesh-advertise-host"), "{err}");
        assert!(config(&["--mesh-advertise-host", "10.0.0.1"]).is_ok());
    }

    #[test]
    fn bad_values_are_rejected_by_clap() {
        let bad: &[&[&str]] = &[
            &["--mesh-port", "0"],
            &["--mesh-port", "65536"],
            &["--port", "0"],
            &["--mesh-host", "not-an-ip"],
            &["--mesh-peer-urls", "host-without-port"],
            &["--mesh-peer-urls", "host:0"],
            &["--mesh-peer-urls", "a:1,b:xyz"],
            &["--tag", "novalue"],
            &["--tag", "=v"],
            &["--probe-interval", "fast"],
            &["--probe-interval", "0s"],
            &["--seed-refresh-interval", "often"],
            &["--suspicion-mult", "0"],
            &["--suspicion-confirmed-mult", "0"],
            &["--suspicion-confirmed-mult", "NaN"],
            &["--suspicion-confirmed-mult", "fast"],
            &["--log-format", "xml"],
            &["--unknown-flag"],
        ];
        for args in bad {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert_ne!(err.kind(), ErrorKind::DisplayHelp, "{args:?}");
        }
    }

    #[test]
    fn semantic_errors_are_one_line() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--probe-timeout", "1s", "--probe-interval", "1s"],
                "--probe-timeout",
            ),
            (&["--mesh-server-name", "  "], "must not be empty"),
            (&["--tag", "a=1", "--tag", "a=2"], "more than once"),
            (
                &["--leader-priority", "1", "--tag", "leader-priority=2"],
                "keep one",
            ),
        ];
        for (args, needle) in cases {
            let mut argv = LOCAL.to_vec();
            argv.extend_from_slice(args);
            let err = config(&argv).expect_err(needle);
            assert!(err.contains(needle) && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn leader_priority_becomes_a_tag_and_expect_nodes_the_quorum_size() {
        let mut argv = LOCAL.to_vec();
        argv.extend_from_slice(&["--leader-priority", "-3", "--expect-nodes", "5"]);
        let config = config(&argv).expect("valid");
        let tags = &config.runtime.identity.meta.tags;
        assert_eq!(tags.get("leader-priority").map(String::as_str), Some("-3"));
        assert_eq!(config.runtime.expect_nodes, Some(5));
        for bad in [["--expect-nodes", "0"], ["--leader-priority", "x"]] {
            let mut argv = LOCAL.to_vec();
            argv.extend_from_slice(&bad);
            assert!(parse(&argv).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tags_and_seeds_parse_from_comma_lists() {
        let args = parse(&["--tag", "a=1,b=x=y", "--mesh-peer-urls", "h1:1, h2:2"]).expect("valid");
        assert_eq!(
            args.tags,
            [("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
        assert_eq!(args.mesh_peer_urls.len(), 2);
    }

    #[test]
    fn flags_also_come_from_meshd_env_vars() {
        // Only this test reads MESHD_REGION, so setting it cannot disturb the others.
        std::env::set_var("MESHD_REGION", "from-env");
        let args = parse(&LOCAL);
        std::env::remove_var("MESHD_REGION");
        assert_eq!(args.expect("valid").region, "from-env");
    }

    #[test]
    fn seed_refresh_zero_disables() {
        let config =
            config(&[&LOCAL[..], &["--seed-refresh-interval", "0s"]].concat()).expect("0s");
        assert!(config.runtime.swim.seed_refresh_interval.is_zero());
    }

    #[test]
    fn store_flags_take_sizes_and_durations() {
        let config = config(
            &[
                &LOCAL[..],
                &[
                    "--store-max-bytes",
                    "512KiB",
                    "--store-tombstone-retention",
                    "2h",
                    "--data-dir",
                    "/var/lib/meshd",
                ],
            ]
            .concat(),
        )
        .expect("valid store flags");
        let stores = &config.runtime.stores;
        assert_eq!(stores.limits.max_bytes, 512 * 1024);
        assert_eq!(stores.tombstone_retention_ms, 2 * 3600 * 1000);
        assert_eq!(stores.sync_interval_ms, 10_000, "default");
        assert_eq!(
            config.runtime.data_dir.as_deref(),
            Some(std::path::Path::new("/var/lib/meshd"))
        );
        let cases = [
            ("1048576", Ok(1 << 20)),
            ("64MiB", Ok(64 << 20)),
            ("2G", Ok(2 << 30)),
            (
                "0",
                Err("\"0\" must be above zero and fit this machine".to_string()),
            ),
            (
                "12PB",
                Err("unknown size unit \"PB\"; use B, KiB, MiB or GiB".to_string()),
            ),
            (
                "lots",
                Err("\"lots\" is not a size (examples: 1048576, 512KiB, 64MiB, 1GiB)".to_string()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_bytes(text), want, "{text}");
        }
    }

    #[test]
    fn rust_log_sets_levels_per_target_and_defaults_to_info() {
        use tracing::Level;
        let default = log_filter(None);
        assert!(default.would_enable("meshd::runtime", &Level::INFO));
        assert!(!default.would_enable("meshd::runtime", &Level::DEBUG));
        // Unparsable directives fall back to the default rather than silencing the daemon.
        let bad = log_filter(Some("meshd=loud"));
        assert!(bad.would_enable("quinn", &Level::INFO));
        let mixed = log_filter(Some("meshd=debug,warn"));
        assert!(mixed.would_enable("meshd::runtime::driver", &Level::DEBUG));
        assert!(!mixed.would_enable("quinn_proto", &Level::INFO));
        assert!(mixed.would_enable("quinn_proto", &Level::WARN));
        let off = log_filter(Some("off"));
        assert!(!off.would_enable("meshd", &Level::ERROR));
    }

    #[test]
    fn default_names_are_mesh_plus_four_alphanumerics() {
        let name = default_name();
        assert!(name.starts_with("Mesh_"));
        assert_eq!(name.len(), 9);
        assert!(name[5..].chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
