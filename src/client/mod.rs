//! Client subcommands (`meshd members`, `meshd leave`, `meshd info`): talk to a running agent's
//! HTTP API and print what it says.
//!
//! Each command is one file: it fetches JSON through [`Api`], turns it into plain rows or lines
//! with pure functions (unit-tested beside them), and prints. Every failure is a [`ClientError`]:
//! one `error: …` line on stderr and exit status 1, never a panic.

pub mod coordination;
pub mod info;
pub mod keys;
pub mod leave;
pub mod members;
pub mod monitor;
pub mod store;

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Default address of the agent's HTTP API (`meshd agent --host --port` defaults).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:39528";

/// Bound on each HTTP request: a local agent answers in milliseconds, so a slow answer means
/// something is wrong and the operator should hear about it rather than wait.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Exit status of a client command that failed (no agent, error answer, bad JSON).
const EXIT_FAILURE: u8 = 1;

/// Where the agent's HTTP API is, and how to be let in: shared by every client subcommand.
#[derive(Clone, Debug, Args)]
pub struct Target {
    /// Address of the agent's HTTP API, host:port (the agent's --host and --port)
    #[arg(long, env = "MESHD_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR,
          value_parser = parse_http_addr, global = true)]
    pub http_addr: String,
    /// File holding the agent's API token (its --api-token-file), for commands that change
    /// the node from another host; the token may also come from MESHD_API_TOKEN
    #[arg(long, env = "MESHD_API_TOKEN_FILE", global = true)]
    pub api_token_file: Option<std::path::PathBuf>,
}

impl Target {
    /// The client for this target, with the token from `--api-token-file` or
    /// `MESHD_API_TOKEN` if one is given.
    pub fn api(&self) -> Result<Api, ClientError> {
        self.api_with_timeout(REQUEST_TIMEOUT)
    }

    /// Like [`Target::api`], with requests that may take up to `timeout`.
    pub fn api_with_timeout(&self, timeout: Duration) -> Result<Api, ClientError> {
        let token = match &self.api_token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ClientError::Other(format!(
                        "cannot read --api-token-file {}: {e}",
                        path.display()
                    ))
                })?;
                Some(text.lines().next().unwrap_or("").trim().to_string())
            }
            None => std::env::var("MESHD_API_TOKEN")
                .ok()
                .map(|t| t.trim().to_string()),
        };
        let mut api = Api::with_timeout(&self.http_addr, timeout);
        api.token = token.filter(|t| !t.is_empty());
        Ok(api)
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so any key fits one path
/// segment.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Accepts `host:port`, `[v6]:port`, optionally written as `http://host:port/`; returns
/// `host:port`.
pub fn parse_http_addr(s: &str) -> Result<String, String> {
    let trimmed = s.trim();
    let bare = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    if bare.contains('/') || bare.starts_with("https://") {
        return Err(format!(
            "{s:?} is not host:port (the agent speaks plain HTTP)"
        ));
    }
    let Some((host, port)) = bare.rsplit_once(':') else {
        return Err(format!("{s:?} has no port; expected host:port"));
    };
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return Err(format!(
            "{s:?} is not host:port (write IPv6 as [addr]:port)"
        ));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{s:?} has an invalid port {port:?}")),
        Ok(_) => Ok(bare.to_string()),
    }
}

/// Why a client command failed; `Display` is the one line printed after `error: `.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Nothing answered at the address (refused, unreachable, timed out, unknown host).
    NoAgent {
        /// The `--http-addr` tried.
        addr: String,
    },
    /// The agent answered with a non-2xx code; `message` is its JSON `error`, or the body.
    Api {
        /// HTTP status code.
        code: u16,
        /// What the agent said.
        message: String,
    },
    /// The answer was not the JSON we expect.
    BadAnswer {
        /// The path asked.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Anything else (the command's own checks, e.g. a wait that ran out).
    Other(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoAgent { addr } => write!(
                f,
                "no meshd agent answers at {addr} (is it running? set --http-addr or MESHD_HTTP_ADDR)"
            ),
            ClientError::Api { code, message } => write!(f, "agent answered {code}: {message}"),
            ClientError::BadAnswer { path, reason } => {
                write!(f, "unexpected answer from the agent to {path}: {reason}")
            }
            ClientError::Other(message) => f.write_str(message),
        }
    }
}

/// A blocking HTTP client for one agent.
pub struct Api {
    addr: String,
    agent: ureq::Agent,
    /// Sent as `Authorization: Bearer` when set.
    token: Option<String>,
}

