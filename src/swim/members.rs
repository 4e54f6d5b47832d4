//! The member table: dense storage with a name index, per-state counts kept incrementally,
//! a shuffled round-robin probe order and random selection, all without O(N) scans per message.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use hashbrown::HashTable;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::state::{is_reachable, Update};
use super::suspicion::Suspicion;
use super::{MemberState, MemberView, NodeMeta};

/// The empty metadata, shared by every entry that has none (most of them in a simulation).
static EMPTY_META: LazyLock<Arc<NodeMeta>> = LazyLock::new(|| Arc::new(NodeMeta::default()));

/// `meta` behind an `Arc`: the shared empty one when empty, else a new allocation.
pub fn share_meta(meta: &NodeMeta) -> Arc<NodeMeta> {
    if meta.region.is_empty() && meta.zone.is_empty() && meta.tags.is_empty() {
        EMPTY_META.clone()
    } else {
        Arc::new(meta.clone())
    }
}

/// Shares member names between the cores of one process (the simulator runs thousands of
/// them): each distinct name is allocated once, not once per core. Cloning the handle shares
/// the table. Names are never removed (a simulation's set of names is bounded). It changes no
/// behaviour, only where a name's bytes live, so runs stay reproducible.
#[derive(Clone, Debug, Default)]
pub struct NameInterner(Arc<Mutex<HashSet<Arc<str>>>>);

impl NameInterner {
    /// The shared copy of `name`.
    pub fn intern(&self, name: &str) -> Arc<str> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = set.get(name) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        set.insert(n.clone());
        n
    }
}

/// The hash of the name at position `i` of `list` (0 for a position out of range, which the
/// table never holds).
fn hash_at(list: &[Member], hasher: &RandomState, i: &u32) -> u64 {
    list.get(*i as usize)
        .map_or(0, |m| hasher.hash_one(&*m.name))
}

/// Matches the index slot holding the position of `name` in `list`.
fn holds<'a>(list: &'a [Member], name: &'a str) -> impl Fn(&u32) -> bool + 'a {
    move |&i| list.get(i as usize).is_some_and(|m| *m.name == *name)
}

/// Everything the core knows about one member.
///
/// Kept compact: there is one entry per member per node, so a 10,000-node simulation holds
/// 10^8 of them. The name is an `Arc<str>` shared by the entry, the name index and the probe
/// order (one heap allocation per entry, not three); metadata sits behind an `Arc` (the empty
/// metadata is one shared allocation); the suspicion is boxed.
#[derive(Clone, Debug)]
pub struct Member {
    /// Member name (identity).
    pub name: Arc<str>,
    /// Its SWIM/QUIC address.
    pub addr: SocketAddr,
    /// Current state.
    pub state: MemberState,
    /// Current incarnation.
    pub incarnation: u64,
    /// Region, zone, tags.
    pub meta: Arc<NodeMeta>,
    /// When its state last changed here.
    pub since: Instant,
    /// The running suspicion while SUSPECTED.
    /// Boxed: most members are not suspected, and the table is per member per node.
    pub suspicion: Option<Box<Suspicion>>,
    /// True for this node's own entry.
    pub is_local: bool,
}

impl Member {
    /// The entry for another member, first seen at `since` (no suspicion running).
    pub fn remote(
        name: Arc<str>,
        addr: SocketAddr,
        state: MemberState,
        incarnation: u64,
        meta: &NodeMeta,
        since: Instant,
    ) -> Self {
        Member {
            name,
            addr,
            state,
            incarnation,
            meta: share_meta(meta),
            since,
            suspicion: None,
            is_local: false,
        }
    }

    /// A copy for callers outside the core.
    pub fn view(&self) -> MemberView {
        MemberView {
            name: self.name.to_string(),
            addr: self.addr,
            state: self.state,
            incarnation: self.incarnation,
            meta: (*self.meta).clone(),
            since: self.since,
            is_local: self.is_local,
        }
    }

