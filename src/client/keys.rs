//! `meshd keys list | install KEY | use KEY | remove KEY`: the cluster keyring commands, over
//! the agent's API (`GET /ha/keys`, `POST /ha/keys/{install,use,remove}`). Each prints how many
//! members acknowledged and which did not, and fails (exit 1) unless every one did.

use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::json;

use super::{api_error, decode, ClientError, Target};

/// Flags of `meshd keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Where the agent is.
    #[command(flatten)]
    pub target: Target,
    /// What to do.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The keyring commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show which keys the live members hold (key ids only; keys are never shown)
    List,
    /// Install a key (base64, from `meshd keygen`) at every live member, not yet primary
    Install {
        /// The new key.
        key: String,
    },
    /// Make an installed key primary everywhere (the key or its id)
    Use {
        /// The key or its 16-hex-digit id.
        key: String,
    },
    /// Remove an installed, non-primary key everywhere (the key or its id)
    Remove {
        /// The key or its 16-hex-digit id.
        key: String,
    },
}

/// The agent's report (see the HTTP API).
#[derive(Debug, Deserialize, PartialEq)]
pub struct Report {
    op: String,
    version: u64,
    members: usize,
    acknowledged: usize,
    failed: Vec<Failure>,
    keys: Vec<Count>,
}

/// A member that did not acknowledge.
#[derive(Debug, Deserialize, PartialEq)]
struct Failure {
    name: String,
    error: String,
}

/// A key and how many members hold it.
#[derive(Debug, Deserialize, PartialEq)]
struct Count {
    id: String,
    members: usize,
    primary_at: usize,
}

/// Longest a keyring command may take: the agent answers once every live member has
/// acknowledged or timed out (a few seconds each, many at a time).
const KEY_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `meshd keys …`.
pub fn run(args: &KeysArgs) -> Result<(), ClientError> {
    let api = args.target.api_with_timeout(KEY_COMMAND_TIMEOUT)?;
    let (path, answer) = match &args.command {
        KeysCommand::List => ("/ha/keys", api.get("/ha/keys")?),
        KeysCommand::Install { key } => post(&api, "/ha/keys/install", key)?,
        KeysCommand::Use { key } => post(&api, "/ha/keys/use", key)?,
        KeysCommand::Remove { key } => post(&api, "/ha/keys/remove", key)?,
    };
    if !(200..300).contains(&answer.code) {
        return Err(api_error(answer));
    }
    let report: Report = decode(path, answer.body)?;
    print!("{}", render(&report));
    if report.acknowledged < report.members {
        return Err(ClientError::Other(format!(
            "{} of {} members did not acknowledge (see above); they catch up from any \
             push-pull once reachable, as long as they still hold a key the others hold",
            report.members - report.acknowledged,
            report.members
        )));
    }
    Ok(())
}

fn post(
    api: &super::Api,
    path: &'static str,
    key: &str,
) -> Result<(&'static str, super::Answer), ClientError> {
    Ok((path, api.post(path, &json!({ "key": key }))?))
}

/// The report as the lines printed.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "{}: {}/{} members acknowledged (keyring version {})\n",
        report.op, report.acknowledged, report.members, report.version
    );
    out.push_str(&format!(
        "{:<18}{:<10}{}\n",
        "KEY ID", "MEMBERS", "PRIMARY AT"
    ));
    for key in &report.keys {
        let held = format!("{}/{}", key.members, report.members);
        let primary = format!("{}/{}", key.primary_at, report.members);
        out.push_str(&format!("{:<18}{held:<10}{primary}\n", key.id));
    }
    for failure in &report.failed {
        out.push_str(&format!(
            "not acknowledged: {}: {}\n",
            failure.name, failure.error
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_prints_counts_and_failures() {
        let report: Report = serde_json::from_value(json!({
            "op": "install", "version": 3, "members": 3, "acknowledged": 2,
            "failed": [{"name": "n3", "error": "no answer (timed out)"}],
            "keys": [
                {"id": "00112233aabbccdd", "members": 3, "primary_at": 3},
                {"id": "44556677eeff0011", "members": 2, "primary_at": 0}
            ]
        }))
        .expect("report");
        assert_eq!(
            render(&report),
            "install: 2/3 members acknowledged (keyring version 3)\n\
             KEY ID            MEMBERS   PRIMARY AT\n\
             00112233aabbccdd  3/3       3/3\n\
             44556677eeff0011  2/3       0/3\n\
             not acknowledged: n3: no answer (timed out)\n"
        );
    }
}
