//! Seed peers from `--mesh-peer-urls`: parsing and DNS resolution. When to resolve them and
//! whom to contact is the core's business (`swim::seeding`).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// Longest a seed lookup may take: the system resolver's own retries can take far longer when
/// DNS is unreachable, and joining must go on (a lookup that times out resolved nothing).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Resolves every seed (our own address stays if it is listed: the core tells it apart); drops
/// duplicates, keeps order. Unresolvable entries are logged at debug and skipped: they may
/// appear in DNS later.
pub async fn resolve(seeds: &[Seed]) -> Vec<SocketAddr> {
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

    #[tokio::test]
    async fn resolve_keeps_order_and_drops_duplicates() {
        let seeds: Vec<Seed> = [
            "127.0.0.1:4000",
            "127.0.0.1:4001",
            "127.0.0.1:4001",
            "localhost:4002",
        ]
        .iter()
        .map(|s| s.parse().expect("seed"))
        .collect();
        let addrs = resolve(&seeds).await;
        assert_eq!(
            addrs[..2],
            ["127.0.0.1:4000", "127.0.0.1:4001"].map(|a| a.parse().expect("addr"))
        );
        assert_eq!(addrs.iter().filter(|a| a.port() == 4001).count(), 1);
        assert!(
            addrs.iter().any(|a| a.port() == 4002),
            "localhost resolves: {addrs:?}"
        );
    }
}
