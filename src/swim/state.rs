//! Member facts and the precedence rule that decides which of two facts about a member wins.

use std::cmp::Ordering;
use std::net::SocketAddr;

use super::{MemberState, NodeMeta};

/// One validated membership fact, decoded from the wire or made locally.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// Member name (identity).
    pub name: String,
    /// Its SWIM/QUIC address.
    pub addr: SocketAddr,
    /// Incarnation the fact is about.
    pub incarnation: u64,
    /// State claimed; never `Init` (the codec rejects it).
    pub state: MemberState,
    /// Metadata; only meaningful on ALIVE facts.
    pub meta: NodeMeta,
    /// For SUSPECTED: who raised the suspicion. Empty otherwise.
    pub accuser: String,
}

/// How an incoming fact compares with the one we hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precedence {
    /// The incoming fact supersedes ours: apply it.
    Newer,
    /// Same incarnation and state: nothing changes (a suspicion may gain a confirmation).
    Same,
    /// Ours wins: ignore it.
    Older,
}

/// Rank at equal incarnation; the higher rank wins.
fn rank(state: MemberState) -> u8 {
    match state {
        MemberState::Init => 0,
        MemberState::Alive => 1,
        MemberState::Suspected => 2,
        MemberState::Down => 3,
        MemberState::Leaving => 4,
    }
}

/// Compares the `(incarnation, state)` we hold with an incoming one.
pub fn precedence(current: (u64, MemberState), incoming: (u64, MemberState)) -> Precedence {
    let (cur_inc, cur_state) = current;
    let (inc, state) = incoming;
    if cur_state == MemberState::Leaving && inc > cur_inc {
        // LEAVING is final: only a new life (ALIVE) or a later leave replaces it.
        return match state {
            MemberState::Alive | MemberState::Leaving => Precedence::Newer,
            _ => Precedence::Older,
        };
    }
    match inc.cmp(&cur_inc) {
        Ordering::Greater => Precedence::Newer,
        Ordering::Less => Precedence::Older,
        Ordering::Equal => match rank(state).cmp(&rank(cur_state)) {
            Ordering::Greater => Precedence::Newer,
            Ordering::Equal => Precedence::Same,
            Ordering::Less => Precedence::Older,
        },
    }
}

/// True for states that still count as cluster members (N in the formulas).
pub fn is_live(state: MemberState) -> bool {
    !matches!(state, MemberState::Down | MemberState::Leaving)
}

/// True for states we probe and gossip to.
pub fn is_reachable(state: MemberState) -> bool {
    matches!(state, MemberState::Alive | MemberState::Suspected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberState::*;
    use Precedence::*;

    #[test]
    fn precedence_table() {
        let cases = [
            // (held, incoming, expected)
            ((1, Alive), (2, Alive), Newer),
            ((2, Alive), (1, Down), Older),
            ((1, Alive), (1, Alive), Same),
            ((1, Alive), (1, Suspected), Newer),
            ((1, Suspected), (1, Alive), Older),
            ((1, Suspected), (1, Suspected), Same),
            ((1, Suspected), (1, Down), Newer),
            ((1, Down), (1, Suspected), Older),
            ((1, Down), (2, Alive), Newer),
            ((1, Down), (2, Suspected), Newer),
            ((1, Down), (1, Leaving), Newer),
            ((1, Leaving), (1, Down), Older),
            ((1, Leaving), (1, Leaving), Same),
            ((1, Leaving), (2, Suspected), Older),
            ((1, Leaving), (2, Down), Older),
            ((1, Leaving), (2, Alive), Newer),
            ((1, Leaving), (2, Leaving), Newer),
            ((3, Leaving), (2, Alive), Older),
        ];
        for (held, incoming, want) in cases {
            assert_eq!(precedence(held, incoming), want, "{held:?} vs {incoming:?}");
        }
    }

    #[test]
    fn liveness_table() {
        let cases = [
            (Init, true, false),
            (Alive, true, true),
            (Suspected, true, true),
            (Down, false, false),
            (Leaving, false, false),
        ];
        for (state, live, reachable) in cases {
            assert_eq!(is_live(state), live, "{state:?}");
            assert_eq!(is_reachable(state), reachable, "{state:?}");
        }
    }
}
