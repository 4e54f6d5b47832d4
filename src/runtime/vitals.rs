//! This node's vitals, published every `--vitals-interval` into the replicated store
//! [`STORE`] under its own name, so every node (and the cluster page) sees every member's
//! memory, CPU, descriptors, uptime, version, health score and what its gateway reported
//! through `PUT /ha/self/load`.
//!
//! A task beside the driver samples the process from `/proc` (Linux; zeros elsewhere) and
//! writes through the driver's command channel like any API write. Every write is gossiped to
//! every node (~700 B per node at N = 100, against ~40 B/s of membership traffic), so vitals
//! are sampled every interval but written only when they changed materially ([`material`]:
//! memory by the larger of 4 MiB and a tenth, CPU by 5 points, anything else at all): an idle
//! cluster writes
//! none, and vitals never go stale, since what was written is still true within those steps.
//! The first write comes at a random point of the first interval, so a cluster started at once
//! does not write all at once. The leader also deletes the vitals of
//! names that are no longer members, so the store does not keep every node that ever lived.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::driver::Command;
use super::replication::{Replication, StoreAnswer, StoreQuery};
use super::Snapshot;
use crate::store::Op;

/// The store every node's vitals live in, keyed by member name.
pub const STORE: &str = "nodes";
/// Most fields of a gateway load object (`PUT /ha/self/load`).
pub const MAX_LOAD_FIELDS: usize = 16;
/// Longest field name of a load object, in characters.
pub const MAX_LOAD_NAME_CHARS: usize = 64;
/// Longest string value of a load object, in characters.
pub const MAX_LOAD_STRING_CHARS: usize = 128;
/// The first vitals go out at a random point of the first interval, but not before this.
const FIRST_AFTER: Duration = Duration::from_secs(1);
/// A change of resident memory worth a write: this many bytes, or [`RSS_SHARE`] of it.
const RSS_STEP: u64 = 4 << 20;
/// A change of resident memory worth a write, as a share of the last value written.
const RSS_SHARE: f64 = 0.1;
/// A change of CPU share worth a write.
const CPU_STEP: f64 = 0.05;
/// Resident memory is published to the MiB: finer moves every sample and every write costs
/// the whole cluster.
const RSS_GRAIN: u64 = 1 << 20;
/// Linux reports process CPU times in `/proc/self/stat` in units of 1/`USER_HZ` s, and
/// `USER_HZ` is 100 on every architecture Linux runs on.
const USER_HZ: f64 = 100.0;

/// What the process looks like at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessSample {
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// CPU time used so far (user + system), seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
}

