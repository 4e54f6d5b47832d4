//! Conversions from the runtime's views and events to the client API's messages.

use std::time::Instant;

use super::pb;
use crate::api::coordination::{Leader, Owner};
use crate::runtime::events::reason_text;
use crate::runtime::keys::KeyReport;
use crate::runtime::{SequencedEvent, Snapshot};
use crate::swim::{Event, MemberState, MemberView};

/// The API's state enum for a core state.
pub fn state(state: MemberState) -> pb::MemberState {
    match state {
        MemberState::Init => pb::MemberState::Init,
        MemberState::Alive => pb::MemberState::Alive,
        MemberState::Suspected => pb::MemberState::Suspected,
        MemberState::Down => pb::MemberState::Down,
        MemberState::Leaving => pb::MemberState::Leaving,
    }
}

/// The leader view; no leader is the empty name.
pub fn leader(view: Leader) -> pb::GetLeaderResponse {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    pb::GetLeaderResponse {
        leader: view.leader.unwrap_or_default(),
        has_quorum: view.has_quorum,
        alive: count(view.alive),
        expected: count(view.expected),
        since_ms: view.since_ms,
    }
}

/// The owner of a key; no owner is the empty name.
pub fn owner(owner: Owner) -> pb::GetOwnerResponse {
    pb::GetOwnerResponse {
        key: owner.key,
        owner: owner.owner.unwrap_or_default(),
    }
}

/// One member as of `now` (which sets `since_ms`).
pub fn member(view: &MemberView, now: Instant) -> pb::Member {
    let since = now.saturating_duration_since(view.since);
    pb::Member {
        name: view.name.clone(),
        address: view.addr.to_string(),
        state: state(view.state).into(),
        incarnation: view.incarnation,
        region: view.meta.region.clone(),
        zone: view.meta.zone.clone(),
        tags: view.meta.tags.clone(),
        since_ms: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
        is_local: view.is_local,
    }
}

/// Every member of `snapshot`, sorted by name.
pub fn members(snapshot: &Snapshot, now: Instant) -> Vec<pb::Member> {
    let mut members: Vec<pb::Member> = snapshot.members.iter().map(|m| member(m, now)).collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    members
}

/// The answer to `ListMembers`.
pub fn list(snapshot: &Snapshot, now: Instant) -> pb::ListMembersResponse {
    pb::ListMembersResponse {
        local_name: snapshot.local.name.clone(),
        members: members(snapshot, now),
        last_event_seq: snapshot.last_event_seq,
    }
}

/// The stream message carrying `snapshot`; `resync` marks one sent after the watcher lagged.
pub fn snapshot_message(
    snapshot: &Snapshot,
    resync: bool,
    now: Instant,
) -> pb::WatchMembershipResponse {
    let snapshot = pb::Snapshot {
        members: members(snapshot, now),
        last_event_seq: snapshot.last_event_seq,
        resync,
        local_name: snapshot.local.name.clone(),
    };
    pb::WatchMembershipResponse {
        event: Some(pb::watch_membership_response::Event::Snapshot(snapshot)),
    }
}

/// The stream message carrying one numbered event.
pub fn event_message(event: &SequencedEvent, now: Instant) -> pb::WatchMembershipResponse {
    use pb::watch_membership_response::Event as Message;
    let message = match &event.event {
        Event::Changed {
            member: view,
            previous,
            reason,
        } => Message::Change(pb::Change {
            seq: event.seq,
            member: Some(member(view, now)),
            previous_state: previous.map_or(pb::MemberState::Unspecified, state).into(),
            reason: reason_text(reason),
        }),
        Event::Reaped { name } => Message::Reaped(pb::Reaped {
            seq: event.seq,
            name: name.clone(),
        }),
    };
    pb::WatchMembershipResponse {
        event: Some(message),
    }
}

