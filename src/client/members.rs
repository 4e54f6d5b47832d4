//! `meshd members`: the members a running agent knows, as an aligned table (like `serf
//! members`) or as JSON, optionally filtered by state.

use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::Value;

use super::{api_error, decode, format_age, Api, ClientError, Target};

/// Column headers, in order.
const HEADERS: [&str; 7] = [
    "NAME",
    "ADDRESS",
    "STATE",
    "REGION",
    "ZONE",
    "INCARNATION",
    "AGE",
];

/// Spaces between columns.
const GAP: usize = 3;

/// Shown for an empty region or zone, so columns never look shifted.
const EMPTY: &str = "-";

/// Flags of `meshd members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Where the agent is.
    #[command(flatten)]
    pub target: Target,
    /// Print the member list as JSON (the `nodes` array of GET /ha/status)
    #[arg(long)]
    pub json: bool,
    /// Show only members in this state (repeatable, or comma-separated)
    #[arg(long, value_enum, value_delimiter = ',')]
    pub status: Vec<StateFilter>,
}

/// States `--status` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    /// Answering probes.
    Alive,
    /// Missed a probe round; not yet declared failed.
    Suspected,
    /// Declared failed.
    Down,
    /// Left gracefully.
    Leaving,
}

impl StateFilter {
    /// The `state` string the API uses.
    fn api_name(self) -> &'static str {
        match self {
            StateFilter::Alive => "ALIVE",
            StateFilter::Suspected => "SUSPECTED",
            StateFilter::Down => "DOWN",
            StateFilter::Leaving => "LEAVING",
        }
    }
}

/// The fields of one `/ha/status` node the table shows.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Member name.
    pub name: String,
    /// Mesh address.
    pub address: String,
    /// "ALIVE", "SUSPECTED", …
    pub state: String,
    /// Region label (may be empty).
    #[serde(default)]
    pub region: String,
    /// Zone label (may be empty).
    #[serde(default)]
    pub zone: String,
    /// Incarnation.
    pub incarnation: u64,
    /// Milliseconds since the agent saw the state change.
    pub since_ms: u64,
}

/// Whether a member in API state `state` passes the filter (an empty filter passes all).
pub fn matches(filter: &[StateFilter], state: &str) -> bool {
    filter.is_empty() || filter.iter().any(|f| f.api_name() == state)
}

/// The aligned table: a header line and one line per member, in the given order. Every column
/// but the last is padded to its widest cell; lines carry no trailing spaces.
pub fn table(members: &[Member]) -> String {
    let rows: Vec<[String; 7]> = members
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.address.clone(),
                m.state.clone(),
                or_dash(&m.region),
                or_dash(&m.zone),
                m.incarnation.to_string(),
                format_age(m.since_ms),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = HEADERS.map(str::to_string);
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + GAP;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        EMPTY.to_string()
    } else {
        s.to_string()
    }
}

/// The `nodes` array of a `/ha/status` body, filtered, entries kept exactly as the API sent
/// them (tags and all).
pub fn filtered_nodes(status: &Value, filter: &[StateFilter]) -> Result<Vec<Value>, ClientError> {
    let nodes = status
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| ClientError::BadAnswer {
            path: "/ha/status".into(),
            reason: "no \"nodes\" array".into(),
        })?;
    Ok(nodes
        .iter()
        .filter(|n| matches(filter, n.get("state").and_then(Value::as_str).unwrap_or("")))
        .cloned()
        .collect())
}

/// Fetches, filters and renders: the text `meshd members` prints.
pub fn render(api: &Api, args: &MembersArgs) -> Result<String, ClientError> {
    let answer = api.get("/ha/status")?;
    if !(200..300).contains(&answer.code) {
        return Err(api_error(answer));
    }
    let nodes = filtered_nodes(&answer.body, &args.status)?;
    if args.json {
        let text = serde_json::to_string_pretty(&nodes)
            .map_err(|e| ClientError::Other(format!("cannot print JSON: {e}")))?;
        return Ok(text + "\n");
    }
    let members: Vec<Member> = decode("/ha/status", Value::Array(nodes))?;
    Ok(table(&members))
}

/// Runs `meshd members`.
pub fn run(args: &MembersArgs) -> Result<(), ClientError> {
    let api = args.target.api()?;
    print!("{}", render(&api, args)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(name: &str, address: &str, state: &str, region: &str, since_ms: u64) -> Member {
        Member {
            name: name.into(),
            address: address.into(),
            state: state.into(),
            region: region.into(),
            zone: String::new(),
            incarnation: 1,
            since_ms,
        }
    }

    #[test]
    fn table_columns_are_aligned_without_trailing_spaces() {
        let rows = [
            member("node1", "127.0.0.11:39527", "ALIVE", "eu-west", 5_120),
            member("n2", "[::1]:39527", "SUSPECTED", "", 312_000),
        ];
        let text = table(&rows);
        let expected = "\
NAME    ADDRESS            STATE       REGION    ZONE   INCARNATION   AGE
node1   127.0.0.11:39527   ALIVE       eu-west   -      1             5s
n2      [::1]:39527        SUSPECTED   -         -      1             5m12s
";
        assert_eq!(text, expected);
        for line in text.lines() {
            assert_eq!(line, line.trim_end());
        }
    }

    #[test]
    fn empty_list_is_just_the_header() {
        assert_eq!(
            table(&[]),
            "NAME   ADDRESS   STATE   REGION   ZONE   INCARNATION   AGE\n"
        );
    }

    #[test]
    fn filter_keeps_only_the_chosen_states() {
        let status = json!({"nodes": [
            {"name": "a", "state": "ALIVE"},
            {"name": "b", "state": "DOWN"},
            {"name": "c", "state": "SUSPECTED", "tags": {"k": "v"}},
            {"name": "d", "state": "LEAVING"},
            {"name": "e", "state": "INIT"},
        ]});
        let names = |filter: &[StateFilter]| -> Vec<String> {
            filtered_nodes(&status, filter)
                .expect("nodes")
                .iter()
                .map(|n| n["name"].as_str().expect("name").to_string())
                .collect()
        };
        assert_eq!(names(&[]), ["a", "b", "c", "d", "e"]);
        assert_eq!(names(&[StateFilter::Down]), ["b"]);
        assert_eq!(
            names(&[StateFilter::Alive, StateFilter::Suspected]),
            ["a", "c"]
        );
        assert_eq!(names(&[StateFilter::Leaving]), ["d"]);
        // Entries pass through untouched (tags included) for --json.
        let kept = filtered_nodes(&status, &[StateFilter::Suspected]).expect("nodes");
        assert_eq!(kept[0]["tags"]["k"], "v");
    }

    #[test]
    fn a_status_without_nodes_is_a_bad_answer() {
        let err = filtered_nodes(&json!({"node_name": "x"}), &[]).expect_err("no nodes");
        assert!(err.to_string().contains("\"nodes\""), "{err}");
    }

    #[test]
    fn api_nodes_decode_into_rows() {
        let node = json!({"name":"node1","address":"127.0.0.11:39527","status":"1","version":2,
            "state":"ALIVE","incarnation":2,"region":"","zone":"z","tags":{},"since_ms":5120});
        let rows: Vec<Member> = decode("/ha/status", json!([node])).expect("decodes");
        assert_eq!(rows[0].incarnation, 2);
        assert_eq!(rows[0].zone, "z");
        let err = decode::<Vec<Member>>("/ha/status", json!([{"name": "x"}])).expect_err("bad");
        assert!(err.to_string().contains("/ha/status"), "{err}");
    }
}
