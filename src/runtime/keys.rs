//! Keyring commands across the cluster: one command (adopt this keyring, or list your keys) sent
//! to every live member over QUIC (`meshd-keys/1`, authenticated by the keyring itself), and
//! the report of who holds which key and who did not acknowledge.
//!
//! Members that miss a command (down, partitioned) still hold the keys everyone keeps until a
//! `remove`, and catch up from the keyring carried by every push-pull once they return.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use quinn::Endpoint;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::quic::{self, Dial};
use crate::seal::KeyId;
use crate::wire;

/// Members contacted at once: enough that a command to a few hundred members takes one
/// exchange timeout even if many of them are unreachable, few enough that a command to a large
/// cluster does not open thousands of connections in the same instant.
const MAX_CONCURRENT: usize = 128;

/// What an operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOp {
    /// Which keys does every member hold?
    List,
    /// A key was installed.
    Install,
    /// A key was made primary.
    Use,
    /// A key was removed.
    Remove,
}

impl KeyOp {
    /// The command's name, as the CLI and both APIs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOp::List => "list",
            KeyOp::Install => "install",
            KeyOp::Use => "use",
            KeyOp::Remove => "remove",
        }
    }
}

/// One member's answer to a command.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberAnswer {
    /// Member name.
    pub name: String,
    /// Its reply, or why there was none.
    pub reply: Result<wire::KeyCommandReply, String>,
}

/// A member that did not acknowledge, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberFailure {
    /// Member name.
    pub name: String,
    /// What went wrong: no answer, a refusal, or the keyring it holds instead.
    pub error: String,
}

/// One key and how many members hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyCount {
    /// The key's public id.
    pub id: String,
    /// Members (this node included) that hold it.
    pub members: usize,
    /// Members for which it is the primary key.
    pub primary_at: usize,
}

/// The outcome of a keyring command, as the CLI and the API show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyReport {
    /// The command.
    pub op: KeyOp,
    /// This node's keyring version after it.
    pub version: u64,
    /// Live members including this node.
    pub members: usize,
    /// Members (this node included) that answered with the expected keyring (for `list`: that
    /// answered at all).
    pub acknowledged: usize,
    /// Members that did not, with the reason.
    pub failed: Vec<MemberFailure>,
    /// Every key held anywhere, with how many hold it, the most widely held first.
    pub keys: Vec<KeyCount>,
}

/// Sends `command` (an encoded `KeyCommand`) to every member, at most [`MAX_CONCURRENT`] at a
/// time, each bounded by `timeout`; returns every answer, in member order.
pub async fn fan_out(
    endpoint: Endpoint,
    dial: Dial,
    members: Vec<(String, SocketAddr)>,
    command: Vec<u8>,
    timeout: Duration,
) -> Vec<MemberAnswer> {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    let command: Arc<[u8]> = command.into();
    let mut tasks = JoinSet::new();
    for (index, (name, addr)) in members.iter().cloned().enumerate() {
        let (endpoint, dial, command, slots) = (
            endpoint.clone(),
            dial.clone(),
            command.clone(),
            slots.clone(),
        );
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let reply = quic::exchange(&endpoint, &dial, addr, &command, timeout)
                .await
                .map_err(|e| describe(&e))
                .and_then(|bytes| {
                    wire::KeyCommandReply::decode(bytes.as_slice())
                        .map_err(|_| "answered with a malformed reply".to_string())
                });
            (index, MemberAnswer { name, reply })
        });
    }
    let mut answers: Vec<Option<MemberAnswer>> = vec![None; members.len()];
    while let Some(done) = tasks.join_next().await {
        if let Ok((index, answer)) = done {
            if let Some(slot) = answers.get_mut(index) {
                *slot = Some(answer);
            }
        }
    }
    answers
        .into_iter()
        .zip(members)
        .map(|(answer, (name, _))| {
            answer.unwrap_or(MemberAnswer {
                name,
                reply: Err("the request task failed".into()),
            })
        })
        .collect()
}

/// Why an exchange failed, in an operator's words.
fn describe(err: &quic::ExchangeError) -> String {
    if err.is_handshake_refusal() {
        "refused the handshake: it holds none of our keys (or another cluster label)".into()
    } else {
        format!("no answer ({err})")
    }
}

/// The keyring this node holds after the command: its version and key ids, primary first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalKeys {
    /// Version.
    pub version: u64,
    /// Ids, primary first.
    pub ids: Vec<KeyId>,
}

