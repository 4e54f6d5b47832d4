//! Outside programs the tests drive (schemathesis, node with chromium): whether one is
//! installed, and a run of one bounded in time whose whole process group is killed past it.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often a bounded run checks whether its program ended.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// True when `program --version` runs and exits with success.
pub fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What a bounded run did.
pub struct Outcome {
    /// It exited with success within its limit.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error, after a line saying so if it was killed at the limit.
    pub stderr: String,
}

/// Runs `cmd` to completion, its output logged to `dir/stdout.log` and `dir/stderr.log`, or
/// kills its process group (led by the child we started, by its PID) after `limit`: a browser
/// or worker the program started goes with it.
pub fn run_bounded(mut cmd: Command, dir: &Path, limit: Duration) -> Outcome {
    std::fs::create_dir_all(dir).expect("scratch dir can be created");
    let (out_path, err_path) = (dir.join("stdout.log"), dir.join("stderr.log"));
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout log can be created"))
        .stderr(File::create(&err_path).expect("stderr log can be created"))
        .spawn()
        .unwrap_or_else(|e| panic!("{program} does not start: {e}"));
    let group = i32::try_from(child.id()).expect("pid fits in i32");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) on the process group we created, led by our own child.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(POLL_EVERY);
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let mut stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if status.is_none() {
        stderr.insert_str(0, &format!("{program} timed out after {limit:?}\n"));
    }
    Outcome {
        ok: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    }
}
