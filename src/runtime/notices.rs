//! The log lines of the core's seeding [`Notice`]s: how a joining node tells its operator what
//! it tried, why it waits, and when it got in.

use std::net::SocketAddr;
use std::time::Duration;

use super::seeds::Seed;
use crate::swim::Notice;

/// Logs one notice; `seeds` are the configured seed entries (named when none resolved) and
/// `refreshing` says whether seeds are re-resolved once joined.
pub fn log(notice: &Notice, seeds: &[Seed], refreshing: bool) {
    match notice {
        Notice::Joined { seed } => tracing::info!(%seed, "joined cluster"),
        Notice::JoinedByPeer => tracing::info!("joined cluster (a peer reached us first)"),
        Notice::JoinRoundFailed { tried, retry_in } => {
            tracing::info!("{}", progress_line(tried, seeds, *retry_in));
        }
        Notice::SeedsRefusedOurKeys { refused } => tracing::warn!("{}", refused_line(refused)),
        Notice::OnlySelf if refreshing => tracing::info!("{ONLY_SELF_LINE}"),
        Notice::OnlySelf => {
            tracing::info!("seeds resolve only to this node: starting as a cluster of one");
        }
        Notice::SeedAnswerUnusable { seed } => {
            tracing::warn!(%seed, "seed answered with an unusable payload; trying the next one");
        }
        Notice::RefreshMerged { peer, changed } => tracing::info!(
            %peer,
            members_new_or_changed = changed,
            "seed refresh: merged with an address no live member had"
        ),
    }
}

/// The line logged once when seeds answered but none could be authenticated.
fn refused_line(refused: &[SocketAddr]) -> String {
    format!(
        "joining: seeds {} answered, but nothing they sent could be opened with this node's \
         keys (likely an --encrypt-key, keyring or --cluster-label mismatch); still retrying",
        comma_list(refused)
    )
}

/// The line logged when the seeds name only this node and it starts alone.
const ONLY_SELF_LINE: &str =
    "seeds resolve only to this node: starting as a cluster of one; will keep re-resolving seeds";

/// The one progress line logged per failed round.
fn progress_line(tried: &[SocketAddr], seeds: &[Seed], delay: Duration) -> String {
    let what = if tried.is_empty() {
        format!("no seed resolved from {}", comma_list(seeds))
    } else {
        format!("tried {}", comma_list(tried))
    };
    format!("joining: no seed answered yet ({what}), retrying in {delay:?}")
}

/// Items as one comma-separated list.
pub fn comma_list<T: ToString>(items: &[T]) -> String {
    let list: Vec<String> = items.iter().map(ToString::to_string).collect();
    list.join(", ")
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
    fn refused_line_names_the_seeds_and_the_likely_cause() {
        let refused: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().expect("addr"),
            "127.0.0.2:2".parse().expect("addr"),
        ];
        let line = refused_line(&refused);
        assert!(
            line.contains("seeds 127.0.0.1:1, 127.0.0.2:2 answered"),
            "{line}"
        );
        assert!(line.contains("--cluster-label mismatch"), "{line}");
    }
}
