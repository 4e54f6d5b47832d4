//! The client subcommands (`meshd members`, `info`, `leave`) against real agents on loopback.
//! Subnets 50–59 are this file's (see tests/common/mod.rs).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Runs the built `meshd` with `args`: (exit code, stdout, stderr).
fn meshd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(args)
        .env_remove("MESHD_HTTP_ADDR")
        .env_remove("RUST_LOG")
        .output()
        .expect("meshd runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn http_addr(node: &Node) -> String {
    format!("{}:{HTTP_PORT}", node.ip)
}

/// `meshd members` rows (header skipped), each split on whitespace.
fn member_rows(addr: &str, extra: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec!["members", "--http-addr", addr];
    args.extend_from_slice(extra);
    let (code, out, err) = meshd(&args);
    assert_eq!(code, 0, "members {extra:?} failed: {err}");
    let mut lines = out.lines();
    let header = lines.next().expect("a header line");
    assert!(header.starts_with("NAME"), "header: {header}");
    lines
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn members_info_and_leave_against_a_live_cluster() {
    let mut nodes = start_cluster("cli", 50, 3, FAST);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(Duration::from_secs(20), || all_see_alive(&all, 3)).expect("3 nodes converge");
    let addr = http_addr(&nodes[0]);

    // The table: 3 rows, every one ALIVE at the right address.
    let rows = member_rows(&addr, &[]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (row, node) in rows.iter().zip(&nodes) {
        assert_eq!(row[0], node.name);
        assert_eq!(row[1], node.mesh_addr().to_string());
        assert_eq!(row[2], "ALIVE");
    }

    // --json: the nodes array.
    let (code, out, _) = meshd(&["members", "--http-addr", &addr, "--json"]);
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(json.as_array().map(Vec::len), Some(3), "{json}");
    assert!(json
        .as_array()
        .into_iter()
        .flatten()
        .all(|n| n["state"] == "ALIVE"));

    // --status down: nobody, until one node is killed.
    assert!(member_rows(&addr, &["--status", "down"]).is_empty());
    nodes[2].kill9();
    let listed = wait_until(Duration::from_secs(30), || {
        member_rows(&addr, &["--status", "down"])
            .iter()
            .any(|row| row[0] == "cli3" && row[2] == "DOWN")
    });
    assert!(listed.is_some(), "cli3 listed by --status down within 30 s");
    assert_eq!(
        member_rows(&addr, &["--status", "alive,suspected"]).len(),
        2
    );

    // info: cluster size and this node's addresses.
    let (code, out, err) = meshd(&["info", "--http-addr", &addr]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("node:         cli1\n"), "{out}");
    assert!(out.contains("cluster size: 2 "), "{out}");
    assert!(out.contains("1 down"), "{out}");
    assert!(
        out.contains(&format!("mesh address: {}", nodes[0].mesh_addr())),
        "{out}"
    );

    // leave: the agent leaves and exits 0; the other one sees it LEAVING.
    let addr2 = http_addr(&nodes[1]);
    let (code, out, err) = meshd(&["leave", "--http-addr", &addr2, "--wait"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("leave initiated for cli2\n"), "{out}");
    let status = nodes[1]
        .wait_exit(Duration::from_secs(5))
        .expect("cli2 exits after leave");
    assert!(status.success(), "leave exits 0, got {status}");
    wait_state_everywhere(&[&nodes[0]], "cli2", "LEAVING", Duration::from_secs(5));
}

#[test]
fn no_agent_is_one_clear_line_and_exit_1() {
    let addr = format!("{}:{HTTP_PORT}", node_ip(51, 1));
    for command in ["members", "info", "leave"] {
        let (code, out, err) = meshd(&[command, "--http-addr", &addr]);
        assert_eq!(code, 1, "{command}: {err}");
        assert!(out.is_empty(), "{command} printed {out}");
        assert_eq!(
            err,
            format!(
                "error: no meshd agent answers at {addr} (is it running? set --http-addr or MESHD_HTTP_ADDR)\n"
            ),
            "{command}"
        );
    }
    // The environment variable is read too.
    let out = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .arg("members")
        .env("MESHD_HTTP_ADDR", &addr)
        .output()
        .expect("meshd runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
}

#[test]
fn bad_client_flags_are_usage_errors() {
    for args in [
        &["members", "--status", "sleeping"][..],
        &["members", "--http-addr", "no-port"],
        &["info", "--http-addr", "host:0"],
    ] {
        let (code, _, err) = meshd(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with("error:"), "{args:?}: {err}");
    }
}
