//! Timing profiles for `meshd agent --profile`: the SWIM knobs of HashiCorp memberlist's
//! `DefaultLANConfig`, `DefaultWANConfig` and `DefaultLocalConfig`, so an operator picks the
//! network it runs on and then overrides single knobs with their own flags.

use std::time::Duration;

use clap::ValueEnum;

use crate::runtime::quic::EXCHANGE_TIMEOUT;
use crate::swim;

/// Bound on one WAN push-pull exchange: a QUIC handshake and a request/response across links
/// whose round trip may approach the 3 s probe timeout (memberlist's WAN TCPTimeout is 30 s).
const WAN_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A named set of protocol timings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// One data centre (memberlist's DefaultLANConfig): probe every 1 s, 500 ms timeout.
    #[default]
    Lan,
    /// Links between regions (DefaultWANConfig): probe every 5 s, 3 s timeout, slower suspicion
    /// and fewer, larger gossip rounds.
    Wan,
    /// One host or loopback (DefaultLocalConfig): 200 ms timeout, faster suspicion and gossip,
    /// fewer retransmits and indirect checks.
    Local,
}

impl Profile {
    /// The protocol knobs of this profile; knobs memberlist does not vary keep their defaults.
    pub fn swim(self) -> swim::Config {
        let lan = swim::Config::default();
        match self {
            Profile::Lan => lan,
            Profile::Wan => swim::Config {
                probe_interval: Duration::from_secs(5),
                probe_timeout: Duration::from_secs(3),
                suspicion_mult: 6,
                gossip_interval: Duration::from_millis(500),
                gossip_nodes: 4,
                gossip_to_the_dead: Duration::from_secs(60),
                push_pull_interval: Duration::from_secs(60),
                ..lan
            },
            Profile::Local => swim::Config {
                probe_interval: Duration::from_secs(1),
                probe_timeout: Duration::from_millis(200),
                indirect_checks: 1,
                suspicion_mult: 3,
                gossip_interval: Duration::from_millis(100),
                gossip_to_the_dead: Duration::from_secs(15),
                retransmit_mult: 2,
                push_pull_interval: Duration::from_secs(15),
                ..lan
            },
        }
    }

    /// Bound on one push-pull exchange. LAN and local keep the 3 s default: loopback is fast,
    /// but a host shared by many agents may not be, so memberlist's 1 s local value would
    /// turn load into failed exchanges.
    pub fn exchange_timeout(self) -> Duration {
        match self {
            Profile::Lan | Profile::Local => EXCHANGE_TIMEOUT,
            Profile::Wan => WAN_EXCHANGE_TIMEOUT,
        }
    }

    /// The name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Lan => "lan",
            Profile::Wan => "wan",
            Profile::Local => "local",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_is_the_default_config() {
        assert_eq!(Profile::default(), Profile::Lan);
        assert_eq!(Profile::Lan.swim(), swim::Config::default());
        assert_eq!(Profile::Lan.exchange_timeout(), EXCHANGE_TIMEOUT);
    }

    /// The values of memberlist's config.go, knob by knob (probe interval, probe timeout,
    /// indirect checks, suspicion mult, gossip interval, gossip nodes, gossip to the dead,
    /// retransmit mult, push-pull interval).
    #[test]
    fn profiles_match_memberlist() {
        let ms = Duration::from_millis;
        let table: [(Profile, [u64; 9]); 3] = [
            (Profile::Lan, [1000, 500, 3, 4, 200, 3, 30_000, 4, 30_000]),
            (Profile::Wan, [5000, 3000, 3, 6, 500, 4, 60_000, 4, 60_000]),
            (Profile::Local, [1000, 200, 1, 3, 100, 3, 15_000, 2, 15_000]),
        ];
        for (profile, want) in table {
            let c = profile.swim();
            let got = [
                c.probe_interval.as_millis() as u64,
                c.probe_timeout.as_millis() as u64,
                c.indirect_checks as u64,
                u64::from(c.suspicion_mult),
                c.gossip_interval.as_millis() as u64,
                c.gossip_nodes as u64,
                c.gossip_to_the_dead.as_millis() as u64,
                u64::from(c.retransmit_mult),
                c.push_pull_interval.as_millis() as u64,
            ];
            assert_eq!(got, want, "{profile:?}");
            // What memberlist does not vary stays at our defaults.
            let lan = swim::Config::default();
            assert_eq!(c.suspicion_max_timeout_mult, lan.suspicion_max_timeout_mult);
            assert_eq!(c.retention, lan.retention);
            assert_eq!(c.max_datagram_size, lan.max_datagram_size);
            assert!(c.probe_timeout < c.probe_interval, "{profile:?}");
            assert!(ms(1) <= c.gossip_interval);
        }
        assert_eq!(Profile::Wan.exchange_timeout(), WAN_EXCHANGE_TIMEOUT);
    }

    #[test]
    fn names_round_trip_through_clap() {
        for profile in [Profile::Lan, Profile::Wan, Profile::Local] {
            assert_eq!(Profile::from_str(profile.name(), false), Ok(profile));
        }
    }
}