/// One answer: status code and parsed JSON body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status code.
    pub code: u16,
    /// Parsed body.
    pub body: Value,
}

impl Api {
    /// A client for the agent at `addr` (`host:port`), with [`REQUEST_TIMEOUT`] per request.
    pub fn new(addr: &str) -> Self {
        Api::with_timeout(addr, REQUEST_TIMEOUT)
    }

    /// A client for the agent at `addr` whose requests may take up to `timeout` (the agent
    /// answers a keyring command only once every member has answered or timed out).
    pub fn with_timeout(addr: &str, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // Error codes carry a JSON body we want to show, so they are answers, not errors.
            .http_status_as_error(false)
            .build()
            .into();
        Api {
            addr: addr.to_string(),
            agent,
            token: None,
        }
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// GETs `path`; any status code is returned with its JSON body.
    pub fn get(&self, path: &str) -> Result<Answer, ClientError> {
        let url = self.url(path);
        let mut request = self.agent.get(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.answer(path, request.call())
    }

    /// POSTs `body` as JSON to `path` (mutating calls need the JSON content type, and the
    /// token from another host); any status code is returned with its JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Answer, ClientError> {
        self.send_json(path, self.agent.post(&self.url(path)), body)
    }

    /// PUTs `body` as JSON to `path`; any status code is returned with its JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Result<Answer, ClientError> {
        self.send_json(path, self.agent.put(&self.url(path)), body)
    }

    /// Sends `body` as JSON with `request` (a POST or PUT to `path`), with the token if set.
    fn send_json(
        &self,
        path: &str,
        request: ureq::RequestBuilder<ureq::typestate::WithBody>,
        body: &Value,
    ) -> Result<Answer, ClientError> {
        let mut request = request.header("Content-Type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.answer(path, request.send(body.to_string()))
    }

    /// DELETEs `path`; any status code is returned with its JSON body.
    pub fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        let url = self.url(path);
        let mut request = self.agent.delete(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.answer(path, request.call())
    }

    /// GETs `path` as a stream of lines (Server-Sent Events) with no overall time limit;
    /// `on_line` gets each line until it returns false or the agent ends the stream.
    pub fn stream_lines(
        &self,
        path: &str,
        mut on_line: impl FnMut(&str) -> bool,
    ) -> Result<(), ClientError> {
        use std::io::BufRead;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let response = agent
            .get(&self.url(path))
            .call()
            .map_err(|e| self.transport_error(path, e))?;
        let code = response.status().as_u16();
        if !(200..300).contains(&code) {
            let mut response = response;
            let text = response.body_mut().read_to_string().unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Err(api_error(Answer { code, body }));
        }
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let line = line.map_err(|e| ClientError::Other(format!("stream ended: {e}")))?;
            if !on_line(&line) {
                break;
            }
        }
        Ok(())
    }

    /// GETs `path` as Server-Sent Events: `on_event` gets each event's name and data (one
    /// `data:` line each: the agent never splits one) until it returns false or the stream
    /// ends.
    pub fn stream_events(
        &self,
        path: &str,
        mut on_event: impl FnMut(&str, &str) -> bool,
    ) -> Result<(), ClientError> {
        let mut event = String::new();
        self.stream_lines(path, |line| {
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                return on_event(&event, data.trim());
            }
            true
        })
    }

    /// GETs `path`, requires a 2xx answer and decodes it as `T`.
    pub fn get_ok<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let answer = self.get(path)?;
        if !(200..300).contains(&answer.code) {
            return Err(api_error(answer));
        }
        decode(path, answer.body)
    }

    /// True if anything answers HTTP at the address at all.
    pub fn answers(&self) -> bool {
        !matches!(self.get("/ha/health"), Err(ClientError::NoAgent { .. }))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer(
        &self,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, ClientError> {
        let mut response = response.map_err(|e| self.transport_error(path, e))?;
        let code = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_error(path, e))?;
        let body = serde_json::from_str(&text).map_err(|e| {
            // A non-JSON error page (a proxy, another program on the port) is still an error
            // answer; say what it was.
            if (200..300).contains(&code) {
                ClientError::BadAnswer {
                    path: path.to_string(),
                    reason: format!("not JSON ({e})"),
                }
            } else {
                ClientError::Api {
                    code,
                    message: one_line(&text),
                }
            }
        })?;
        Ok(Answer { code, body })
    }

    fn transport_error(&self, path: &str, error: ureq::Error) -> ClientError {
        match error {
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Timeout(_) => ClientError::NoAgent {
                addr: self.addr.clone(),
            },
            other => ClientError::BadAnswer {
                path: path.to_string(),
                reason: one_line(&other.to_string()),
            },
        }
    }
}

