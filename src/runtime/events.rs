//! Human-readable names for states and change reasons, and the one log line per change.

use crate::swim::{ChangeReason, Event, MemberState};

/// Upper-case state name used in logs and the HTTP API ("ALIVE", "SUSPECTED", …).
pub fn state_name(state: MemberState) -> &'static str {
    match state {
        MemberState::Init => "INIT",
        MemberState::Alive => "ALIVE",
        MemberState::Suspected => "SUSPECTED",
        MemberState::Down => "DOWN",
        MemberState::Leaving => "LEAVING",
    }
}

/// Short lower-case reason for a log line ("probe failed", "gossip from node3").
pub fn reason_text(reason: &ChangeReason) -> String {
    match reason {
        ChangeReason::LocalStart => "local start".into(),
        ChangeReason::Gossip { from } => format!("gossip from {from}"),
        ChangeReason::PushPull => "push-pull".into(),
        ChangeReason::ProbeFailed => "probe failed".into(),
        ChangeReason::SuspicionExpired => "suspicion expired".into(),
        ChangeReason::Refuted => "refuted".into(),
        ChangeReason::LocalLeave => "local leave".into(),
        ChangeReason::MetaChanged => "metadata changed".into(),
    }
}

/// Logs one line for a membership change.
pub fn log_event(event: &Event) {
    match event {
        Event::Changed {
            member,
            previous,
            reason,
        } => tracing::info!(
            member = %member.name,
            addr = %member.addr,
            from = %previous.map(state_name).unwrap_or("NEW"),
            to = %state_name(member.state),
            incarnation = member.incarnation,
            reason = %reason_text(reason),
            "membership changed"
        ),
        Event::Reaped { name } => {
            tracing::info!(member = %name, "member forgotten after retention")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_api_contract() {
        let names: Vec<_> = [
            MemberState::Init,
            MemberState::Alive,
            MemberState::Suspected,
            MemberState::Down,
            MemberState::Leaving,
        ]
        .into_iter()
        .map(state_name)
        .collect();
        assert_eq!(names, ["INIT", "ALIVE", "SUSPECTED", "DOWN", "LEAVING"]);
        assert_eq!(
            reason_text(&ChangeReason::Gossip { from: "n3".into() }),
            "gossip from n3"
        );
    }
}
