//! The README's quick start works as written: the first ```sh block under the heading that
//! starts with "## Quick start" runs, every command of it, as one `bash -euo pipefail` script.
//!
//! The block stays a plain copy-pasteable block; only the test's copy of it gets more lines:
//! waits where the block says something happens later (all nodes ALIVE before the first command
//! after the agents start; after `kill -9 %N` that node DOWN at every other running node; after
//! `kill %N` that node LEAVING at every other running node, then its exit code 0, read by the
//! `$!` PID recorded after each background start), each bounded by [`WAIT_SECS`]. The script runs in a scratch directory whose `./target/debug/meshd` is this
//! test's binary, with a `cargo` on PATH that accepts `cargo build` (the binary is built), in a
//! process group of its own: its EXIT trap kills the jobs still running, and the test kills the
//! whole group by its id afterwards, whatever happened. The block uses 127.0.0.11-13 with the
//! default ports; no other test uses 127.0.0.x.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::wait_until;

/// Longest any change the block describes may take to show, in the script's waits.
const WAIT_SECS: u64 = 30;
/// Longest the whole script may run.
const WHOLE_BLOCK: Duration = Duration::from_secs(180);
/// The API port of an agent started without `--port`.
const DEFAULT_HTTP_PORT: &str = "39528";

/// The commands of the first ```sh block under the "## Quick start" heading, backslash
/// continuations joined, blank lines dropped.
fn quick_start_block(readme: &str) -> Vec<String> {
    let mut lines = readme.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with("## Quick start"))
        .expect("README.md has a heading that starts with \"## Quick start\"");
    for line in lines.by_ref() {
        assert!(
            !line.starts_with("## "),
            "no ```sh block under the quick-start heading before {line:?}"
        );
        if line.trim_end() == "```sh" {
            break;
        }
    }
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in lines.by_ref() {
        if line.trim_end() == "```" {
            assert!(pending.is_empty(), "the block ends in a continuation");
            return commands;
        }
        // A continued line's indentation is layout, not part of the command.
        let line = if pending.is_empty() {
            line.trim_end()
        } else {
            line.trim()
        };
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start.trim_end());
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let command = std::mem::take(&mut pending);
        if !command.trim().is_empty() {
            commands.push(command);
        }
    }
    panic!("the quick-start block is not closed");
}

/// A command without its trailing `# comment`, split into words (for reading flags only: the
/// script runs the command as written).
fn words(command: &str) -> Vec<&str> {
    let code = match command.find(" #") {
        Some(at) => &command[..at],
        None => command,
    };
    code.split_whitespace().collect()
}

/// An agent the block starts in the background.
#[derive(Debug)]
struct Agent {
    name: String,
    http: String,
    running: bool,
}

impl Agent {
    /// The agent a command ending in `&` starts, from its flags.
    fn from_command(command: &str) -> Agent {
        let words = words(command);
        let flag = |name: &str| {
            let at = words.iter().position(|w| *w == name)?;
            words.get(at + 1).map(|v| v.to_string())
        };
        let name = flag("--mesh-server-name")
            .unwrap_or_else(|| panic!("the test needs --mesh-server-name in {command:?}"));
        let host = flag("--host").unwrap_or_else(|| "127.0.0.1".into());
        let port = flag("--port").unwrap_or_else(|| DEFAULT_HTTP_PORT.into());
        Agent {
            name,
            http: format!("{host}:{port}"),
            running: true,
        }
    }
}

/// `kill -9 %N` or `kill %N`: (whether it is -9, the job number N).
fn kill_of_job(command: &str) -> Option<(bool, usize)> {
    match words(command).as_slice() {
        ["kill", "-9", job] | ["kill", "-KILL", job] => Some((true, job_number(job)?)),
        ["kill", job] | ["kill", "-TERM", job] | ["kill", "-15", job] => {
            Some((false, job_number(job)?))
        }
        _ => None,
    }
}

fn job_number(word: &str) -> Option<usize> {
    word.strip_prefix('%')?.parse().ok()
}

/// Shell helpers the test's copy of the block uses (never part of the README's block).
const PRELUDE: &str = r#"
trap 'jobs=$(jobs -pr); if [ -n "$jobs" ]; then kill -9 $jobs 2>/dev/null || true; fi' EXIT
# wait_for WHAT COMMAND...: runs COMMAND until it succeeds, at most WAIT_SECS seconds.
wait_for() {
    local what=$1
    shift
    local deadline=$((SECONDS + WAIT_SECS))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            echo "quickstart: not within ${WAIT_SECS} s: $what" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "quickstart: $what" >&2
}
# state_is HTTP_ADDR MEMBER STATE: the agent at HTTP_ADDR lists MEMBER in STATE.
state_is() {
    local out
    out=$(./target/debug/meshd members --http-addr "$1" 2>/dev/null) || return 1
    grep -Eq "^$2 +[^ ]+ +$3( |\$)" <<<"$out"
}
# alive_count_is HTTP_ADDR N: the agent at HTTP_ADDR lists exactly N members ALIVE.
alive_count_is() {
    local out
    out=$(./target/debug/meshd members --http-addr "$1" 2>/dev/null) || return 1
    [ "$(grep -Ec '^[^ ]+ +[^ ]+ +ALIVE( |$)' <<<"$out")" -eq "$2" ]
}
"#;

