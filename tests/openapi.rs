//! The OpenAPI description (`src/api/openapi.json`, served at `/ha/openapi.json`) against a
//! real `meshd agent` on 127.0.70.x (without a keyring, so the key commands are refused, 409):
//! schemathesis generates requests for every documented operation but `POST /ha/shutdown` (it
//! would stop the agent mid-run) and the store event stream (it never ends; tests/stores.rs
//! reads it) and checks each answer
//! (no 5xx, documented status codes, content types and bodies conforming to the schemas, 405
//! with `Allow` for other methods). The shutdown operation gets its own plain test here.
//!
//! Needs `schemathesis` on PATH: `bash .ci/install-test-deps` installs the pinned version.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{node_ip, tools, wait_until, Node, HTTP_PORT};
use serde_json::Value;

/// 127.0.70.x: no other test uses this subnet.
const SUBNET: u8 = 70;
/// Examples per operation: the operations take no parameters, so a few dozen cover them.
const MAX_EXAMPLES: &str = "50";
/// Fixed so that a failure reproduces; schemathesis prints it with every run.
const SEED: &str = "20261202";
/// Longest the schemathesis subprocess may run (it takes about 2 s here).
const SCHEMATHESIS_LIMIT: Duration = Duration::from_secs(120);

fn spec() -> Value {
    serde_json::from_str(meshd::api::OPENAPI_JSON).expect("src/api/openapi.json is valid JSON")
}

/// Fails the test, saying how to install schemathesis, when it is not on PATH.
fn require_schemathesis() {
    assert!(
        tools::installed("schemathesis"),
        "schemathesis is not installed (or not on PATH): run `bash .ci/install-test-deps`, \
         which pip-installs the pinned version, as the README's test command does"
    );
}

fn start_agent(name: &str, index: u8) -> Node {
    let node = Node::start(
        name,
        node_ip(SUBNET, index),
        &[],
        &[
            "--region",
            "eu-west",
            "--zone",
            "eu-west-1a",
            "--tag",
            "role=gateway",
        ],
    );
    wait_until(Duration::from_secs(10), || {
        node.get("/ha/health").is_some_and(|(code, _)| code == 200)
    })
    .unwrap_or_else(|| panic!("{name} never became healthy:\n{}", node.log_tail(20)));
    node
}

fn scratch_dir(name: &str) -> PathBuf {
    // schemathesis and hypothesis keep state in the working directory: keep it out of the repo.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("scratch dir can be created");
    dir
}

#[test]
fn live_agent_conforms_to_its_openapi_description() {
    require_schemathesis();
    let node = start_agent("oa1", 1);
    let base = format!("http://{}:{HTTP_PORT}", node.ip);

    // The agent serves exactly the file in the repo.
    let (code, served) = node.get_text("/ha/openapi.json").expect("spec is served");
    assert_eq!(code, 200);
    assert_eq!(served, meshd::api::OPENAPI_JSON);

    let spec = spec();
    let operations: usize = spec["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().expect("path item").len())
        .sum();
    // The file, not the served URL (identical, as checked above): from a URL schemathesis
    // leaves out the operation that serves the spec.
    let mut cmd = Command::new("schemathesis");
    cmd.arg("run")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/openapi.json"))
        .args(["--url", &base])
        .args(["--checks", "all"])
        .args(["--exclude-path", "/ha/shutdown"])
        // An event stream never ends: a request to it can only time out.
        .args(["--exclude-path", "/ha/stores/{store}/watch"])
        .args(["--exclude-path", "/ha/events"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", SEED])
        .args(["--workers", "1"])
        .args(["--request-timeout", "5"])
        .arg("--no-color");
    let dir = scratch_dir("schemathesis-oa1");
    // schemathesis and hypothesis keep state in the working directory.
    cmd.current_dir(&dir);
    let outcome = tools::run_bounded(cmd, &dir, SCHEMATHESIS_LIMIT);
    let output = format!("{}{}", outcome.stderr, outcome.stdout);
    assert!(outcome.ok, "schemathesis found problems:\n{output}");
    // A filter that selected nothing would also "pass": every operation but the three excluded
    // (shutdown, tested below, the store event stream, tested in tests/stores.rs, and the
    // membership event stream, tested in tests/cockpit.rs) must be.
    let tested = operations - 3;
    assert!(
        output.contains(&format!("Selected: {tested}/{operations}"))
            && output.contains(&format!("Tested: {tested}")),
        "schemathesis did not test the {tested} operations expected:\n{output}"
    );
    // Nothing schemathesis sent stopped or broke the agent.
    let (code, _) = node.get("/ha/health").expect("agent still answers");
    assert_eq!(
        code,
        200,
        "agent unhealthy after the run:\n{}",
        node.log_tail(20)
    );
}

#[test]
fn shutdown_answers_as_documented_and_the_agent_leaves() {
    let spec = spec();
    let responses = &spec["paths"]["/ha/shutdown"]["post"]["responses"];
    let mut documented: Vec<&str> = responses
        .as_object()
        .expect("POST /ha/shutdown is documented")
        .keys()
        .map(String::as_str)
        .collect();
    documented.sort_unstable();
    assert_eq!(documented, ["202", "401", "403", "415", "503"]);
    let accepted = &spec["components"]["schemas"]["ShutdownAccepted"];
    assert_eq!(
        responses["202"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ShutdownAccepted"
    );

    let mut node = start_agent("oa2", 2);
    let (code, body) = node.post("/ha/shutdown").expect("shutdown answers JSON");
    assert_eq!(code, 202, "{body}");
    // The body is exactly what the schema allows: its one required field, with the const value.
    let fields: Vec<&String> = body.as_object().expect("object body").keys().collect();
    assert_eq!(fields, ["status"], "{body}");
    assert_eq!(body["status"], accepted["properties"]["status"]["const"]);
    let status = node
        .wait_exit(Duration::from_secs(5))
        .expect("agent exits after POST /ha/shutdown");
    assert!(status.success(), "agent exited with {status}");
}
