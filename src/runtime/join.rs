//! Joining through seeds: a round tries every resolved seed address in turn until one answers a
//! push-pull; a failed round backs off (200 ms doubling to 5 s) and the next one starts, forever,
//! until this node is in a cluster.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quinn::Endpoint;

use super::quic::{self, Dial};
use super::seeds::{self, Backoff, Seed};

/// Bound on one join attempt with one seed address. Shorter than a periodic exchange so a dead
/// seed does not hold up the next one, yet long enough for one lost QUIC Initial (~1 s PTO).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where joining stands.
#[derive(Debug)]
pub enum JoinState {
    /// Joined, started alone, or leaving: no more rounds.
    Done,
    /// The next round starts at this instant.
    WaitUntil(Instant, Backoff),
    /// A round is running.
    InFlight(Backoff),
}

impl JoinState {
    /// A first round due at once.
    pub fn start(now: Instant) -> Self {
        JoinState::WaitUntil(now, Backoff::default())
    }

    /// When the driver must wake to start the next round, if one is waiting.
    pub fn wake_at(&self) -> Option<Instant> {
        match self {
            JoinState::WaitUntil(at, _) => Some(*at),
            _ => None,
        }
    }

    /// True while a round is running.
    pub fn in_flight(&self) -> bool {
        matches!(self, JoinState::InFlight(_))
    }
}

/// Outcome of one round: the seed that answered and its reply, or why none did.
pub type RoundResult = Result<(SocketAddr, Vec<u8>), RoundFailure>;

/// Why a round did not join.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundFailure {
    /// Every address tried (our own excluded), in order.
    pub tried: Vec<SocketAddr>,
    /// The seeds resolved, but only to this node's own address: there is nobody to join, as
    /// for a single-replica StatefulSet whose headless Service lists just itself.
    pub only_self: bool,
    /// Addresses that answered but refused the TLS handshake: they hold none of our keys or
    /// run under another cluster label (or are no meshd).
    pub refused: Vec<SocketAddr>,
}

impl From<Vec<SocketAddr>> for RoundFailure {
    fn from(tried: Vec<SocketAddr>) -> Self {
        RoundFailure {
            tried,
            ..RoundFailure::default()
        }
    }
}

/// Resolves the seeds (skipping `own`) and tries each address in order until one answers.
pub async fn round(
    endpoint: &Endpoint,
    dial: &Dial,
    seeds: &[Seed],
    own: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> RoundResult {
    let resolved = seeds::resolve_all(seeds).await;
    let addrs: Vec<SocketAddr> = resolved.iter().copied().filter(|a| *a != own).collect();
    if addrs.is_empty() && !resolved.is_empty() {
        return Err(RoundFailure {
            tried: addrs,
            only_self: true,
            refused: Vec::new(),
        });
    }
    let mut refused = Vec::new();
    for addr in &addrs {
        match quic::exchange(endpoint, dial, *addr, payload, timeout).await {
            Ok(reply) => return Ok((*addr, reply)),
            Err(err) => {
                if err.is_handshake_refusal() {
                    refused.push(*addr);
                }
                tracing::debug!(seed = %addr, error = %err, "seed did not answer");
            }
        }
    }
    Err(RoundFailure {
        tried: addrs,
        only_self: false,
        refused,
    })
}

/// The line logged once when seeds answered but none could be authenticated.
pub fn refused_line(refused: &[SocketAddr]) -> String {
    let list: Vec<String> = refused.iter().map(ToString::to_string).collect();
    format!(
        "joining: seeds {} answered, but nothing they sent could be opened with this node's \
         keys (likely an --encrypt-key, keyring or --cluster-label mismatch); still retrying",
        list.join(", ")
    )
}

/// The line logged when the seeds name only this node and it starts alone.
pub const ONLY_SELF_LINE: &str =
    "seeds resolve only to this node: starting as a cluster of one; will keep re-resolving seeds";

/// The one progress line logged per failed round.
pub fn progress_line(tried: &[SocketAddr], seeds: &[Seed], delay: Duration) -> String {
    let what = if tried.is_empty() {
        let list: Vec<String> = seeds.iter().map(ToString::to_string).collect();
        format!("no seed resolved from {}", list.join(", "))
    } else {
        let list: Vec<String> = tried.iter().map(ToString::to_string).collect();
        format!("tried {}", list.join(", "))
    };
    format!("joining: no seed answered yet ({what}), retrying in {delay:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_names_what_was_tried_and_the_delay() {
        let tried: Vec<SocketAddr> = vec!["127.0.0.1:39527".parse().expect("addr")];
        let seeds = vec![Seed {
            host: "seed.local".into(),
            port: 39527,
        }];
        assert_eq!(
            progress_line(&tried, &seeds, Duration::from_millis(800)),
            "joining: no seed answered yet (tried 127.0.0.1:39527), retrying in 800ms"
        );
        assert_eq!(
            progress_line(&[], &seeds, Duration::from_secs(5)),
            "joining: no seed answered yet (no seed resolved from seed.local:39527), retrying in 5s"
        );
    }

    #[test]
    fn only_a_waiting_state_has_a_wake_time() {
        let now = Instant::now();
        assert_eq!(JoinState::start(now).wake_at(), Some(now));
        assert_eq!(JoinState::Done.wake_at(), None);
        assert!(JoinState::InFlight(Backoff::default()).in_flight());
    }
}
