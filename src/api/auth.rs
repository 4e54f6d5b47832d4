//! Who may change this node. Mutating calls (leave, tags, keyring commands) need a loopback
//! caller or the bearer token of `--api-token-file`; without a token they are loopback-only.
//! Read-only calls stay open: they are what `curl` and Prometheus use.
//!
//! Mutating HTTP requests must also say they send JSON (`Content-Type: application/json`): a
//! browser sends that cross-site only after a CORS preflight this server never answers, so a
//! web page cannot make a visitor's browser shut down or rekey a meshd it can reach.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// Shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The access policy for mutating calls.
#[derive(Clone, Default)]
pub struct Access {
    token: Option<Arc<str>>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.token.as_ref().map(|_| "<redacted>");
        f.debug_struct("Access").field("token", &token).finish()
    }
}

/// Why a mutating call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Not from loopback, and this agent has no token: mutations are loopback-only.
    RemoteWithoutToken,
    /// Not from loopback, and no (or the wrong) bearer token.
    BadToken,
}

impl Denied {
    /// The error message a caller sees.
    pub fn message(self) -> &'static str {
        match self {
            Denied::RemoteWithoutToken => {
                "this call changes the node and is accepted only from loopback (start the agent \
                 with --api-token-file to allow other callers with a bearer token)"
            }
            Denied::BadToken => {
                "this call changes the node: send the agent's token as `Authorization: Bearer \
                 <token>` (or call from loopback)"
            }
        }
    }
}

impl Access {
    /// Mutations only from loopback.
    pub fn loopback_only() -> Self {
        Access { token: None }
    }

    /// Mutations from loopback, or from anyone presenting `token`.
    pub fn with_token(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "the API token is {} bytes; use at least {MIN_TOKEN_BYTES} (e.g. `meshd keygen`)",
                token.len()
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the API token must not contain spaces or control characters".into());
        }
        Ok(Access {
            token: Some(token.into()),
        })
    }

    /// The policy of `--api-token-file` (its first line is the token).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --api-token-file {}: {e}", path.display()))?;
        let token = text.lines().next().unwrap_or("");
        Access::with_token(token).map_err(|e| format!("--api-token-file {}: {e}", path.display()))
    }

    /// Whether a caller at `peer` (unknown: treated as remote) presenting `authorization` (the
    /// header's value) may make a mutating call.
    pub fn check(
        &self,
        peer: Option<SocketAddr>,
        authorization: Option<&str>,
    ) -> Result<(), Denied> {
        if peer.is_some_and(|p| p.ip().is_loopback()) {
            return Ok(());
        }
        let Some(token) = &self.token else {
            return Err(Denied::RemoteWithoutToken);
        };
        let presented = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if constant_time_eq(presented.as_bytes(), token.as_bytes()) {
            Ok(())
        } else {
            Err(Denied::BadToken)
        }
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was
/// right (only whether the lengths differ).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware in front of every mutating HTTP route: the access policy, then the JSON
/// content type.
pub async fn mutating(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(denied) = state.access.check(Some(peer), authorization) {
        tracing::warn!(%peer, path = %request.uri().path(), "refused a mutating API call");
        state.server.count_denied();
        let status = match denied {
            Denied::RemoteWithoutToken => StatusCode::FORBIDDEN,
            Denied::BadToken => StatusCode::UNAUTHORIZED,
        };
        return ApiError::new(status, denied.message()).into_response();
    }
    // A browser sends a cross-site POST without asking first (a "simple" request) unless its
    // content type is JSON; PUT and DELETE always need a CORS preflight this server never
    // answers. So every mutating POST must declare JSON.
    if request.method() == Method::POST && !declares_json(headers) {
        state.server.count_not_json();
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send this POST with `Content-Type: application/json` (a guard against cross-site \
             requests from browsers)",
        )
        .into_response();
    }
    next.run(request).await
}

/// True when the request says its body is JSON.
fn declares_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().expect("literal address"))
    }

    #[test]
    fn access_table() {
        let token = "0123456789abcdef-token";
        let with = Access::with_token(token).expect("token");
        let without = Access::loopback_only();
        let bearer = format!("Bearer {token}");
        // (policy, caller, Authorization header, outcome)
        type Case<'a> = (
            &'a Access,
            Option<SocketAddr>,
            Option<&'a str>,
            Result<(), Denied>,
        );
        let cases: &[Case] = &[
            (&without, addr("127.0.0.1:1"), None, Ok(())),
            (&without, addr("[::1]:1"), None, Ok(())),
            (
                &without,
                addr("10.0.0.1:1"),
                Some(&bearer),
                Err(Denied::RemoteWithoutToken),
            ),
            (&without, None, None, Err(Denied::RemoteWithoutToken)),
            (&with, addr("10.0.0.1:1"), Some(&bearer), Ok(())),
            (&with, addr("10.0.0.1:1"), None, Err(Denied::BadToken)),
            (
                &with,
                addr("10.0.0.1:1"),
                Some("Bearer wrong"),
                Err(Denied::BadToken),
            ),
            (
                &with,
                addr("10.0.0.1:1"),
                Some(token),
                Err(Denied::BadToken),
            ),
            (&with, addr("127.0.0.1:1"), Some("Bearer wrong"), Ok(())),
        ];
        for (access, peer, header, want) in cases {
            assert_eq!(access.check(*peer, *header), *want, "{peer:?} {header:?}");
        }
    }

    #[test]
    fn weak_tokens_are_refused_and_the_token_never_shows() {
        assert!(Access::with_token("short").is_err());
        assert!(Access::with_token("0123456789abcdef 0123").is_err());
        let access = Access::with_token("  0123456789abcdef\n").expect("trimmed");
        assert!(!format!("{access:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn only_json_content_types_pass() {
        let mut headers = HeaderMap::new();
        assert!(!declares_json(&headers));
        for (value, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().expect("header"));
            assert_eq!(declares_json(&headers), ok, "{value}");
        }
    }
}
