//! `meshd leader` and `meshd owner KEY`: a running agent's leader and owner views, from
//! `/ha/leader` and `/ha/owner/{key}`.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::{path_segment, ClientError, Target};

/// Flags of `meshd leader`.
#[derive(Debug, Args)]
pub struct LeaderArgs {
    /// Where the agent is.
    #[command(flatten)]
    pub target: Target,
    /// Print the agent's JSON answer instead of a line
    #[arg(long)]
    pub json: bool,
}

/// Flags of `meshd owner`.
#[derive(Debug, Args)]
pub struct OwnerArgs {
    /// The key (a job, a connection, a tenant: any text of 1 to 1,024 bytes)
    pub key: String,
    /// Where the agent is.
    #[command(flatten)]
    pub target: Target,
    /// Print the agent's JSON answer instead of the owner's name
    #[arg(long)]
    pub json: bool,
}

/// The `/ha/leader` document.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Leader {
    /// The leader's name, if any member is ALIVE.
    pub leader: Option<String>,
    /// True when more than half of `expected` is ALIVE in the agent's view.
    pub has_quorum: bool,
    /// Members ALIVE.
    pub alive: u64,
    /// The size the quorum counts against.
    pub expected: u64,
    /// Milliseconds since the agent last saw the leader change.
    pub since_ms: u64,
}

/// The `/ha/owner/{key}` document.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Owner {
    /// The key asked about.
    pub key: String,
    /// Its owner, if any member is ALIVE.
    pub owner: Option<String>,
}

/// One line: who leads, since when, and the quorum.
pub fn render_leader(view: &Leader) -> String {
    let who = view
        .leader
        .as_deref()
        .unwrap_or("(none: no member is ALIVE)");
    let quorum = if view.has_quorum {
        "quorum"
    } else {
        "NO quorum"
    };
    format!(
        "{who} (for {:.1} s); {quorum}: {} of {} expected ALIVE\n",
        view.since_ms as f64 / 1000.0,
        view.alive,
        view.expected
    )
}

/// Runs `meshd leader`.
pub fn run_leader(args: &LeaderArgs) -> Result<(), ClientError> {
    let view: Leader = args.target.api()?.get_ok("/ha/leader")?;
    print_either(args.json, &view, || render_leader(&view))
}

/// Runs `meshd owner KEY`: prints the owner's name (empty output is never a name: with no
/// member ALIVE it fails).
pub fn run_owner(args: &OwnerArgs) -> Result<(), ClientError> {
    let path = format!("/ha/owner/{}", path_segment(&args.key));
    let answer: Owner = args.target.api()?.get_ok(&path)?;
    if args.json {
        return print_either(true, &answer, String::new);
    }
    match &answer.owner {
        Some(owner) => {
            println!("{owner}");
            Ok(())
        }
        None => Err(ClientError::Other(format!(
            "no member is ALIVE to own {:?}",
            answer.key
        ))),
    }
}

fn print_either<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<(), ClientError> {
    if json {
        let text = serde_json::to_string(value)
            .map_err(|e| ClientError::Other(format!("cannot print JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", text());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_line_reads_plainly() {
        let mut view = Leader {
            leader: Some("gw-1".into()),
            has_quorum: true,
            alive: 3,
            expected: 3,
            since_ms: 12_345,
        };
        assert_eq!(
            render_leader(&view),
            "gw-1 (for 12.3 s); quorum: 3 of 3 expected ALIVE\n"
        );
        view.leader = None;
        view.has_quorum = false;
        view.alive = 0;
        assert_eq!(
            render_leader(&view),
            "(none: no member is ALIVE) (for 12.3 s); NO quorum: 0 of 3 expected ALIVE\n"
        );
    }
}
