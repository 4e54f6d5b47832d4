//! Whole-daemon fault tests across real network boundaries (draft; bounds filled in after
//! measuring).

mod common;

use std::time::{Duration, Instant};

use common::netns::Lab;
use common::*;

/// lan profile (the default) with faster anti-entropy, so a split heals in seconds.
const FLAGS: &[&str] = &["--push-pull-interval", "5s", "--seed-refresh-interval", "2s"];

/// True when every node lists exactly the members `nodes` are, all ALIVE.
fn converged(nodes: &[Node]) -> bool {
    let mut names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    names.sort_unstable();
    nodes.iter().all(|n| {
        n.status().is_some_and(|s| {
            let listed = s["nodes"].as_array().cloned().unwrap_or_default();
            let got: Vec<&str> = listed.iter().filter_map(|m| m["name"].as_str()).collect();
            got == names && listed.iter().all(|m| m["state"] == "ALIVE")
        })
    })
}

/// Each node's view, `name:STATE@incarnation`, for failure messages.
fn views(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| {
            let listed = n
                .status()
                .and_then(|s| s["nodes"].as_array().cloned())
                .map(|ms| {
                    ms.iter()
                        .map(|m| format!("{}:{}@{}", m["name"], m["state"], m["incarnation"]))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| "no answer".into());
            format!("{} sees [{listed}]", n.name)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn smoke_converges_in_namespaces() {
    let Some(lab) = Lab::new("smoke", 9, 3, 3) else {
        return;
    };
    let nodes = lab.start_cluster("smoke", FLAGS);
    let took = wait_until(Duration::from_secs(20), || converged(&nodes))
        .unwrap_or_else(|| panic!("no convergence:\n{}", views(&nodes)));
    eprintln!("MEASURED converge {took:?}");
    let t = Instant::now();
    let _ = t;
}
