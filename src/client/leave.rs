//! `meshd leave`: ask a running agent to leave the cluster gracefully (`POST /ha/shutdown`),
//! and with `--wait` wait until it has stopped.

use std::time::{Duration, Instant};

use clap::Args;
use serde::Deserialize;

use super::{api_error, ClientError, Target};

/// How often `--wait` checks whether the agent still answers.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// Flags of `meshd leave`.
#[derive(Debug, Args)]
pub struct LeaveArgs {
    /// Where the agent is.
    #[command(flatten)]
    pub target: Target,
    /// Wait until the agent has stopped answering (bounded by --wait-timeout)
    #[arg(long)]
    pub wait: bool,
    /// Longest --wait waits; the agent's own --leave-timeout (2s) plus HTTP drain fit well within
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
}

/// The part of `/ha/health` that names the node.
#[derive(Debug, Deserialize)]
struct Name {
    node_name: String,
}

/// Runs `meshd leave`.
pub fn run(args: &LeaveArgs) -> Result<(), ClientError> {
    let api = args.target.api()?;
    // Health answers 503 while joining or leaving, with the name all the same.
    let health = api.get("/ha/health")?;
    let node = super::decode::<Name>("/ha/health", health.body)
        .map(|n| n.node_name)
        .unwrap_or_else(|_| api.addr().to_string());
    let answer = api.post("/ha/shutdown", &serde_json::json!({}))?;
    if !(200..300).contains(&answer.code) {
        return Err(api_error(answer));
    }
    println!("leave initiated for {node}");
    if args.wait {
        let started = Instant::now();
        let deadline = started + args.wait_timeout;
        while api.answers() {
            if Instant::now() >= deadline {
                return Err(ClientError::Other(format!(
                    "{node} still answers at {} after {}",
                    api.addr(),
                    humantime::format_duration(args.wait_timeout)
                )));
            }
            std::thread::sleep(WAIT_POLL);
        }
        println!(
            "{node} no longer answers (after {:.1}s)",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
