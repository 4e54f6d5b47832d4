//! Joining through seeds and refreshing them: the commands and inputs of the seeding contract
//! (see [`crate::swim::seeding`]) and the handling of `Timer::Join` and `Timer::SeedRefresh`.

use std::net::SocketAddr;
use std::time::Instant;

use super::Swim;
use crate::swim::seeding::{
    self, Contact, ExchangeOutcome, JoinPhase, Lookup, Notice, Purpose, PushPullRequest, Round,
    MAX_CONTACTS_PER_REFRESH,
};
use crate::swim::state::is_reachable;
use crate::swim::timers::Timer;
use crate::swim::{DropReason, MemberState};

impl Swim {
    /// Joins through seeds: while INIT, join rounds start at once (the first asks for a seed
    /// lookup) and repeat with backoff until a seed answers or a peer reaches this node. Once
    /// in a cluster, the seeds are refreshed every `seed_refresh_interval`. Without seeds, call
    /// [`Swim::start_alone`] instead.
    pub fn join(&mut self, now: Instant) {
        self.seeding.has_seeds = true;
        match self.members.local().state {
            MemberState::Init if self.seeding.join == JoinPhase::Off => self.start_join_round(),
            MemberState::Alive if self.timers.get(Timer::SeedRefresh).is_none() => {
                self.arm_seed_refresh(now, true);
            }
            _ => {}
        }
    }

    /// True once when the driver should resolve the seeds and report them with
    /// [`Swim::handle_seeds_resolved`] (exactly once per `true`).
    pub fn poll_seed_lookup(&mut self) -> bool {
        if self.seeding.lookup != Lookup::Wanted {
            return false;
        }
        self.seeding.lookup = Lookup::Running;
        true
    }

    /// The seed lookup finished with `resolved` (this node's own address may be among them; an
    /// empty list when nothing resolved).
    pub fn handle_seeds_resolved(&mut self, now: Instant, resolved: &[SocketAddr]) {
        if self.seeding.lookup != Lookup::Running {
            return;
        }
        self.seeding.lookup = Lookup::Idle;
        if self.seeding.join == JoinPhase::Resolving {
            self.try_seeds(now, resolved);
        } else if self.refreshing() {
            self.contact_unknown_seeds(now, resolved);
        }
    }

    /// How an exchange the core asked for ([`Swim::poll_push_pull`]) ended. An answer is
    /// merged whatever the purpose (it is the peer's authenticated table); errors when it was
    /// dropped (also counted in stats). A join attempt that failed moves on to the next seed.
    pub fn handle_push_pull_reply(
        &mut self,
        now: Instant,
        request: &PushPullRequest,
        outcome: ExchangeOutcome<'_>,
    ) -> Result<(), DropReason> {
        match request.purpose {
            Purpose::AntiEntropy => match outcome {
                ExchangeOutcome::Answered(data) => self.merge_push_pull(now, request.peer, data),
                _ => Ok(()),
            },
            Purpose::Join => self.join_reply(now, request, outcome),
            Purpose::SeedRefresh => self.refresh_reply(now, request, outcome),
        }
    }

    /// Next thing about joining worth a log line, if any.
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    /// Fires `Timer::Join`: the next round starts, or the seed being tried did not answer in
    /// time.
    pub(super) fn on_join_timer(&mut self, now: Instant) {
        match self.seeding.join {
            JoinPhase::Waiting if self.members.local().state == MemberState::Init => {
                self.start_join_round();
            }
            JoinPhase::Trying(_) => self.try_next_seed(now, false),
            _ => {}
        }
    }

    /// Fires `Timer::SeedRefresh`: re-arms it and resolves the seeds, unless a lookup runs.
    pub(super) fn on_seed_refresh_timer(&mut self, now: Instant) {
        if !self.refreshing() {
            return;
        }
        self.arm_seed_refresh(now, false);
        if self.seeding.lookup == Lookup::Idle {
            self.seeding.lookup = Lookup::Wanted;
        }
    }

    /// Joining is over (joined, started alone, or leaving): no more rounds.
    pub(super) fn stop_joining(&mut self) {
        self.seeding.join = JoinPhase::Off;
        self.timers.stop(Timer::Join);
    }

    /// Arms the refresh one interval ahead, if it applies; the `first` time at a random point
    /// of `[interval / 2, 3 × interval / 2)`, so nodes started together do not resolve in step.
    pub(super) fn arm_seed_refresh(&mut self, now: Instant, first: bool) {
        let interval = self.config.seed_refresh_interval;
        if !self.refreshing() || interval.is_zero() {
            return;
        }
        let delay = if first {
            interval / 2 + self.jitter(interval)
        } else {
            interval
        };
        self.timers.set(Timer::SeedRefresh, now + delay);
    }

    /// Seed refresh applies: seeds given, this node in a cluster and not leaving.
    fn refreshing(&self) -> bool {
        self.seeding.has_seeds && self.members.local().state == MemberState::Alive
    }

    fn start_join_round(&mut self) {
        self.seeding.join = JoinPhase::Resolving;
        self.timers.stop(Timer::Join);
        if self.seeding.lookup == Lookup::Idle {
            self.seeding.lookup = Lookup::Wanted;
        }
    }

