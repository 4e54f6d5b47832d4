//! `meshd store ls|get|put|del|incr|add|remove|watch`: the replicated stores over the agent's
//! HTTP API (`/ha/stores/…`). Reads print plain text (values as JSON), `--json` the API's
//! answer; `watch` prints one line per change until interrupted.

use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{api_error, decode, path_segment, Answer, ClientError, Target};

/// Flags of `meshd store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Where the agent is.
    #[command(flatten)]
    pub target: Target,
    /// Print the API's JSON answer instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// The store commands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List the stores, or the keys of one store with their values
    Ls {
        /// A store to list the keys of.
        store: Option<String>,
    },
    /// Print a key's value (JSON)
    Get {
        /// The store.
        store: String,
        /// The key.
        key: String,
    },
    /// Set a key of an lww store; VALUE is JSON, or taken as a string when it is not JSON
    Put {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete a key (an lww tombstone, a counter reset to 0, a set emptied)
    Del {
        /// The store.
        store: String,
        /// The key.
        key: String,
    },
    /// Add to a key of a counter store (BY may be negative; default 1)
    Incr {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// How much to add.
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        by: i64,
    },
    /// Add a member to a key of a set store
    Add {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// The member.
        member: String,
    },
    /// Remove a member from a key of a set store
    Remove {
        /// The store.
        store: String,
        /// The key.
        key: String,
        /// The member.
        member: String,
    },
    /// Print the store's entries, then one line per change, until interrupted
    Watch {
        /// The store.
        store: String,
    },
}

/// One key as the API answers it.
#[derive(Debug, Deserialize, PartialEq)]
pub struct Entry {
    key: String,
    value: Value,
    version: String,
}

/// `GET /ha/stores/{store}`.
#[derive(Debug, Deserialize, PartialEq)]
struct Entries {
    kind: String,
    entries: Vec<Entry>,
}

/// One store of `GET /ha/stores`.
#[derive(Debug, Deserialize, PartialEq)]
struct StoreItem {
    name: String,
    kind: String,
    keys: usize,
    bytes: usize,
}

#[derive(Debug, Deserialize)]
struct Stores {
    stores: Vec<StoreItem>,
}

/// Runs one store command against the agent.
pub fn run(args: &StoreArgs) -> Result<(), ClientError> {
    let api = args.target.api()?;
    let answer = match &args.command {
        StoreCommand::Ls { store } => return list(args, &api, store.as_deref()),
        StoreCommand::Watch { store } => return watch(args, &api, store),
        StoreCommand::Get { store, key } => api.get(&key_path(store, key))?,
        StoreCommand::Put { store, key, value } => {
            let body = json!({ "value": json_or_string(value) });
            api.put(&key_path(store, key), &body)?
        }
        StoreCommand::Del { store, key } => api.delete(&key_path(store, key))?,
        StoreCommand::Incr { store, key, by } => {
            let path = format!("{}/incr", key_path(store, key));
            api.post(&path, &json!({ "by": by }))?
        }
        StoreCommand::Add { store, key, member } => {
            let path = format!("{}/add", key_path(store, key));
            api.post(&path, &json!({ "member": member }))?
        }
        StoreCommand::Remove { store, key, member } => {
            let path = format!("{}/remove", key_path(store, key));
            api.post(&path, &json!({ "member": member }))?
        }
    };
    let body = ok_body(answer)?;
    if args.json || matches!(args.command, StoreCommand::Del { .. }) {
        println!("{body}");
    } else {
        println!("{}", body.get("value").unwrap_or(&Value::Null));
    }
    Ok(())
}

fn ok_body(answer: Answer) -> Result<Value, ClientError> {
    if (200..300).contains(&answer.code) {
        Ok(answer.body)
    } else {
        Err(api_error(answer))
    }
}

fn list(args: &StoreArgs, api: &super::Api, store: Option<&str>) -> Result<(), ClientError> {
    let path = match store {
        Some(store) => format!("/ha/stores/{}", path_segment(store)),
        None => "/ha/stores".to_string(),
    };
    let body = ok_body(api.get(&path)?)?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    match store {
        None => {
            let stores: Stores = decode(&path, body)?;
            print!("{}", store_rows(&stores.stores));
        }
        Some(_) => {
            let entries: Entries = decode(&path, body)?;
            print!("{}", entry_rows(&entries.kind, &entries.entries));
        }
    }
    Ok(())
}

