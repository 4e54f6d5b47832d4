//! Protocol knobs. Timing defaults follow HashiCorp memberlist's LAN profile; the confirmed
//! suspicion floor and the announce fanout are ours.

use std::time::{Duration, Instant};

/// Every timing and sizing knob of the SWIM core, with memberlist-LAN defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// How often this node probes one member. Lower detects faster but costs more packets.
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others to probe. Must be < probe_interval.
    pub probe_timeout: Duration,
    /// How many members are asked to probe indirectly (k in SWIM). 0 disables indirect probes.
    pub indirect_checks: usize,
    /// Base of the suspicion timeout: suspicion_mult × max(1, log10 N) × probe_interval
    /// (memberlist's floor). Here it only sets the ceiling (below).
    pub suspicion_mult: u32,
    /// Ceiling = suspicion_max_timeout_mult × base: the timeout of a suspicion nobody confirms.
    /// Independent witnesses (other accusers, the nacks of our own indirect probers) shrink it.
    pub suspicion_max_timeout_mult: u32,
    /// Floor = suspicion_confirmed_mult × max(1, log10 N) × probe_interval: the timeout once
    /// `indirect_checks` independent witnesses agree (1.5 s at N = 100 with the default 0.75).
    /// Lower detects a crash sooner; a live suspect must refute within it, so keep it above a
    /// few round trips plus the longest stall a healthy node may have. Clamped to the ceiling.
    pub suspicion_confirmed_mult: f64,
    /// How often piggyback-only gossip datagrams go out.
    pub gossip_interval: Duration,
    /// How many random members each gossip tick sends to.
    pub gossip_nodes: usize,
    /// How long DOWN and LEAVING members still receive gossip, so a node wrongly held DOWN or
    /// LEAVING learns of it and refutes.
    pub gossip_to_the_dead: Duration,
    /// Each update is sent at most retransmit_mult × ceil(log10(N + 1)) times.
    pub retransmit_mult: u32,
    /// Base interval of full-state exchanges with one random member (scaled up with N).
    pub push_pull_interval: Duration,
    /// How long DOWN and LEAVING members stay listed before they are reaped.
    pub retention: Duration,
    /// Largest datagram the core builds, header included. Stays under a 1500-byte MTU.
    pub max_datagram_size: usize,
    /// Highest Lifeguard local-health score; probe interval and timeout scale by (score + 1).
    pub awareness_max_multiplier: u32,
    /// Urgent facts (this node's ALIVE after a join or a refuted DOWN, its LEAVING, a DOWN
    /// verdict it declares) go at once, alone in a small datagram, to this many random members
    /// (all of them in smaller clusters), then ride normal gossip. Closes the tail of nodes that
    /// gossip misses; costs one burst of this many datagrams per event, none in steady state.
    /// While it covers the cluster (N ≤ fanout + 1), receivers do not re-gossip a joiner's
    /// announcement of itself. Bounded so a large cluster stays sane: at N = 10,000 a join is
    /// 256 small datagrams from the joiner. 0 leaves urgent facts to gossip alone.
    pub announce_fanout: usize,
    /// Most members the table holds, this node and DOWN or LEAVING ones included; facts about
    /// further new members are refused (and counted) until reaping makes room. Bounds memory
    /// and the probe round whatever a bug or an outsider sends.
    pub max_members: usize,
    /// Once joined through seeds, how often they are resolved again; the few resolved addresses
    /// that no ALIVE or SUSPECTED member has then get a push-pull, so clusters that formed apart
    /// merge and members back at new addresses are found. Zero disables it. As often as the
    /// base push-pull interval by default: a split heals about as fast as anti-entropy repairs
    /// a missed update, at the cost of one DNS lookup.
    pub seed_refresh_interval: Duration,
    /// Longest the core waits for one seed address to answer a join attempt (or a seed refresh
    /// exchange) before it moves on. Shorter than a periodic exchange so a dead seed does not
    /// hold up the next one, yet long enough for one lost QUIC Initial (~1 s PTO).
    pub seed_attempt_timeout: Duration,
    /// How the member probed each interval is picked.
    pub probe_schedule: ProbeSchedule,
}

/// How a node picks the member it probes each interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProbeSchedule {
    /// SWIM's shuffled round-robin, each node its own: the wait for the first probe of a dead
    /// member is close to exponential (mean one interval, over 2 s in about 1 crash in 8).
    #[default]
    Shuffled,
    /// The member k places after this node in the name order of the probeable members, k the
    /// wall-clock slot (unix time / probe interval). Nodes whose clocks agree within a fraction
    /// of an interval and whose views agree probe a permutation of the members each interval,
    /// so a dead member is probed within two intervals; with clocks further apart the waits
    /// are as random as [`ProbeSchedule::Shuffled`]'s. Each node still probes every member once
    /// per round.
    Aligned {
        /// An instant of the node's monotonic clock...
        at: Instant,
        /// ...and the wall-clock time (since the Unix epoch) at that instant.
        unix: Duration,
    },
}

impl ProbeSchedule {
    /// The wall-clock slot of `now` for `interval` on the aligned schedule; `None` on the
    /// shuffled one.
    pub fn slot(&self, now: Instant, interval: Duration) -> Option<u64> {
        let ProbeSchedule::Aligned { at, unix } = *self else {
            return None;
        };
        let wall = if now >= at {
            unix.saturating_add(now - at)
        } else {
            unix.saturating_sub(at - now)
        };
        let slot = wall.as_nanos() / interval.as_nanos().max(1);
        Some(u64::try_from(slot).unwrap_or(u64::MAX))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            suspicion_confirmed_mult: 0.75,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            gossip_to_the_dead: Duration::from_secs(30),
            retransmit_mult: 4,
            push_pull_interval: Duration::from_secs(30),
            retention: Duration::from_secs(600),
            max_datagram_size: 1400,
            awareness_max_multiplier: 8,
            announce_fanout: 256,
            max_members: 10_000,
            seed_refresh_interval: Duration::from_secs(30),
            seed_attempt_timeout: Duration::from_secs(2),
            probe_schedule: ProbeSchedule::Shuffled,
        }
    }
}
