//! Seed peers from `--mesh-peer-urls`: parsing, DNS resolution and the join backoff.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// First wait between join rounds when no seed answered.
pub const JOIN_BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest wait between join rounds; a joiner keeps trying at this pace forever.
pub const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One `host:port` seed entry; the host may be an IP or a DNS name resolving to many addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// IP literal (without brackets) or DNS name.
    pub host: String,
    /// SWIM/QUIC port, 1..=65535.
    pub port: u16,
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Seed {
    type Err = String;

    /// Parses `host:port`, `1.2.3.4:port` or `[v6]:port`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!("peer {s:?} has no port; expected host:port"));
        };
        let host = match host.strip_prefix('[') {
            Some(rest) => rest
                .strip_suffix(']')
                .ok_or_else(|| format!("peer {s:?} has an unclosed '['"))?,
            None if host.contains(':') => {
                return Err(format!("peer {s:?}: write IPv6 addresses as [addr]:port"))
            }
            None => host,
        };
        if host.is_empty() {
            return Err(format!("peer {s:?} has an empty host; expected host:port"));
        }
        let port = match port.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "peer {s:?} has an invalid port {port:?}; expected 1-65535"
                ))
            }
            Ok(port) => port,
        };
        Ok(Seed {
            host: host.to_string(),
            port,
        })
    }
}

/// Resolves every seed, drops `own` (our advertise address) and duplicates, keeps order.
/// Unresolvable entries are logged at debug and skipped: they may appear in DNS later.
pub async fn resolve(seeds: &[Seed], own: SocketAddr) -> Vec<SocketAddr> {
    let mut out = resolve_all(seeds).await;
    out.retain(|addr| *addr != own);
    out
}

/// Resolves every seed, keeping our own address if it is listed; drops duplicates, keeps order.
pub async fn resolve_all(seeds: &[Seed]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for seed in seeds {
        match tokio::net::lookup_host((seed.host.as_str(), seed.port)).await {
            Ok(addrs) => {
                for addr in addrs {
                    if !out.contains(&addr) {
                        out.push(addr);
                    }
                }
            }
            Err(err) => tracing::debug!(%seed, error = %err, "seed does not resolve (yet)"),
        }
    }
    out
}

/// Doubling backoff between join rounds, capped at [`JOIN_BACKOFF_MAX`], each wait drawn at
/// random from the upper half of its step. The jitter matters when many nodes start at once:
/// a seed serves at most [`MAX_CONCURRENT_SERVES`](super::quic::MAX_CONCURRENT_SERVES)
/// exchanges and refuses the rest, and refused joiners that all retried after the same delay
/// would arrive together again, round after round.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    rng: StdRng,
}

impl Default for Backoff {
    fn default() -> Self {
        // Distinct per process (agents started together share the clock, not the pid).
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Backoff::with_seed(u64::from(std::process::id()) << 32 | u64::from(nanos))
    }
}

impl Backoff {
    /// A backoff whose jitter comes from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Backoff {
            next: JOIN_BACKOFF_START,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The wait before the next round, in `[step / 2, step]`; each call doubles the step up
    /// to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(JOIN_BACKOFF_MAX);
        let half = step / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.rng.random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_seeds() {
        let seed: Seed = "10.0.0.1:39527".parse().expect("ipv4");
        assert_eq!(
            seed,
            Seed {
                host: "10.0.0.1".into(),
                port: 39527
            }
        );
        let seed: Seed = "meshd-0.meshd.svc:7000".parse().expect("dns");
        assert_eq!(seed.host, "meshd-0.meshd.svc");
        let seed: Seed = "[::1]:39527".parse().expect("ipv6");
        assert_eq!(seed.host, "::1");
        assert_eq!(seed.to_string(), "[::1]:39527");
        assert_eq!(
            " a:1 ".parse::<Seed>().map(|s| s.to_string()),
            Ok("a:1".to_string())
        );
    }

    #[test]
    fn rejects_bad_seeds() {
        for bad in [
            "host",
            "host:",
            ":39527",
            "host:0",
            "host:70000",
            "host:abc",
            "::1:5",
            "[::1:5",
        ] {
            assert!(bad.parse::<Seed>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let steps = [200, 400, 800, 1600, 3200, 5000, 5000].map(Duration::from_millis);
        let mut seen = Vec::new();
        for seed in 0..20 {
            let mut backoff = Backoff::with_seed(seed);
            let delays: Vec<Duration> = steps.iter().map(|_| backoff.next_delay()).collect();
            for (delay, step) in delays.iter().zip(steps) {
                assert!(
                    *delay >= step / 2 && *delay <= step,
                    "{delay:?} outside [{:?}, {step:?}]",
                    step / 2
                );
            }
            seen.push(delays[0]);
        }
        // Joiners refused together do not all come back together.
        seen.sort();
        seen.dedup();
        assert!(seen.len() > 10, "first delays {seen:?}");
    }

    #[tokio::test]
    async fn resolve_skips_own_address_and_duplicates() {
        let own: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let seeds: Vec<Seed> = [
            "127.0.0.1:4000",
            "127.0.0.1:4001",
            "127.0.0.1:4001",
            "localhost:4002",
        ]
        .iter()
        .map(|s| s.parse().expect("seed"))
        .collect();
        let addrs = resolve(&seeds, own).await;
        assert!(!addrs.contains(&own));
        assert_eq!(addrs.iter().filter(|a| a.port() == 4001).count(), 1);
        assert!(
            addrs.iter().any(|a| a.port() == 4002),
            "localhost resolves: {addrs:?}"
        );
    }
}
