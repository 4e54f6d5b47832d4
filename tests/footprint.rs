//! What keeps each agent small, checked on real processes: one thread (a current-thread
//! runtime) and no glibc libm mapped (the math functions come from the binary itself).

mod common;

use std::time::Duration;

use common::*;

/// A line of `/proc/<pid>/status`, e.g. `Threads`.
fn proc_status(pid: i32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
}

/// Two agents on the local profile join over QUIC, gossip and serve /metrics (whose exporter
/// calls `exp` and `ln`); afterwards each runs on one thread and maps no libm.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn an_agent_runs_on_one_thread_without_libm() {
    let nodes = start_cluster("lean", 60, 2, &["--profile", "local"]);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 2)).expect("2 nodes converge");
    for node in &nodes {
        let (code, _) = node.get_text("/metrics").expect("/metrics answers");
        assert_eq!(code, 200);
        let pid = node.pid();
        assert_eq!(
            proc_status(pid, "Threads").as_deref(),
            Some("1"),
            "{} runs one thread",
            node.name
        );
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps readable");
        let libm: Vec<&str> = maps.lines().filter(|l| l.contains("/libm.so")).collect();
        assert!(libm.is_empty(), "{} maps libm: {libm:?}", node.name);
    }
}
