//! The cluster page `/ui` in a real browser, against 3 real agents on 127.0.21.x:
//! `tests/ui/browser.mjs` (playwright-core driving Debian's chromium) watches a SIGKILLed
//! member turn DOWN on the page without a reload, then measures the first draw of 1,000
//! synthetic members; the figure is printed as one JSON line (`--no-capture` shows it).
//!
//! Needs chromium, node and playwright-core: `bash .ci/install-test-deps` installs them (the
//! last into /opt/meshd-test-deps, where the script looks for it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{all_see_alive, node_ip, start_cluster, tools, wait_until, Node, FAST, HTTP_PORT};
use serde_json::Value;

/// 127.0.21.x: no other test uses this subnet.
const SUBNET: u8 = 21;
/// Longest wait for the cluster to form.
const WAIT: Duration = Duration::from_secs(30);
/// Longest the browser script may run (it takes about 10 s here); killed by PID past it.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);
/// Where `.ci/install-test-deps` puts playwright-core (the script's default too).
const TEST_DEPS_DIR: &str = "/opt/meshd-test-deps";

/// The programs the script needs.
struct Tools {
    chromium: PathBuf,
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Fails the test, saying how to install them, when chromium, node or playwright-core is missing.
fn require_tools() -> Tools {
    let install = "run `bash .ci/install-test-deps`, which installs Debian's chromium, node and \
                   the pinned playwright-core, as the README's test command does";
    let chromium = on_path("chromium")
        .unwrap_or_else(|| panic!("chromium is not installed (or not on PATH): {install}"));
    assert!(
        tools::installed("node"),
        "node is not installed (or not on PATH): {install}"
    );
    let playwright = Path::new(TEST_DEPS_DIR).join("node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "playwright-core is not installed in {TEST_DEPS_DIR}: {install}"
    );
    Tools { chromium }
}

/// `<CARGO_TARGET_DIR or the repo's target>/ui-screenshot.png`.
fn screenshot_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A relative CARGO_TARGET_DIR is relative to the workspace, as cargo reads it.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| manifest.join(dir))
        .unwrap_or_else(|| manifest.join("target"));
    std::fs::create_dir_all(&target).expect("target dir can be created");
    target.join("ui-screenshot.png")
}

#[test]
fn the_page_follows_a_kill_live_and_draws_1000_members() {
    let tools = require_tools();
    let nodes = start_cluster("ui", SUBNET, 3, FAST);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until(WAIT, || all_see_alive(&all, 3)).unwrap_or_else(|| {
        panic!(
            "the cluster did not form within {WAIT:?}:\n{}",
            nodes[0].log_tail(20)
        )
    });

    // The page and an unknown asset, as the agent serves them.
    let (code, page) = nodes[0].get_text("/ui").expect("/ui answers");
    assert_eq!(code, 200);
    assert!(page.contains("<script type=\"module\" src=\"/ui/app.js\">"));
    let (code, body) = nodes[0].get("/ui/nope.js").expect("/ui/nope.js answers");
    assert_eq!(code, 404);
    assert!(body["error"].is_string(), "{body}");

    let url = format!("http://{}:{HTTP_PORT}/ui", node_ip(SUBNET, 1));
    let screenshot = screenshot_path();
    let _ = std::fs::remove_file(&screenshot);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/browser.mjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .arg(&url)
        .arg(nodes[2].pid().to_string())
        .arg(&screenshot)
        .env("CHROMIUM", &tools.chromium)
        .env("MESHD_TEST_DEPS", TEST_DEPS_DIR);
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-browser");
    let outcome = tools::run_bounded(cmd, &scratch, SCRIPT_LIMIT);
    assert!(
        outcome.ok,
        "the browser script failed:\n{}\n--- stdout ---\n{}",
        outcome.stderr, outcome.stdout
    );

    let line = outcome
        .stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line on stdout:\n{}", outcome.stdout));
    let figures: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("the script's line is not JSON ({e}): {line}"));
    let render_ms = figures["render_ms_1000"]
        .as_f64()
        .unwrap_or_else(|| panic!("no render_ms_1000 number in {line}"));
    assert!(render_ms > 0.0, "{line}");
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    println!("{line}");
}