/// Turns a non-2xx answer into an error carrying the API's `{"error": …}` message.
pub fn api_error(answer: Answer) -> ClientError {
    let message = match answer.body.get("error").and_then(Value::as_str) {
        Some(message) => message.to_string(),
        None => one_line(&answer.body.to_string()),
    };
    ClientError::Api {
        code: answer.code,
        message,
    }
}

/// Decodes a JSON body as `T`, naming the path on failure.
pub fn decode<T: DeserializeOwned>(path: &str, body: Value) -> Result<T, ClientError> {
    serde_json::from_value(body).map_err(|e| ClientError::BadAnswer {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// Collapses whitespace and cuts long text, so an error is always one readable line.
fn one_line(text: &str) -> String {
    const MAX: usize = 200;
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

/// Prints the outcome of a client command and picks the exit status.
pub fn finish(result: Result<(), ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Human-readable age from milliseconds: `0s`, `42s`, `5m12s`, `3h07m`, `2d04h`.
pub fn format_age(ms: u64) -> String {
    let secs = ms / 1000;
    let (mins, hours, days) = (secs / 60, secs / 3600, secs / 86_400);
    if secs < 60 {
        format!("{secs}s")
    } else if mins < 60 {
        format!("{mins}m{}s", secs % 60)
    } else if hours < 24 {
        format!("{hours}h{:02}m", mins % 60)
    } else {
        format!("{days}d{:02}h", hours % 24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_durations() {
        let cases = [
            (0, "0s"),
            (999, "0s"),
            (3_000, "3s"),
            (59_999, "59s"),
            (60_000, "1m0s"),
            (312_000, "5m12s"),
            (3_599_000, "59m59s"),
            (3_600_000, "1h00m"),
            (3 * 3_600_000 + 7 * 60_000 + 5_000, "3h07m"),
            (86_400_000, "1d00h"),
            (2 * 86_400_000 + 4 * 3_600_000, "2d04h"),
            (u64::MAX, "213503982334d14h"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_age(ms), want, "{ms} ms");
        }
    }

    #[test]
    fn http_addrs_are_host_port() {
        for (input, want) in [
            ("127.0.0.1:39528", "127.0.0.1:39528"),
            ("localhost:8080", "localhost:8080"),
            ("[::1]:39528", "[::1]:39528"),
            ("http://10.0.0.1:39528/", "10.0.0.1:39528"),
            (" 127.0.0.1:1 ", "127.0.0.1:1"),
        ] {
            assert_eq!(parse_http_addr(input).as_deref(), Ok(want), "{input}");
        }
        for bad in [
            "127.0.0.1",
            ":39528",
            "host:0",
            "host:99999",
            "host:x",
            "::1:39528",
            "https://h:1",
            "h:1/ha/status",
        ] {
            assert!(parse_http_addr(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn errors_are_one_line_and_name_the_fix() {
        let no_agent = ClientError::NoAgent {
            addr: "127.0.0.1:39528".into(),
        };
        assert_eq!(
            no_agent.to_string(),
            "no meshd agent answers at 127.0.0.1:39528 (is it running? set --http-addr or MESHD_HTTP_ADDR)"
        );
        let api = api_error(Answer {
            code: 403,
            body: serde_json::json!({"error": "shutdown is only accepted from loopback"}),
        });
        assert_eq!(
            api.to_string(),
            "agent answered 403: shutdown is only accepted from loopback"
        );
        let odd = api_error(Answer {
            code: 500,
            body: serde_json::json!({"detail": "x"}),
        });
        assert_eq!(odd.to_string(), r#"agent answered 500: {"detail":"x"}"#);
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert_eq!(one_line(&"x".repeat(300)).chars().count(), 201);
    }

    #[test]
    fn nothing_listening_is_no_agent() {
        // Port 1 on loopback: nothing listens there in any sane test environment.
        let api = Api::new("127.0.0.1:1");
        assert_eq!(
            api.get("/ha/status").map(|a| a.code),
            Err(ClientError::NoAgent {
                addr: "127.0.0.1:1".into()
            })
        );
        assert!(!api.answers());
    }
}
