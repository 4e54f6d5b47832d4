//! `meshd info`: a running agent's own state and a summary of its cluster, from `/ha/health`
//! and `/ha/status`.

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{api_error, decode, ClientError, Target};

/// Flags of `meshd info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Where the agent is.
    #[command(flatten)]
    pub target: Target,
    /// Print the summary as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// The fields of `/ha/health` shown.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Health {
    /// "healthy", "joining", "leaving", "down".
    pub status: String,
    /// This node's member name.
    pub node_name: String,
    /// Members ALIVE or SUSPECTED, this node included.
    pub cluster_size: u64,
    /// "ALIVE", "INIT", …
    pub state: String,
    /// This node's incarnation.
    pub incarnation: u64,
    /// Lifeguard local health score (0 is healthy).
    pub health_score: u64,
}

/// The `stores` counts of `/ha/status`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Every listed member.
    pub membership_count: u64,
    /// ALIVE members.
    pub alive_count: u64,
    /// SUSPECTED members.
    pub suspected_count: u64,
    /// DOWN members.
    pub down_count: u64,
    /// LEAVING members.
    pub leaving_count: u64,
}

/// Everything `meshd info` prints.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Info {
    /// From `/ha/health`.
    #[serde(flatten)]
    pub health: Health,
    /// Counts per state, from `/ha/status`.
    pub members: Counts,
    /// This node's mesh (SWIM/QUIC) address, from its own `/ha/status` entry.
    pub mesh_address: Option<String>,
    /// Region, zone and tags of this node, from its own entry.
    pub region: String,
    /// Zone label.
    pub zone: String,
    /// Tags as `k=v`.
    pub tags: Vec<String>,
    /// The HTTP address asked.
    pub http_address: String,
}

/// Builds the summary from the two documents.
pub fn summarize(health: Health, status: &Value, http_addr: &str) -> Result<Info, ClientError> {
    let counts = status
        .get("stores")
        .cloned()
        .ok_or_else(|| ClientError::BadAnswer {
            path: "/ha/status".into(),
            reason: "no \"stores\" counts".into(),
        })?;
    let members: Counts = decode("/ha/status", counts)?;
    let own = status
        .get("nodes")
        .and_then(Value::as_array)
        .and_then(|nodes| {
            nodes
                .iter()
                .find(|n| n["name"] == health.node_name.as_str())
        });
    let text = |key: &str| {
        own.and_then(|n| n.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let tags = own
        .and_then(|n| n.get("tags"))
        .and_then(Value::as_object)
        .map(|tags| {
            tags.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Info {
        mesh_address: own.map(|_| text("address")).filter(|a| !a.is_empty()),
        region: text("region"),
        zone: text("zone"),
        tags,
        health,
        members,
        http_address: http_addr.to_string(),
    })
}

/// The text `meshd info` prints: one `key: value` line each, values aligned.
pub fn render(info: &Info) -> String {
    let c = &info.members;
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let lines: Vec<(&str, String)> = vec![
        ("node", info.health.node_name.clone()),
        (
            "state",
            format!("{} ({})", info.health.state, info.health.status),
        ),
        ("incarnation", info.health.incarnation.to_string()),
        (
            "cluster size",
            format!(
                "{} (ALIVE or SUSPECTED, this node included)",
                info.health.cluster_size
            ),
        ),
        (
            "members",
            format!(
                "{} listed: {} alive, {} suspected, {} down, {} leaving",
                c.membership_count, c.alive_count, c.suspected_count, c.down_count, c.leaving_count
            ),
        ),
        (
            "health score",
            format!("{} (0 is healthy)", info.health.health_score),
        ),
        (
            "mesh address",
            info.mesh_address.clone().unwrap_or_else(|| "-".into()),
        ),
        ("http address", info.http_address.clone()),
        ("region", dash(&info.region)),
        ("zone", dash(&info.zone)),
        ("tags", dash(&info.tags.join(","))),
    ];
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    lines
        .iter()
        .map(|(key, value)| format!("{:<width$} {value}\n", format!("{key}:")))
        .collect()
}

/// Runs `meshd info`.
pub fn run(args: &InfoArgs) -> Result<(), ClientError> {
    let api = args.target.api()?;
    // 503 (joining, leaving) still carries the health document: show it, it is the point.
    let answer = api.get("/ha/health")?;
    if !matches!(answer.code, 200..=299 | 503) {
        return Err(api_error(answer));
    }
    let health: Health = decode("/ha/health", answer.body)?;
    let status: Value = api.get_ok("/ha/status")?;
    let info = summarize(health, &status, api.addr())?;
    if args.json {
        let text = serde_json::to_string_pretty(&info)
            .map_err(|e| ClientError::Other(format!("cannot print JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(&info));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn health() -> Health {
        decode(
            "/ha/health",
            json!({"status":"healthy","node_name":"node1","cluster_size":3,
                   "stores_healthy":true,"state":"ALIVE","incarnation":2,"health_score":0}),
        )
        .expect("health decodes")
    }

    fn status() -> Value {
        json!({"node_name":"node1","node_count":4,
            "nodes":[
              {"name":"node1","address":"127.0.0.11:39527","state":"ALIVE","incarnation":2,
               "region":"eu","zone":"eu-1a","tags":{"role":"gw","tier":"edge"},"since_ms":1},
              {"name":"node2","address":"127.0.0.12:39527","state":"DOWN","incarnation":1,
               "region":"","zone":"","tags":{},"since_ms":1}],
            "stores":{"membership_count":4,"alive_count":3,"suspected_count":0,
                      "down_count":1,"leaving_count":0}})
    }

    #[test]
    fn summary_combines_health_and_own_entry() {
        let info = summarize(health(), &status(), "127.0.0.11:39528").expect("summary");
        assert_eq!(info.mesh_address.as_deref(), Some("127.0.0.11:39527"));
        assert_eq!(info.tags, ["role=gw", "tier=edge"]);
        assert_eq!(info.members.down_count, 1);
        let text = render(&info);
        let expected = "\
node:         node1
state:        ALIVE (healthy)
incarnation:  2
cluster size: 3 (ALIVE or SUSPECTED, this node included)
members:      4 listed: 3 alive, 0 suspected, 1 down, 0 leaving
health score: 0 (0 is healthy)
mesh address: 127.0.0.11:39527
http address: 127.0.0.11:39528
region:       eu
zone:         eu-1a
tags:         role=gw,tier=edge
";
        assert_eq!(text, expected);
    }

    #[test]
    fn missing_own_entry_and_counts() {
        let mut st = status();
        st["nodes"] = json!([]);
        let info = summarize(health(), &st, "h:1").expect("summary");
        assert_eq!(info.mesh_address, None);
        assert!(render(&info).contains("mesh address: -\n"));
        let err = summarize(health(), &json!({"nodes": []}), "h:1").expect_err("no stores");
        assert!(err.to_string().contains("stores"), "{err}");
    }

    #[test]
    fn json_output_is_flat_for_health_fields() {
        let info = summarize(health(), &status(), "h:1").expect("summary");
        let value = serde_json::to_value(&info).expect("serializes");
        assert_eq!(value["node_name"], "node1");
        assert_eq!(value["cluster_size"], 3);
        assert_eq!(value["members"]["alive_count"], 3);
        assert_eq!(value["http_address"], "h:1");
    }
}
