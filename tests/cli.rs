//! The `meshd` command line refuses bad input with a clear message and a non-zero exit.

use std::process::Command;

fn meshd(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("meshd runs");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn unspecified_mesh_host_without_advertise_host_is_refused() {
    let (code, text) = meshd(&["agent", "--mesh-host", "0.0.0.0", "--port", "1"]);
    assert_ne!(code, 0);
    assert!(
        text.contains("--mesh-advertise-host"),
        "message names the flag to set: {text}"
    );
}

#[test]
fn bad_flag_values_are_refused() {
    let cases: &[&[&str]] = &[
        &["agent", "--mesh-host", "127.0.0.1", "--mesh-port", "70000"],
        &[
            "agent",
            "--mesh-host",
            "127.0.0.1",
            "--mesh-peer-urls",
            "no-port-here",
        ],
        &[
            "agent",
            "--mesh-host",
            "127.0.0.1",
            "--mesh-peer-urls",
            "host:notaport",
        ],
        &[
            "agent",
            "--mesh-host",
            "127.0.0.1",
            "--probe-interval",
            "soon",
        ],
        &["agent", "--mesh-host", "127.0.0.1", "--tag", "novalue"],
        &[
            "agent",
            "--mesh-host",
            "127.0.0.1",
            "--probe-interval",
            "500ms",
            "--probe-timeout",
            "1s",
        ],
        &["agent", "--mesh-host", "127.0.0.1", "--log-format", "xml"],
    ];
    for args in cases {
        let (code, text) = meshd(args);
        assert_ne!(code, 0, "{args:?} must fail");
        assert!(!text.contains("panicked"), "{args:?} panicked: {text}");
        assert!(
            text.to_lowercase().contains("error"),
            "{args:?} says error: {text}"
        );
    }
}