/// A keyring command's report as the API's message.
pub fn key_report(report: &KeyReport) -> pb::KeyReport {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    pb::KeyReport {
        op: report.op.as_str().to_string(),
        version: report.version,
        members: count(report.members),
        acknowledged: count(report.acknowledged),
        failed: report
            .failed
            .iter()
            .map(|f| pb::MemberFailure {
                name: f.name.clone(),
                error: f.error.clone(),
            })
            .collect(),
        keys: report
            .keys
            .iter()
            .map(|k| pb::KeyCount {
                id: k.id.clone(),
                members: count(k.members),
                primary_at: count(k.primary_at),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::swim::{ChangeReason, NodeMeta};
    use pb::watch_membership_response::Event as Message;

    fn view(name: &str, state: MemberState, since: Instant) -> MemberView {
        MemberView {
            name: name.into(),
            addr: "127.0.0.7:39527".parse().expect("literal address"),
            state,
            incarnation: 4,
            meta: NodeMeta {
                region: "eu".into(),
                zone: "eu-1a".into(),
                tags: BTreeMap::from([("role".to_string(), "gw".to_string())]),
            },
            since,
            is_local: false,
        }
    }

    #[test]
    fn every_state_maps_to_its_own_value_and_none_to_unspecified() {
        let table = [
            (MemberState::Init, pb::MemberState::Init, 1),
            (MemberState::Alive, pb::MemberState::Alive, 2),
            (MemberState::Suspected, pb::MemberState::Suspected, 3),
            (MemberState::Down, pb::MemberState::Down, 4),
            (MemberState::Leaving, pb::MemberState::Leaving, 5),
        ];
        for (core, api, number) in table {
            assert_eq!(state(core), api);
            assert_eq!(api as i32, number, "{core:?}");
        }
        assert_eq!(pb::MemberState::Unspecified as i32, 0);
    }

    #[test]
    fn member_carries_every_field_and_its_age() {
        let now = Instant::now();
        let since = now.checked_sub(Duration::from_millis(1500)).unwrap_or(now);
        let m = member(&view("n3", MemberState::Suspected, since), now);
        assert_eq!(m.name, "n3");
        assert_eq!(m.address, "127.0.0.7:39527");
        assert_eq!(m.state(), pb::MemberState::Suspected);
        assert_eq!(m.incarnation, 4);
        assert_eq!((m.region.as_str(), m.zone.as_str()), ("eu", "eu-1a"));
        assert_eq!(m.tags.get("role").map(String::as_str), Some("gw"));
        assert_eq!(m.since_ms, now.duration_since(since).as_millis() as u64);
        assert!(!m.is_local);
    }

    #[test]
    fn snapshot_is_sorted_and_keeps_its_sequence_number() {
        let now = Instant::now();
        let mut local = view("n2", MemberState::Alive, now);
        local.is_local = true;
        let mut snap = Snapshot::of_local(local.clone(), now);
        snap.members = vec![
            view("n3", MemberState::Down, now),
            local,
            view("n1", MemberState::Alive, now),
        ]
        .into();
        snap.last_event_seq = 17;
        let Some(Message::Snapshot(s)) = snapshot_message(&snap, true, now).event else {
            panic!("not a snapshot");
        };
        let names: Vec<_> = s.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["n1", "n2", "n3"]);
        assert_eq!((s.last_event_seq, s.resync), (17, true));
        assert_eq!(s.local_name, "n2");
        assert!(s.members[1].is_local);
        assert_eq!(list(&snap, now).members, s.members);
    }

    #[test]
    fn events_become_changes_and_reaps_with_their_seq() {
        let now = Instant::now();
        let changed = SequencedEvent {
            seq: 5,
            event: Event::Changed {
                member: view("n3", MemberState::Down, now),
                previous: Some(MemberState::Suspected),
                reason: ChangeReason::SuspicionExpired,
            },
        };
        let Some(Message::Change(c)) = event_message(&changed, now).event else {
            panic!("not a change");
        };
        assert_eq!(c.seq, 5);
        assert_eq!(c.previous_state(), pb::MemberState::Suspected);
        assert_eq!(c.reason, "suspicion expired");
        assert_eq!(c.member.map(|m| m.state()), Some(pb::MemberState::Down));

        let new = SequencedEvent {
            seq: 6,
            event: Event::Changed {
                member: view("n4", MemberState::Alive, now),
                previous: None,
                reason: ChangeReason::Gossip { from: "n1".into() },
            },
        };
        let Some(Message::Change(c)) = event_message(&new, now).event else {
            panic!("not a change");
        };
        assert_eq!(c.previous_state(), pb::MemberState::Unspecified);
        assert_eq!(c.reason, "gossip from n1");

        let reaped = SequencedEvent {
            seq: 7,
            event: Event::Reaped { name: "n3".into() },
        };
        assert_eq!(
            event_message(&reaped, now).event,
            Some(Message::Reaped(pb::Reaped {
                seq: 7,
                name: "n3".into()
            }))
        );
    }
}