    /// A join round's lookup is done: start alone if the seeds name only us, else try them.
    fn try_seeds(&mut self, now: Instant, resolved: &[SocketAddr]) {
        let addrs = seeding::others(resolved, self.members.local().addr);
        if addrs.is_empty() && !resolved.is_empty() {
            self.notices.push_back(Notice::OnlySelf);
            self.become_alive(now);
            return;
        }
        let round = Round {
            addrs,
            next: 0,
            attempt: 0,
            refused: Vec::new(),
        };
        self.seeding.join = JoinPhase::Trying(round);
        self.attempt_seed(now);
    }

    /// Asks for an exchange with the round's current address, or ends the round when none is
    /// left.
    fn attempt_seed(&mut self, now: Instant) {
        let id = self.seeding.exchange_id();
        let JoinPhase::Trying(round) = &mut self.seeding.join else {
            return;
        };
        let Some(&peer) = round.addrs.get(round.next) else {
            self.join_round_failed(now);
            return;
        };
        round.attempt = id;
        self.push_pulls.push_back(PushPullRequest {
            id,
            peer,
            purpose: Purpose::Join,
        });
        self.timers
            .set(Timer::Join, now + self.config.seed_attempt_timeout);
    }

    /// The current attempt failed: note a refusal and try the next address.
    fn try_next_seed(&mut self, now: Instant, refused: bool) {
        if let JoinPhase::Trying(round) = &mut self.seeding.join {
            if refused {
                if let Some(&addr) = round.addrs.get(round.next) {
                    round.refused.push(addr);
                }
            }
            round.next += 1;
        }
        self.attempt_seed(now);
    }

    /// No address answered: back off and wait for the next round.
    fn join_round_failed(&mut self, now: Instant) {
        let JoinPhase::Trying(round) =
            std::mem::replace(&mut self.seeding.join, JoinPhase::Waiting)
        else {
            return;
        };
        self.stats.join_rounds_failed += 1;
        if !round.refused.is_empty() && !self.seeding.refusal_noticed {
            self.seeding.refusal_noticed = true;
            self.notices.push_back(Notice::SeedsRefusedOurKeys {
                refused: round.refused,
            });
        }
        let retry_in = self.seeding.backoff.next_delay(&mut self.rng);
        self.notices.push_back(Notice::JoinRoundFailed {
            tried: round.addrs,
            retry_in,
        });
        self.timers.set(Timer::Join, now + retry_in);
    }

    fn join_reply(
        &mut self,
        now: Instant,
        request: &PushPullRequest,
        outcome: ExchangeOutcome<'_>,
    ) -> Result<(), DropReason> {
        let current = matches!(
            &self.seeding.join,
            JoinPhase::Trying(round) if round.attempt == request.id
        );
        let (result, refused) = match outcome {
            ExchangeOutcome::Answered(data) => {
                (self.merge_push_pull(now, request.peer, data), false)
            }
            ExchangeOutcome::Unanswered => (Ok(()), false),
            ExchangeOutcome::Refused => (Ok(()), true),
        };
        if !current {
            return result; // a late answer, or joining ended meanwhile
        }
        match (outcome, result) {
            (ExchangeOutcome::Answered(_), Ok(())) => {
                // merge_push_pull made us ALIVE (and stopped joining).
                self.notices
                    .push_back(Notice::Joined { seed: request.peer });
            }
            (ExchangeOutcome::Answered(_), Err(_)) => {
                self.notices
                    .push_back(Notice::SeedAnswerUnusable { seed: request.peer });
                self.try_next_seed(now, false);
            }
            _ => self.try_next_seed(now, refused),
        }
        result
    }

    /// A refresh's lookup is done: push-pull with up to [`MAX_CONTACTS_PER_REFRESH`] resolved
    /// addresses that are not ours, not a live member's and not already being contacted. DOWN
    /// and LEAVING members' addresses stay candidates: something answering there has come back,
    /// or is a new node that took the address.
    fn contact_unknown_seeds(&mut self, now: Instant, resolved: &[SocketAddr]) {
        let cursor = self.seeding.refreshes;
        self.seeding.refreshes = self.seeding.refreshes.wrapping_add(1);
        let mut candidates = seeding::others(resolved, self.members.local().addr);
        candidates.retain(|addr| {
            !self
                .members
                .iter()
                .any(|m| m.addr == *addr && is_reachable(m.state))
        });
        candidates.retain(|addr| !self.seeding.is_contacting(now, *addr));
        let expires = now + self.config.seed_attempt_timeout;
        for peer in seeding::choose(&candidates, MAX_CONTACTS_PER_REFRESH, cursor) {
            let id = self.seeding.exchange_id();
            self.seeding.contacting.push(Contact { id, peer, expires });
            self.push_pulls.push_back(PushPullRequest {
                id,
                peer,
                purpose: Purpose::SeedRefresh,
            });
        }
    }

    fn refresh_reply(
        &mut self,
        now: Instant,
        request: &PushPullRequest,
        outcome: ExchangeOutcome<'_>,
    ) -> Result<(), DropReason> {
        self.seeding.contact_ended(request.id);
        let ExchangeOutcome::Answered(data) = outcome else {
            return Ok(());
        };
        let events_before = self.events.len();
        self.merge_push_pull(now, request.peer, data)?;
        self.notices.push_back(Notice::RefreshMerged {
            peer: request.peer,
            changed: self.events.len() - events_before,
        });
        Ok(())
    }
}