/// Builds the report of `op` from this node's keys and the members' answers. For a change,
/// a member acknowledges when it answers holding exactly our keys.
pub fn report(op: KeyOp, local: &LocalKeys, answers: &[MemberAnswer]) -> KeyReport {
    let mut failed = Vec::new();
    let mut acknowledged = 1; // this node
    let mut counts: BTreeMap<KeyId, (usize, usize)> = BTreeMap::new();
    let mut count = |ids: &[KeyId]| {
        for (i, id) in ids.iter().enumerate() {
            let entry = counts.entry(*id).or_default();
            entry.0 += 1;
            entry.1 += usize::from(i == 0);
        }
    };
    count(&local.ids);
    for answer in answers {
        let reply = match &answer.reply {
            Ok(reply) => reply,
            Err(e) => {
                failed.push(failure(&answer.name, e.clone()));
                continue;
            }
        };
        let ids = ids_of(reply);
        count(&ids);
        if !reply.error.is_empty() {
            failed.push(failure(&answer.name, format!("refused: {}", reply.error)));
        } else if op != KeyOp::List && ids != local.ids {
            let held: Vec<String> = ids.iter().map(ToString::to_string).collect();
            let error = format!(
                "holds keyring version {} with keys [{}] instead",
                reply.version,
                held.join(", ")
            );
            failed.push(failure(&answer.name, error));
        } else {
            acknowledged += 1;
        }
    }
    let mut keys: Vec<KeyCount> = counts
        .into_iter()
        .map(|(id, (members, primary_at))| KeyCount {
            id: id.to_string(),
            members,
            primary_at,
        })
        .collect();
    keys.sort_by(|a, b| b.members.cmp(&a.members).then(a.id.cmp(&b.id)));
    KeyReport {
        op,
        version: local.version,
        members: answers.len() + 1,
        acknowledged,
        failed,
        keys,
    }
}

fn failure(name: &str, error: String) -> MemberFailure {
    MemberFailure {
        name: name.to_string(),
        error,
    }
}

/// The key ids of a reply (malformed ids are skipped).
fn ids_of(reply: &wire::KeyCommandReply) -> Vec<KeyId> {
    reply
        .key_ids
        .iter()
        .filter_map(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map(KeyId::from_bytes)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::{Key, KEY_BYTES};

    fn id(byte: u8) -> KeyId {
        Key::from_bytes([byte; KEY_BYTES]).id()
    }

    fn answer(name: &str, version: u64, ids: &[u8], error: &str) -> MemberAnswer {
        MemberAnswer {
            name: name.into(),
            reply: Ok(wire::KeyCommandReply {
                version,
                key_ids: ids.iter().map(|b| id(*b).as_bytes().to_vec()).collect(),
                error: error.into(),
            }),
        }
    }

    #[test]
    fn a_change_report_counts_who_holds_the_new_keyring() {
        let local = LocalKeys {
            version: 1,
            ids: vec![id(1), id(2)],
        };
        let answers = vec![
            answer("b", 1, &[1, 2], ""),
            answer("c", 0, &[1], "this node runs without a keyring"),
            answer("d", 5, &[3], ""),
            MemberAnswer {
                name: "e".into(),
                reply: Err("no answer (timed out)".into()),
            },
        ];
        let report = report(KeyOp::Install, &local, &answers);
        assert_eq!(report.members, 5);
        assert_eq!(report.acknowledged, 2, "a and b");
        let failed: Vec<&str> = report.failed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(failed, ["c", "d", "e"]);
        assert!(
            report.failed[1].error.contains("version 5"),
            "{:?}",
            report.failed[1]
        );
        let first = &report.keys[0];
        assert_eq!(
            (first.id.as_str(), first.members, first.primary_at),
            (id(1).to_string().as_str(), 3, 3)
        );
    }

    #[test]
    fn a_list_report_acknowledges_every_answer() {
        let local = LocalKeys {
            version: 0,
            ids: vec![id(1)],
        };
        let answers = vec![answer("b", 0, &[2, 1], "")];
        let report = report(KeyOp::List, &local, &answers);
        assert_eq!((report.members, report.acknowledged), (2, 2));
        assert!(report.failed.is_empty());
        let counts: Vec<(usize, usize)> = report
            .keys
            .iter()
            .map(|k| (k.members, k.primary_at))
            .collect();
        assert_eq!(counts, [(2, 1), (1, 1)]);
    }
}