    /// The fact this entry states, as gossiped.
    pub fn to_update(&self) -> Update {
        Update {
            name: self.name.to_string(),
            addr: self.addr,
            incarnation: self.incarnation,
            state: self.state,
            meta: (*self.meta).clone(),
            accuser: self
                .suspicion
                .as_ref()
                .map(|s| s.first_accuser().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// How many random draws per wanted member before falling back to a scan.
const SAMPLE_TRIES_PER_PICK: usize = 8;

/// A slot of the probe order whose member was removed during the round: skipped.
const GONE: u32 = u32::MAX;

/// The member table, this node included.
///
/// Sized for the simulator, which holds one table per node (10^8 entries at N = 10,000): the
/// name index and the probe order hold `u32` positions into `list` (the name is stored once,
/// in the entry), and [`Members::reserve_exact`] lets a caller that knows the final size avoid
/// the doubling slack of growth.
#[derive(Clone, Debug)]
pub struct Members {
    list: Vec<Member>,
    /// Positions in `list`, hashed by the name stored at that position.
    index: HashTable<u32>,
    /// Keyed per table (random), so names sent by peers cannot be crafted to collide.
    hasher: RandomState,
    counts: [usize; 5],
    local_name: Arc<str>,
    /// Positions in `list` in this round's shuffled order; [`GONE`] for a removed one.
    probe_order: Vec<u32>,
    probe_cursor: usize,
    /// Positions in `list` of the probeable members and this node, in name order, for the
    /// aligned schedule; rebuilt (lazily) when `ring_stale`.
    ring: Vec<u32>,
    /// Where this node sits in `ring`.
    ring_local: usize,
    /// Set by every change of the table or of a member's state.
    ring_stale: bool,
    names: Option<NameInterner>,
}

impl Members {
    /// A table holding only this node.
    pub fn new(local: Member) -> Self {
        let mut members = Members {
            list: Vec::with_capacity(1),
            index: HashTable::new(),
            hasher: RandomState::new(),
            counts: [0; 5],
            local_name: local.name.clone(),
            probe_order: Vec::new(),
            probe_cursor: 0,
            ring: Vec::new(),
            ring_local: 0,
            ring_stale: true,
            names: None,
        };
        members.counts[local.state as usize] += 1;
        let hash = members.hasher.hash_one(&*local.name);
        members.list.push(local);
        members.index.insert_unique(hash, 0, |_| hash);
        members
    }

    /// Makes room for `additional` more members exactly (no growth slack), for a caller that
    /// knows how many are coming.
    pub fn reserve_exact(&mut self, additional: usize) {
        self.list.reserve_exact(additional);
        self.probe_order.reserve_exact(additional);
        let (list, hasher) = (&self.list, &self.hasher);
        self.index.reserve(additional, |i| hash_at(list, hasher, i));
    }

    /// Gives back the spare capacity of the list and the probe order.
    pub fn shrink_to_fit(&mut self) {
        self.list.shrink_to_fit();
        self.probe_order.shrink_to_fit();
    }

    /// Takes new members' names from `names`, shared with other tables in this process.
    pub fn share_names(&mut self, names: NameInterner) {
        self.names = Some(names);
    }

    /// `name` as an `Arc<str>`: the known entry's, else the shared one, else a new one.
    pub fn name_arc(&self, name: &str) -> Arc<str> {
        if let Some(m) = self.get(name) {
            return m.name.clone();
        }
        match &self.names {
            Some(names) => names.intern(name),
            None => name.into(),
        }
    }

    /// This node's entry.
    pub fn local(&self) -> &Member {
        // The local entry is never removed, so the lookup always succeeds.
        self.get(&self.local_name)
            .or_else(|| self.list.first())
            .unwrap_or_else(|| unreachable!("the local member is never removed"))
    }

    /// Position of `name` in `list`.
    fn position(&self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        self.index.find(hash, holds(&self.list, name)).copied()
    }

    /// Looks a member up by name.
    pub fn get(&self, name: &str) -> Option<&Member> {
        self.position(name).and_then(|i| self.list.get(i as usize))
    }

    /// Changes a member in place, keeping the per-state counts right. None if unknown.
    pub fn update<R>(&mut self, name: &str, f: impl FnOnce(&mut Member) -> R) -> Option<R> {
        let i = self.position(name)?;
        let member = self.list.get_mut(i as usize)?;
        let before = member.state;
        self.counts[before as usize] -= 1;
        let out = f(member);
        self.counts[member.state as usize] += 1;
        self.ring_stale |= member.state != before;
        Some(out)
    }

    /// Adds a new member (inserted at a random place in the rest of this probe round).
    pub fn insert(&mut self, member: Member, rng: &mut StdRng) {
        if self.position(&member.name).is_some() {
            return;
        }
        let Ok(pos) = u32::try_from(self.list.len()) else {
            return; // 4 billion members: not a table this process could hold anyway
        };
        self.counts[member.state as usize] += 1;
        self.ring_stale = true;
        let hash = self.hasher.hash_one(&*member.name);
        let is_local = member.is_local;
        self.list.push(member);
        let (list, hasher) = (&self.list, &self.hasher);
        self.index
            .insert_unique(hash, pos, |i| hash_at(list, hasher, i));
        if !is_local {
            self.probe_order.push(pos);
            let last = self.probe_order.len() - 1;
            let at = rng.random_range(self.probe_cursor.min(last)..=last);
            self.probe_order.swap(at, last);
        }
    }

    /// Forgets a member (never the local one).
    pub fn remove(&mut self, name: &str) -> Option<Member> {
        if *name == *self.local_name {
            return None;
        }
        let hash = self.hasher.hash_one(name);
        let entry = self.index.find_entry(hash, holds(&self.list, name)).ok()?;
        let (i, _) = entry.remove();
        self.ring_stale = true;
        let last = u32::try_from(self.list.len() - 1).unwrap_or(GONE);
        let member = self.list.swap_remove(i as usize);
        if let Some(moved) = self.list.get(i as usize) {
            // The last entry now sits at `i`: repoint its index slot.
            let moved_hash = self.hasher.hash_one(&*moved.name);
            if let Some(slot) = self.index.find_mut(moved_hash, |&j| j == last) {
                *slot = i;
            }
        }
        // Only the rest of this round is read again (a new round rebuilds the order): skip the
        // removed member there and follow the one that moved.
        let rest = self
            .probe_order
            .get_mut(self.probe_cursor..)
            .unwrap_or_default();
        for slot in rest {
            if *slot == i {
                *slot = GONE;
            } else if *slot == last {
                *slot = i;
            }
        }
        self.counts[member.state as usize] -= 1;
        Some(member)
    }

    /// All members, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.list.iter()
    }

    /// Number of members, this node included.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Never true: the table always holds this node.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Members in `state`.
    pub fn count(&self, state: MemberState) -> usize {
        self.counts[state as usize]
    }

    /// Members that still count (not DOWN or LEAVING), this node included: N in the formulas.
    pub fn live_count(&self) -> usize {
        self.len() - self.count(MemberState::Down) - self.count(MemberState::Leaving)
    }

    /// Next member to probe: shuffled round-robin over other ALIVE/SUSPECTED members,
    /// reshuffled each time a round is exhausted.
    pub fn next_probe_target(&mut self, rng: &mut StdRng) -> Option<&Member> {
        let probeable = |m: &Member| !m.is_local && is_reachable(m.state);
        for _ in 0..2 {
            while let Some(&i) = self.probe_order.get(self.probe_cursor) {
                self.probe_cursor += 1;
                if self.list.get(i as usize).is_some_and(probeable) {
                    return self.list.get(i as usize);
                }
            }
            // Refill in place: the buffer keeps its (exact) capacity.
            self.probe_order.clear();
            self.probe_order.extend(
                (0..self.list.len())
                    .filter(|&i| self.list.get(i).is_some_and(probeable))
                    .filter_map(|i| u32::try_from(i).ok()),
            );
            self.probe_order.shuffle(rng);
            self.probe_cursor = 0;
        }
        None
    }

    /// The member `slot` places after this node in the name order of the probeable members
    /// (this node included), never this node: at one slot, nodes that hold the same members
    /// pick distinct ones, and over `M - 1` consecutive slots each picks every other once.
    pub fn aligned_probe_target(&mut self, slot: u64) -> Option<&Member> {
        if self.ring_stale {
            self.rebuild_ring();
        }
        let m = self.ring.len() as u64;
        if m < 2 {
            return None;
        }
        let offset = 1 + slot % (m - 1);
        let at = (self.ring_local as u64 + offset) % m;
        let i = *self.ring.get(usize::try_from(at).ok()?)?;
        self.list.get(i as usize)
    }

    fn rebuild_ring(&mut self) {
        let list = &self.list;
        self.ring.clear();
        self.ring.extend(
            (0..list.len())
                .filter(|&i| {
                    list.get(i)
                        .is_some_and(|m| m.is_local || is_reachable(m.state))
                })
                .filter_map(|i| u32::try_from(i).ok()),
        );
        self.ring
            .sort_unstable_by(|&a, &b| list[a as usize].name.cmp(&list[b as usize].name));
        self.ring_local = self
            .ring
            .iter()
            .position(|&i| list.get(i as usize).is_some_and(|m| m.is_local))
            .unwrap_or(0);
        self.ring_stale = false;
    }

    /// Up to `k` distinct random members (never this node) for which `pred` holds.
    pub fn sample(
        &self,
        rng: &mut StdRng,
        k: usize,
        pred: impl Fn(&Member) -> bool,
    ) -> Vec<&Member> {
        let n = self.list.len();
        let ok = |i: usize| self.list.get(i).is_some_and(|m| !m.is_local && pred(m));
        let mut picked: Vec<usize> = Vec::with_capacity(k);
        if k == 0 || n <= 1 {
            return Vec::new();
        }
        for _ in 0..k * SAMPLE_TRIES_PER_PICK {
            if picked.len() == k {
                break;
            }
            let i = rng.random_range(0..n);
            if !picked.contains(&i) && ok(i) {
                picked.push(i);
            }
        }
        if picked.len() < k {
            // Few candidates (small cluster, mostly-dead table): scan to find them all.
            let mut rest: Vec<usize> = (0..n).filter(|&i| !picked.contains(&i) && ok(i)).collect();
            rest.shuffle(rng);
            picked.extend(rest.into_iter().take(k - picked.len()));
        }
        picked
            .into_iter()
            .filter_map(|i| self.list.get(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashSet;

    fn member(name: &str, state: MemberState, local: bool) -> Member {
        Member {
            name: name.into(),
            addr: "10.0.0.1:1".parse().unwrap(),
            state,
            incarnation: 1,
            meta: share_meta(&NodeMeta::default()),
            since: Instant::now(),
            suspicion: None,
            is_local: local,
        }
    }

    fn table(states: &[MemberState]) -> (Members, StdRng) {
        let mut rng = StdRng::seed_from_u64(7);
        let mut m = Members::new(member("self", MemberState::Alive, true));
        for (i, s) in states.iter().enumerate() {
            m.insert(member(&format!("m{i}"), *s, false), &mut rng);
        }
        (m, rng)
    }

    /// The table of `me` among `names`, every other one ALIVE, inserted in an order of its own.
    fn view_of(me: &str, names: &[String], seed: u64) -> Members {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut m = Members::new(member(me, MemberState::Alive, true));
        let mut others: Vec<&String> = names.iter().filter(|n| *n != me).collect();
        others.shuffle(&mut rng);
        for name in others {
            m.insert(member(name, MemberState::Alive, false), &mut rng);
        }
        m
    }

    #[test]
    fn aligned_targets_are_a_permutation_each_slot_and_a_round_each_member() {
        let names: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        let mut views: Vec<Members> = names
            .iter()
            .enumerate()
            .map(|(i, n)| view_of(n, &names, i as u64))
            .collect();
        let mut visited: Vec<HashSet<String>> = vec![HashSet::new(); names.len()];
        for slot in 1_000..1_009 {
            let mut probed = HashSet::new();
            for (i, view) in views.iter_mut().enumerate() {
                let target = view.aligned_probe_target(slot).expect("a target");
                assert_ne!(*target.name, *names[i], "never itself");
                probed.insert(target.name.to_string());
                visited[i].insert(target.name.to_string());
            }
            assert_eq!(
                probed.len(),
                names.len(),
                "slot {slot}: every member probed once"
            );
        }
        for (i, seen) in visited.iter().enumerate() {
            assert_eq!(
                seen.len(),
                names.len() - 1,
                "{} probed every other once",
                names[i]
            );
        }
    }

    #[test]
    fn aligned_targets_skip_members_that_cannot_be_probed() {
        use MemberState::*;
        let (mut m, _) = table(&[Alive, Down, Suspected, Leaving]);
        let picked: HashSet<String> = (0..20)
            .filter_map(|slot| m.aligned_probe_target(slot).map(|t| t.name.to_string()))
            .collect();
        assert_eq!(picked, HashSet::from(["m0".to_string(), "m2".to_string()]));
        m.update("m0", |x| x.state = Down);
        m.update("m2", |x| x.state = Down);
        assert!(m.aligned_probe_target(3).is_none(), "nobody left to probe");
    }

    #[test]
    fn counts_follow_insert_update_remove() {
        use MemberState::*;
        let (mut m, _) = table(&[Alive, Alive, Down, Leaving, Suspected]);
        assert_eq!((m.len(), m.live_count(), m.count(Alive)), (6, 4, 3));
        m.update("m0", |x| x.state = Down);
        assert_eq!((m.live_count(), m.count(Down)), (3, 2));
        assert!(m.remove("m2").is_some());
        assert!(m.remove("self").is_none());
        assert_eq!((m.len(), m.count(Down), &*m.local().name), (5, 1, "self"));
        assert!(m.get("m4").is_some(), "index fixed after swap_remove");
    }

    #[test]
    fn probe_order_visits_each_reachable_member_once_per_round() {
        use MemberState::*;
        let (mut m, mut rng) = table(&[Alive, Suspected, Down, Leaving, Alive]);
        for round in 0..3 {
            let seen: HashSet<String> = (0..3)
                .map(|_| {
                    m.next_probe_target(&mut rng)
                        .map(|x| x.name.to_string())
                        .unwrap()
                })
                .collect();
            let want: HashSet<String> = ["m0", "m1", "m4"].iter().map(|s| s.to_string()).collect();
            assert_eq!(seen, want, "round {round}");
        }
    }

    fn probe(m: &mut Members, rng: &mut StdRng, k: usize) -> Vec<String> {
        (0..k)
            .map(|_| {
                m.next_probe_target(rng)
                    .map(|x| x.name.to_string())
                    .unwrap()
            })
            .collect()
    }

    /// Removals swap the last entry into the hole: the index and the positions left in this
    /// round's probe order must follow, and the removed member must not be probed again.
    #[test]
    fn removal_mid_round_keeps_index_and_probe_order_consistent() {
        // (probes before the removals, names removed): "m9" is the list's last entry (nothing
        // moves), "m0" and "m4" pull the last one into their slot.
        let cases: [(usize, &[&str]); 4] = [
            (0, &["m0"]),
            (3, &["m9"]),
            (3, &["m0", "m4"]),
            (9, &["m4", "m9", "m0"]),
        ];
        for (before, removed) in cases {
            let (mut m, mut rng) = table(&[MemberState::Alive; 10]);
            let seen = probe(&mut m, &mut rng, before);
            for r in removed {
                assert_eq!(m.remove(r).map(|x| x.name.to_string()).as_deref(), Some(*r));
                assert!(m.get(r).is_none(), "{r} still indexed");
            }
            let kept: Vec<String> = (0..10)
                .map(|i| format!("m{i}"))
                .filter(|n| !removed.contains(&n.as_str()))
                .collect();
            for n in &kept {
                assert_eq!(m.get(n).map(|x| &*x.name), Some(n.as_str()), "index of {n}");
            }
            // The rest of the round: every kept member not yet probed, once each.
            let mut want: Vec<String> =
                kept.iter().filter(|n| !seen.contains(n)).cloned().collect();
            let mut rest = probe(&mut m, &mut rng, want.len());
            rest.sort();
            want.sort();
            assert_eq!(rest, want, "rest of round, case {before} {removed:?}");
            // The next round: every kept member once.
            let mut next = probe(&mut m, &mut rng, kept.len());
            next.sort();
            assert_eq!(next, kept, "next round, case {before} {removed:?}");
        }
    }

    #[test]
    fn removed_member_inserted_again_is_probed_once_in_the_round() {
        let (mut m, mut rng) = table(&[MemberState::Alive; 6]);
        let seen = probe(&mut m, &mut rng, 2);
        assert!(m.remove("m2").is_some());
        m.insert(member("m2", MemberState::Alive, false), &mut rng);
        assert_eq!(m.len(), 7);
        // The rest of the round: the others not yet probed, and the new m2 once (its old slot
        // is skipped, whether or not it was probed already).
        let mut want: Vec<String> = (0..6)
            .map(|i| format!("m{i}"))
            .filter(|n| n != "m2" && !seen.contains(n))
            .chain(["m2".to_owned()])
            .collect();
        let mut rest = probe(&mut m, &mut rng, want.len());
        rest.sort();
        want.sort();
        assert_eq!(rest, want);
    }

    #[test]
    fn probe_order_empty_when_alone() {
        let (mut m, mut rng) = table(&[MemberState::Down]);
        assert!(m.next_probe_target(&mut rng).is_none());
    }

    #[test]
    fn sample_table() {
        use MemberState::*;
        // (states of others, k, expected picks)
        let cases: [(&[MemberState], usize, usize); 5] = [
            (&[], 3, 0),
            (&[Alive], 3, 1),
            (&[Alive, Down, Alive], 3, 2),
            (&[Alive; 10], 3, 3),
            (&[Alive; 10], 0, 0),
        ];
        for (states, k, want) in cases {
            let (m, mut rng) = table(states);
            let got = m.sample(&mut rng, k, |x| x.state == Alive);
            let distinct: HashSet<&str> = got.iter().map(|x| &*x.name).collect();
            assert_eq!(got.len(), want, "{states:?} k {k}");
            assert_eq!(distinct.len(), want);
            assert!(got.iter().all(|x| !x.is_local && x.state == Alive));
        }
    }

    /// There is one entry per member per node: 10^8 of them in a 10,000-node simulation.
    /// Name and metadata are shared `Arc`s, the suspicion is boxed; what is left inline is
    /// the address (32 B), the `since` instant (16 B), incarnation, state and flags.
    #[test]
    fn member_entry_stays_compact() {
        let size = std::mem::size_of::<Member>();
        println!("size_of::<Member>() = {size}");
        assert!(size <= 96, "Member grew to {size} bytes");
    }
}