fn watch(args: &StoreArgs, api: &super::Api, store: &str) -> Result<(), ClientError> {
    let path = format!("/ha/stores/{}/watch", path_segment(store));
    api.stream_events(&path, |event, data| {
        if args.json {
            println!("{{\"event\":{event:?},\"data\":{data}}}");
        } else if let Ok(value) = serde_json::from_str::<Value>(data) {
            print!("{}", watch_line(event, &value));
        }
        true
    })
}

/// The text a watch prints for one event: the snapshot's entries, or one change.
fn watch_line(event: &str, data: &Value) -> String {
    match event {
        "snapshot" => {
            let entries: Vec<Entry> = data
                .get("entries")
                .cloned()
                .and_then(|e| serde_json::from_value(e).ok())
                .unwrap_or_default();
            let kind = data.get("kind").and_then(Value::as_str).unwrap_or("-");
            let mut out = String::new();
            if data.get("resync").and_then(Value::as_bool) == Some(true) {
                out.push_str("(fell behind: the store again)\n");
            }
            out.push_str(&entry_rows(kind, &entries));
            out
        }
        _ => {
            let key = data.get("key").and_then(Value::as_str).unwrap_or("?");
            let version = data.get("version").and_then(Value::as_str).unwrap_or("-");
            if data.get("deleted").and_then(Value::as_bool) == Some(true) {
                format!("{key} deleted ({version})\n")
            } else {
                let value = data.get("value").unwrap_or(&Value::Null);
                format!("{key} = {value} ({version})\n")
            }
        }
    }
}

fn store_rows(stores: &[StoreItem]) -> String {
    let mut out = format!(
        "{:<24} {:<8} {:>8} {:>10}\n",
        "STORE", "KIND", "KEYS", "BYTES"
    );
    for s in stores {
        out.push_str(&format!(
            "{:<24} {:<8} {:>8} {:>10}\n",
            s.name, s.kind, s.keys, s.bytes
        ));
    }
    out
}

fn entry_rows(kind: &str, entries: &[Entry]) -> String {
    let width = entries
        .iter()
        .map(|e| e.key.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut out = format!("{:<width$}  VALUE ({kind})\n", "KEY");
    for e in entries {
        out.push_str(&format!("{:<width$}  {}\n", e.key, e.value));
    }
    out
}

/// A value from the command line: JSON if it parses, else the text as a JSON string.
fn json_or_string(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn key_path(store: &str, key: &str) -> String {
    format!("/ha/stores/{}/{}", path_segment(store), path_segment(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_one_path_path_segment() {
        assert_eq!(path_segment("w-1.a_b~"), "w-1.a_b~");
        assert_eq!(path_segment("tenant/42 ü"), "tenant%2F42%20%C3%BC");
        assert_eq!(key_path("s", "a/b"), "/ha/stores/s/a%2Fb");
    }

    #[test]
    fn values_are_json_unless_they_are_not() {
        assert_eq!(json_or_string("42"), json!(42));
        assert_eq!(json_or_string("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(json_or_string("hello"), json!("hello"));
    }

    #[test]
    fn rows_and_watch_lines_read_plainly() {
        let entries = vec![Entry {
            key: "w1".into(),
            value: json!({"url": "http://w1"}),
            version: "5.0@n@1".into(),
        }];
        assert_eq!(
            entry_rows("lww", &entries),
            "KEY  VALUE (lww)\nw1   {\"url\":\"http://w1\"}\n"
        );
        let change = json!({"key": "hits", "value": 3, "version": "7.0@n@1", "deleted": false});
        assert_eq!(watch_line("change", &change), "hits = 3 (7.0@n@1)\n");
        let deleted = json!({"key": "hits", "value": null, "version": "8.0@n@1", "deleted": true});
        assert_eq!(watch_line("change", &deleted), "hits deleted (8.0@n@1)\n");
        let stores = vec![StoreItem {
            name: "workers".into(),
            kind: "lww".into(),
            keys: 2,
            bytes: 120,
        }];
        assert!(
            store_rows(&stores).contains("workers                  lww             2        120")
        );
    }
}