/// The test's copy of the block: the commands as written, with the waits between them.
fn script(commands: &[String]) -> String {
    let mut agents: Vec<Agent> = Vec::new();
    let last_start = commands
        .iter()
        .rposition(|c| words(c).last() == Some(&"&"))
        .expect("the block starts agents in the background");
    let mut out = format!("WAIT_SECS={WAIT_SECS}\npids=()\n{PRELUDE}\n");
    let mut saw_crash = false;
    let mut saw_leave = false;
    for (i, command) in commands.iter().enumerate() {
        if i == last_start + 1 {
            for agent in &agents {
                let n = agents.len();
                out += &format!(
                    "wait_for '{0} lists {n} ALIVE' alive_count_is {1} {n}\n",
                    agent.name, agent.http
                );
            }
        }
        out += command;
        out += "\n";
        if words(command).last() == Some(&"&") {
            agents.push(Agent::from_command(command));
            out += "pids+=($!)\n";
        } else if let Some((crash, job)) = kill_of_job(command) {
            let victim = agents
                .get_mut(job - 1)
                .unwrap_or_else(|| panic!("{command:?} names no agent the block started"));
            victim.running = false;
            let name = victim.name.clone();
            let state = if crash { "DOWN" } else { "LEAVING" };
            for observer in agents.iter().filter(|a| a.running) {
                out += &format!(
                    "wait_for '{name} {state} at {0}' state_is {1} {name} {state}\n",
                    observer.name, observer.http
                );
            }
            if crash {
                saw_crash = true;
                out += &format!("wait \"${{pids[{}]}}\" || true\n", job - 1);
            } else {
                saw_leave = true;
                out += &format!(
                    "if wait \"${{pids[{}]}}\"; then echo 'quickstart: {name} exited 0' >&2; \
                     else echo \"quickstart: {name} exited $?, not 0, after SIGTERM\" >&2; exit 1; fi\n",
                    job - 1
                );
            }
        }
    }
    assert!(
        saw_crash && saw_leave,
        "the block should show a crash (kill -9 %N) and a graceful leave (kill %N): {commands:#?}"
    );
    out
}

/// A scratch directory under the target dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("quickstart");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("target/debug")).expect("scratch dir");
        fs::create_dir_all(dir.join("bin")).expect("scratch bin dir");
        symlink(env!("CARGO_BIN_EXE_meshd"), dir.join("target/debug/meshd")).expect("symlink");
        let cargo = dir.join("bin/cargo");
        fs::write(
            &cargo,
            "#!/bin/sh\n# The quick-start test's cargo: the binary is already built.\n\
             [ \"$1\" = build ] && exit 0\necho \"quickstart: unexpected cargo $*\" >&2\nexit 1\n",
        )
        .expect("cargo shim");
        fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).expect("chmod shim");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The script's process group, killed (SIGKILL, by its id) when dropped: the agents the
/// block started die with it even if the script or the test failed half-way.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a negative pid signals that process group and nothing else.
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
    }
}

fn spawn(dir: &Path, script: &Path) -> Child {
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail"])
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("stdout")).expect("stdout file"))
        .stderr(fs::File::create(dir.join("stderr")).expect("stderr file"))
        .process_group(0);
    for (key, _) in std::env::vars() {
        if key.starts_with("MESHD_") {
            command.env_remove(key);
        }
    }
    command.spawn().expect("bash runs")
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|o| o.status.success()),
        "the quick start calls curl: install it"
    );
    let readme =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let commands = quick_start_block(&readme);
    let script_text = script(&commands);
    let scratch = Scratch::new();
    let script_path = scratch.0.join("quickstart.sh");
    fs::write(&script_path, &script_text).expect("script");

    let mut child = spawn(&scratch.0, &script_path);
    let group = Group(i32::try_from(child.id()).expect("pid fits"));
    let mut status = None;
    let finished = wait_until(WHOLE_BLOCK, || {
        status = child.try_wait().expect("wait for bash");
        status.is_some()
    });
    drop(group);
    if finished.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let read = |name: &str| fs::read_to_string(scratch.0.join(name)).unwrap_or_default();
    let (stdout, stderr) = (read("stdout"), read("stderr"));
    let report = format!("script:\n{script_text}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}");
    let status = status.unwrap_or_else(|| panic!("not done within {WHOLE_BLOCK:?}\n{report}"));
    assert!(
        status.success(),
        "the quick start failed: {status}\n{report}"
    );

    // What the block's comments promise, as far as its output shows it.
    for promise in [
        "\"node_count\":3",
        "3/3 members acknowledged",
        "quorum: 3 of 3 expected ALIVE",
        "NO quorum: 1 of 2 expected ALIVE",
    ] {
        assert!(
            stdout.contains(promise),
            "no {promise:?} in the output\n{report}"
        );
    }
}

#[test]
fn continuations_are_joined_and_waits_follow_the_kills() {
    let readme = "# x\n## Quick start: demo\ntext\n```sh\ncargo build\n\
                  meshd agent --mesh-server-name a --host 127.0.0.11 &\n\
                  meshd agent --mesh-server-name b --host 127.0.0.12 \\\n    --mesh-peer-urls x &\n\
                  \ncurl -s 127.0.0.11:39528/ha/status\nkill -9 %2   # b dies\nkill %1\n```\n";
    let commands = quick_start_block(readme);
    assert_eq!(commands.len(), 6, "{commands:#?}");
    assert_eq!(
        commands[2],
        "meshd agent --mesh-server-name b --host 127.0.0.12 --mesh-peer-urls x &"
    );
    let text = script(&commands);
    let ready = text.find("wait_for 'b lists 2 ALIVE'").expect("ready wait");
    let curl = text.find("curl -s").expect("curl");
    assert!(ready < curl, "{text}");
    assert!(text.contains("state_is 127.0.0.11:39528 b DOWN"), "{text}");
    assert!(!text.contains("state_is 127.0.0.12:39528 b"), "{text}");
    assert!(text.contains("if wait \"${pids[0]}\";"), "{text}");
}