/// Samples this process from `/proc/self` (all zero where that does not exist).
pub fn sample() -> ProcessSample {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    ProcessSample {
        rss_bytes: rss_bytes(&read("/proc/self/status")).unwrap_or(0),
        cpu_seconds: cpu_seconds(&read("/proc/self/stat")).unwrap_or(0.0),
        open_fds,
    }
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
fn rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// utime + stime of a `/proc/<pid>/stat` text, in seconds. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its closing parenthesis.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Share of one CPU used between two samples `elapsed` apart.
pub fn cpu_share(before: &ProcessSample, after: &ProcessSample, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    ((after.cpu_seconds - before.cpu_seconds) / secs).max(0.0)
}

/// The vitals document one node writes; readers add `uptime_s` from `started_at_ms`.
pub fn document(
    sample: &ProcessSample,
    cpu_share: f64,
    started_at_ms: u64,
    health_score: u32,
    load: &Value,
) -> Value {
    let rss = (sample.rss_bytes + RSS_GRAIN / 2) / RSS_GRAIN * RSS_GRAIN;
    json!({
        "rss_bytes": rss,
        "cpu_share": (cpu_share * 100.0).round() / 100.0,
        "open_fds": sample.open_fds,
        "started_at_ms": started_at_ms,
        "version": env!("CARGO_PKG_VERSION"),
        "health_score": health_score,
        "load": load,
    })
}

/// True when `now` differs from `last` enough to tell everyone: memory by the larger of
/// [`RSS_STEP`] and [`RSS_SHARE`], CPU by [`CPU_STEP`], any other field at all.
pub fn material(last: &Value, now: &Value) -> bool {
    let number = |doc: &Value, key: &str| doc.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    let (rss_then, rss_now) = (number(last, "rss_bytes"), number(now, "rss_bytes"));
    let rss_moved = (rss_now - rss_then).abs() >= (RSS_STEP as f64).max(rss_then * RSS_SHARE);
    let cpu_moved = (number(now, "cpu_share") - number(last, "cpu_share")).abs() >= CPU_STEP;
    let others_differ = match (last.as_object(), now.as_object()) {
        (Some(a), Some(b)) => {
            let skip = |k: &String| k != "rss_bytes" && k != "cpu_share";
            let a: Vec<_> = a.iter().filter(|(k, _)| skip(k)).collect();
            let b: Vec<_> = b.iter().filter(|(k, _)| skip(k)).collect();
            a != b
        }
        _ => last != now,
    };
    rss_moved || cpu_moved || others_differ
}

/// What was last written, to write only material changes.
#[derive(Debug, Default)]
pub struct Cadence {
    last: Option<Value>,
}

impl Cadence {
    /// True when `doc` should be written: the first, or a [`material`] change.
    pub fn due(&self, doc: &Value) -> bool {
        self.last.as_ref().is_none_or(|last| material(last, doc))
    }

    /// Notes that `doc` was written.
    pub fn written(&mut self, doc: Value) {
        self.last = Some(doc);
    }
}

/// Adds `uptime_s` to a stored vitals document, from its `started_at_ms` and the reader's
/// wall clock `wall_now_ms`.
pub fn with_uptime(mut doc: Value, wall_now_ms: u64) -> Value {
    if let Some(started) = doc.get("started_at_ms").and_then(Value::as_u64) {
        let uptime = wall_now_ms.saturating_sub(started) / 1000;
        if let Value::Object(fields) = &mut doc {
            fields.insert("uptime_s".into(), uptime.into());
        }
    }
    doc
}

/// Checks a gateway load object: a flat JSON object of at most [`MAX_LOAD_FIELDS`] fields,
/// each named by 1 to [`MAX_LOAD_NAME_CHARS`] characters and holding a number, a boolean,
/// null or a string of at most [`MAX_LOAD_STRING_CHARS`] characters (so at most ~19 KB of
/// JSON, escapes included, rides in every vitals write).
pub fn check_load(load: &Value) -> Result<(), LoadError> {
    let Some(fields) = load.as_object() else {
        return Err(LoadError::NotAnObject);
    };
    if fields.len() > MAX_LOAD_FIELDS {
        return Err(LoadError::TooManyFields(fields.len()));
    }
    for (name, value) in fields {
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_LOAD_NAME_CHARS {
            return Err(LoadError::BadName(chars));
        }
        match value {
            Value::Object(_) | Value::Array(_) => return Err(LoadError::Nested(name.clone())),
            Value::String(s) if s.chars().count() > MAX_LOAD_STRING_CHARS => {
                return Err(LoadError::LongString(name.clone()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Why a gateway load object was refused; the message names the bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Not a JSON object.
    NotAnObject,
    /// This many fields, over [`MAX_LOAD_FIELDS`].
    TooManyFields(usize),
    /// A field name of this many characters (0 or over [`MAX_LOAD_NAME_CHARS`]).
    BadName(usize),
    /// This field holds an object or an array.
    Nested(String),
    /// This field holds a string over [`MAX_LOAD_STRING_CHARS`].
    LongString(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::swim::limits::Escaped;
        match self {
            LoadError::NotAnObject => write!(f, "load must be a JSON object"),
            LoadError::TooManyFields(n) => {
                write!(f, "load has {n} fields; the limit is {MAX_LOAD_FIELDS}")
            }
            LoadError::BadName(n) => write!(
                f,
                "a load field name is {n} characters; it must be 1 to {MAX_LOAD_NAME_CHARS}"
            ),
            LoadError::Nested(name) => write!(
                f,
                "load field {} holds an object or array; only numbers, booleans, null and strings",
                Escaped(name)
            ),
            LoadError::LongString(name) => write!(
                f,
                "load field {} is a string over {MAX_LOAD_STRING_CHARS} characters",
                Escaped(name)
            ),
        }
    }
}

/// Every member's vitals as the snapshot carries them: read again from the store, at most once
/// a second, after a change of the store `nodes`, so the API answers from the snapshot without
/// asking the driver.
#[derive(Debug, Default)]
pub struct VitalsBook {
    dirty: bool,
    copied_at: Option<Instant>,
    published: Arc<HashMap<String, Value>>,
}

impl VitalsBook {
    /// The store `nodes` changed (or changes were missed).
    pub fn changed(&mut self) {
        self.dirty = true;
    }

    /// The vitals by name, read again from `replication` if they changed and the last copy is a
    /// second old.
    pub fn view(&mut self, now: Instant, replication: &Replication) -> Arc<HashMap<String, Value>> {
        let fresh = self
            .copied_at
            .is_some_and(|at| now.saturating_duration_since(at) < super::heartbeats::COPY_EVERY);
        if self.dirty && !fresh {
            self.dirty = false;
            self.copied_at = Some(now);
            let answer = replication.read(StoreQuery::Entries(STORE.to_string()));
            let docs = match answer {
                StoreAnswer::Entries {
                    entries: Some((_, entries)),
                    ..
                } => entries
                    .into_iter()
                    .filter_map(|e| Some((e.key, parse(&e.value)?)))
                    .collect(),
                _ => HashMap::new(),
            };
            self.published = Arc::new(docs);
        }
        self.published.clone()
    }
}

/// A vitals document from its stored value (`None` for anything but JSON).
fn parse(value: &crate::store::Value) -> Option<Value> {
    match value {
        crate::store::Value::Json(text) => serde_json::from_slice(text).ok(),
        _ => None,
    }
}

/// Publishes this node's vitals every `interval` and whenever `load` changes, until the
/// driver stops.
pub async fn run(
    name: String,
    interval: Duration,
    commands: mpsc::Sender<Command>,
    mut snapshots: watch::Receiver<Snapshot>,
    mut load: watch::Receiver<Value>,
) {
    let started_at_ms = super::replication::wall_ms();
    let mut previous = (sample(), Instant::now());
    let mut cadence = Cadence::default();
    let mut warned = false;
    // The first vitals soon after start, so a new node does not show blank for an interval.
    let first = interval.mul_f64((super::entropy::random_u64() % 1000) as f64 / 1000.0);
    let mut due = tokio::time::Instant::now() + first.max(FIRST_AFTER.min(interval));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            changed = load.changed() => if changed.is_err() { return },
            // Only to notice the driver stopping: snapshots change ten times a second.
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        due = tokio::time::Instant::now() + interval;
        let now = Instant::now();
        let current = sample();
        let share = cpu_share(&previous.0, &current, now - previous.1);
        previous = (current, now);
        // The member names are copied only at the leader, the one node that needs them.
        let (health, members): (u32, Option<HashSet<String>>) = {
            let s = snapshots.borrow();
            let leads = s.leader.leader.as_deref() == Some(&name);
            let names = || s.members.iter().map(|m| m.name.clone()).collect();
            (s.health_score, leads.then(names))
        };
        let doc = document(
            &current,
            share,
            started_at_ms,
            health,
            &load.borrow().clone(),
        );
        if cadence.due(&doc) {
            let op = Op::Put(doc.to_string().into_bytes());
            let outcome = write(&commands, name.clone(), op).await;
            if matches!(outcome, Some(Ok(()))) {
                cadence.written(doc);
            }
            if !report(outcome, &mut warned) {
                return;
            }
        }
        if let Some(members) = members {
            forget_departed(&commands, &members).await;
        }
    }
}

/// Logs a failed vitals write once until one succeeds again; false once the driver is gone.
fn report(outcome: Option<Result<(), String>>, warned: &mut bool) -> bool {
    match outcome {
        Some(Ok(())) => *warned = false,
        Some(Err(reason)) if !*warned => {
            tracing::warn!(%reason, "could not publish this node's vitals");
            *warned = true;
        }
        Some(Err(_)) => {}
        None => return false,
    }
    true
}

/// Writes `op` to this node's key; `None` once the driver is gone.
async fn write(
    commands: &mpsc::Sender<Command>,
    key: String,
    op: Op,
) -> Option<Result<(), String>> {
    let (reply, answer) = oneshot::channel();
    let command = Command::StoreWrite {
        store: STORE.to_string(),
        key,
        op,
        reply,
    };
    commands.send(command).await.ok()?;
    let outcome = answer.await.ok()?;
    Some(outcome.map(|_| ()).map_err(|e| format!("{e:?}")))
}

/// Deletes the vitals of names that are not members any more (left and reaped).
async fn forget_departed(commands: &mpsc::Sender<Command>, members: &HashSet<String>) {
    let (reply, answer) = oneshot::channel();
    let query = StoreQuery::Entries(STORE.to_string());
    if commands
        .send(Command::StoreRead { query, reply })
        .await
        .is_err()
    {
        return;
    }
    let Ok(StoreAnswer::Entries {
        entries: Some((_, entries)),
        ..
    }) = answer.await
    else {
        return;
    };
    for entry in entries.into_iter().filter(|e| !members.contains(&e.key)) {
        tracing::debug!(member = %entry.key, "forgetting the vitals of a departed member");
        if write(commands, entry.key, Op::Delete).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_texts_parse_and_junk_gives_none() {
        let status = "Name:\tmeshd\nVmPeak:\t  9000 kB\nVmRSS:\t    6512 kB\nThreads:\t2\n";
        assert_eq!(rss_bytes(status), Some(6512 * 1024));
        assert_eq!(rss_bytes("VmRSS: lots"), None);
        // A command name with spaces and parentheses; utime 250, stime 50 ticks.
        let stat = "42 (mesh d) (x)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 2 0 5";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("42 (meshd"), None);
        assert_eq!(cpu_seconds(""), None);
    }

    #[test]
    fn this_process_samples_itself() {
        let first = sample();
        assert!(first.rss_bytes > 0 && first.open_fds > 0, "{first:?}");
        let busy = Instant::now();
        let mut x = 0u64;
        while busy.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(sample().cpu_seconds >= first.cpu_seconds, "{x}");
    }

    #[test]
    fn vitals_are_written_first_and_then_only_on_a_material_change() {
        let mut cadence = Cadence::default();
        let mib = 1u64 << 20;
        let doc = json!({"rss_bytes": 20 * mib, "cpu_share": 0.01, "health_score": 0});
        assert!(cadence.due(&doc), "the first");
        cadence.written(doc.clone());
        assert!(!cadence.due(&doc), "unchanged");
        let small = json!({"rss_bytes": 21 * mib, "cpu_share": 0.05, "health_score": 0});
        assert!(!cadence.due(&small), "small moves wait");
        let more_rss = json!({"rss_bytes": 24 * mib, "cpu_share": 0.01, "health_score": 0});
        assert!(cadence.due(&more_rss), "4 MiB more");
        let busy = json!({"rss_bytes": 20 * mib, "cpu_share": 0.07, "health_score": 0});
        assert!(cadence.due(&busy), "5 points of CPU");
        let sick = json!({"rss_bytes": 20 * mib, "cpu_share": 0.01, "health_score": 1});
        assert!(cadence.due(&sick), "any other field");
    }

    #[test]
    fn cpu_share_is_cpu_time_over_wall_time() {
        let at = |cpu| ProcessSample {
            cpu_seconds: cpu,
            ..ProcessSample::default()
        };
        assert_eq!(cpu_share(&at(1.0), &at(1.5), Duration::from_secs(10)), 0.05);
        assert_eq!(cpu_share(&at(1.0), &at(0.5), Duration::from_secs(10)), 0.0);
        assert_eq!(cpu_share(&at(1.0), &at(2.0), Duration::ZERO), 0.0);
    }

    #[test]
    fn load_must_be_a_small_object() {
        let ok = json!({"in_flight": 3, "queue": 0.5, "mode": "drain", "up": true, "x": null});
        assert_eq!(check_load(&ok), Ok(()));
        assert_eq!(check_load(&json!([1])), Err(LoadError::NotAnObject));
        let many: serde_json::Map<String, Value> = (0..=MAX_LOAD_FIELDS)
            .map(|i| (format!("f{i}"), json!(i)))
            .collect();
        let many = Value::Object(many);
        assert_eq!(check_load(&many), Err(LoadError::TooManyFields(17)));
        assert_eq!(check_load(&json!({"": 1})), Err(LoadError::BadName(0)));
        let nested = json!({"a": {"b": 1}});
        assert_eq!(check_load(&nested), Err(LoadError::Nested("a".into())));
        let long = json!({ "s": "é".repeat(MAX_LOAD_STRING_CHARS + 1) });
        assert_eq!(check_load(&long), Err(LoadError::LongString("s".into())));
        let fits = json!({ "s": "é".repeat(MAX_LOAD_STRING_CHARS) });
        assert_eq!(check_load(&fits), Ok(()), "characters, not bytes");
        let sample = ProcessSample {
            rss_bytes: 5 * RSS_GRAIN + RSS_GRAIN / 3,
            ..ProcessSample::default()
        };
        let doc = document(&sample, 0.01734, 1_000, 2, &json!({"q": 1}));
        assert_eq!(doc["cpu_share"], 0.02);
        assert_eq!(doc["rss_bytes"], 5 * RSS_GRAIN);
        assert_eq!(with_uptime(doc.clone(), 62_500)["uptime_s"], 61);
        assert_eq!(doc["load"]["q"], 1);
        assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    }
}
