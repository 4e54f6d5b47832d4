//! `meshd monitor`: follows a running agent's `/ha/events` and prints one line per change,
//! like `serf monitor`, or the events as JSON lines with `--json`. Runs until the agent ends
//! the stream (it left) or the user stops it.

use std::time::SystemTime;

use clap::Args;
use serde_json::Value;

use super::{ClientError, Target};

/// Flags of `meshd monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Where the agent is.
    #[command(flatten)]
    pub target: Target,
    /// Print each event as one JSON object per line: {"event": NAME, "data": {...}}
    #[arg(long)]
    pub json: bool,
    /// Also print every change of the replicated stores
    #[arg(long)]
    pub stores: bool,
}

/// Runs `meshd monitor`.
pub fn run(args: &MonitorArgs) -> Result<(), ClientError> {
    let api = args.target.api()?;
    let path = if args.stores {
        "/ha/events?stores=1"
    } else {
        "/ha/events"
    };
    api.stream_events(path, |event, data| {
        if args.json {
            println!("{{\"event\":{event:?},\"data\":{data}}}");
        } else if let Ok(value) = serde_json::from_str::<Value>(data) {
            let stamp = humantime::format_rfc3339_seconds(SystemTime::now());
            print!("{}", line(&stamp.to_string(), event, &value));
        }
        true
    })?;
    eprintln!("the agent ended the stream (it stopped)");
    Ok(())
}

/// The text printed for one event, prefixed with `stamp`; empty for events it does not know.
pub fn line(stamp: &str, event: &str, data: &Value) -> String {
    let text = |key: &str| data.get(key).and_then(Value::as_str).unwrap_or("?");
    let number = |key: &str| data.get(key).and_then(Value::as_u64).unwrap_or(0);
    let body = match event {
        "snapshot" | "resync" => {
            let counts = &data["stores"];
            let count = |key: &str| counts.get(key).and_then(Value::as_u64).unwrap_or(0);
            let lead = if event == "resync" {
                "fell behind, caught up: "
            } else {
                ""
            };
            format!(
                "{lead}{} sees {} members: {} alive, {} suspected, {} down, {} leaving",
                text("node_name"),
                count("membership_count"),
                count("alive_count"),
                count("suspected_count"),
                count("down_count"),
                count("leaving_count"),
            )
        }
        "membership" => {
            let previous = data
                .get("previous_state")
                .and_then(Value::as_str)
                .unwrap_or("NEW");
            format!(
                "{} {previous} -> {} (incarnation {}, {}) {}",
                text("member"),
                text("state"),
                number("incarnation"),
                text("reason"),
                text("address"),
            )
        }
        "reaped" => format!("{} forgotten after retention", text("member")),
        "store" => {
            let change = if data.get("deleted").and_then(Value::as_bool) == Some(true) {
                "deleted".to_string()
            } else {
                format!("= {}", data.get("value").unwrap_or(&Value::Null))
            };
            format!("store {} {} {change}", text("store"), text("key"))
        }
        "store_resync" => format!(
            "missed {} store changes (fell behind): re-read the stores",
            number("missed")
        ),
        _ => return String::new(),
    };
    format!("{stamp} {body}\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn one_plain_line_per_event() {
        let cases = [
            (
                "snapshot",
                json!({"node_name": "n1", "stores": {"membership_count": 3, "alive_count": 2,
                       "suspected_count": 1, "down_count": 0, "leaving_count": 0}}),
                "T n1 sees 3 members: 2 alive, 1 suspected, 0 down, 0 leaving\n",
            ),
            (
                "membership",
                json!({"seq": 4, "member": "n3", "state": "DOWN", "previous_state": "SUSPECTED",
                       "incarnation": 2, "reason": "suspicion expired",
                       "address": "127.0.0.3:39527"}),
                "T n3 SUSPECTED -> DOWN (incarnation 2, suspicion expired) 127.0.0.3:39527\n",
            ),
            (
                "membership",
                json!({"member": "n4", "state": "ALIVE", "previous_state": null,
                       "incarnation": 1, "reason": "gossip from n1", "address": "a:1"}),
                "T n4 NEW -> ALIVE (incarnation 1, gossip from n1) a:1\n",
            ),
            (
                "reaped",
                json!({"member": "n3"}),
                "T n3 forgotten after retention\n",
            ),
            (
                "store",
                json!({"store": "workers", "key": "w1", "value": {"url": "u"}, "deleted": false}),
                "T store workers w1 = {\"url\":\"u\"}\n",
            ),
            (
                "store",
                json!({"store": "s", "key": "k", "value": null, "deleted": true}),
                "T store s k deleted\n",
            ),
            ("unknown", json!({}), ""),
        ];
        for (event, data, want) in cases {
            assert_eq!(line("T", event, &data), want, "{event} {data}");
        }
    }
}
