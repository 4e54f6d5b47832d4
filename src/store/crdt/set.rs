//! Observed-remove set, add-wins: every add of a member is tagged with a fresh [`Stamp`] (a
//! "dot"); a remove removes the dots it has seen. A member is in the set while one of its dots
//! is not removed, so an add concurrent with a remove (a dot the remove did not see) survives
//! it. Merging is the union of dots and of removed dots.
//!
//! Removed dots are tombstones: once older than the retention (`removed_at` before the
//! horizon), every replica is assumed to have seen the remove, and they are forgotten.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::clock::Stamp;

/// The dots of one member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// One dot per add.
    pub adds: BTreeSet<Stamp>,
    /// Dots removed.
    pub removes: BTreeSet<Stamp>,
    /// Stamp of the latest remove.
    pub removed_at: Option<Stamp>,
}

impl Element {
    /// In the set while some add is not removed.
    pub fn is_present(&self) -> bool {
        self.adds.iter().any(|dot| !self.removes.contains(dot))
    }

    fn merge(&mut self, other: &Element) -> bool {
        let before = (self.adds.len(), self.removes.len());
        self.adds.extend(other.adds.iter().cloned());
        self.removes.extend(other.removes.iter().cloned());
        let mut changed = before != (self.adds.len(), self.removes.len());
        if other.removed_at > self.removed_at {
            self.removed_at = other.removed_at.clone();
            changed = true;
        }
        changed
    }

    /// Forgets the dots of removes older than `horizon_ms`; true if nothing is left.
    fn collect(&mut self, horizon_ms: u64) -> bool {
        let old = self
            .removed_at
            .as_ref()
            .is_some_and(|at| at.wall_ms < horizon_ms);
        if old {
            let removes = std::mem::take(&mut self.removes);
            self.adds.retain(|dot| !removes.contains(dot));
            self.removed_at = None;
        }
        self.adds.is_empty() && self.removes.is_empty()
    }
}

/// One key of a `set` store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrSet {
    /// Every member ever added and not yet collected, present or not.
    pub elements: BTreeMap<String, Element>,
}

impl OrSet {
    /// Adds `member` with the dot `stamp`; returns the delta to spread.
    pub fn add(&mut self, member: &str, stamp: Stamp) -> OrSet {
        let mut element = Element::default();
        element.adds.insert(stamp);
        let delta = OrSet {
            elements: BTreeMap::from([(member.to_owned(), element)]),
        };
        self.merge(&delta);
        delta
    }

    /// Removes `member` (the adds seen so far); returns the delta to spread, or `None` when it
    /// is not in the set.
    pub fn remove(&mut self, member: &str, stamp: Stamp) -> Option<OrSet> {
        let held = self.elements.get(member).filter(|e| e.is_present())?;
        let element = Element {
            adds: BTreeSet::new(),
            removes: held.adds.clone(),
            removed_at: Some(stamp),
        };
        let delta = OrSet {
            elements: BTreeMap::from([(member.to_owned(), element)]),
        };
        self.merge(&delta);
        Some(delta)
    }

    /// Removes every member; returns the delta to spread, or `None` when the set is empty.
    pub fn clear(&mut self, stamp: Stamp) -> Option<OrSet> {
        let mut delta = OrSet::default();
        for member in self.members() {
            if let Some(d) = self.remove(&member, stamp.clone()) {
                delta.merge(&d);
            }
        }
        (!delta.elements.is_empty()).then_some(delta)
    }

    /// Union of dots and removed dots; true if anything changed.
    pub fn merge(&mut self, other: &OrSet) -> bool {
        let mut changed = false;
        for (member, element) in &other.elements {
            match self.elements.get_mut(member) {
                Some(held) => changed |= held.merge(element),
                None => {
                    self.elements.insert(member.clone(), element.clone());
                    changed = true;
                }
            }
        }
        changed
    }

    /// The members in the set, sorted.
    pub fn members(&self) -> Vec<String> {
        self.elements
            .iter()
            .filter(|(_, e)| e.is_present())
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// True while some member is in the set.
    pub fn is_present(&self) -> bool {
        self.elements.values().any(Element::is_present)
    }

    /// Forgets removes older than `horizon_ms`; true if nothing at all is left.
    pub fn collect(&mut self, horizon_ms: u64) -> bool {
        self.elements.retain(|_, e| !e.collect(horizon_ms));
        self.elements.is_empty()
    }

    /// The latest stamp of any add or remove.
    pub fn updated(&self) -> Option<&Stamp> {
        self.elements
            .values()
            .flat_map(|e| {
                e.adds
                    .iter()
                    .next_back()
                    .into_iter()
                    .chain(e.removed_at.as_ref())
            })
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(wall: u64, node: &str) -> Stamp {
        Stamp::new(wall, 0, node)
    }

    #[test]
    fn add_then_remove_then_add_again() {
        let mut s = OrSet::default();
        s.add("w1", stamp(1, "a"));
        s.add("w2", stamp(2, "a"));
        assert_eq!(s.members(), ["w1", "w2"]);
        assert!(s.remove("w1", stamp(3, "a")).is_some());
        assert_eq!(s.members(), ["w2"]);
        assert!(s.remove("w1", stamp(4, "a")).is_none(), "not in the set");
        s.add("w1", stamp(5, "a"));
        assert_eq!(s.members(), ["w1", "w2"]);
    }

    #[test]
    fn an_add_concurrent_with_a_remove_wins() {
        let mut x = OrSet::default();
        x.add("w", stamp(1, "a"));
        let mut y = x.clone();
        let remove = x.remove("w", stamp(2, "a")).expect("present");
        let add = y.add("w", stamp(2, "b"));
        x.merge(&add);
        y.merge(&remove);
        assert_eq!(x, y);
        assert_eq!(x.members(), ["w"]);
    }

    #[test]
    fn old_removes_are_collected_and_empty_sets_vanish() {
        let mut s = OrSet::default();
        s.add("w", stamp(1, "a"));
        s.add("v", stamp(2, "a"));
        s.remove("w", stamp(3, "a"));
        assert!(
            !s.collect(3),
            "the remove is not older than the horizon yet"
        );
        assert_eq!(s.elements.len(), 2);
        assert!(!s.collect(4));
        assert_eq!(s.elements.len(), 1, "w's tombstone is gone");
        s.clear(stamp(5, "a"));
        assert!(!s.is_present());
        assert!(s.collect(6));
    }

    #[test]
    fn clear_removes_every_member_in_one_delta() {
        let mut s = OrSet::default();
        s.add("a", stamp(1, "n"));
        s.add("b", stamp(2, "n"));
        let delta = s.clear(stamp(3, "n")).expect("two members");
        assert_eq!(delta.elements.len(), 2);
        assert!(s.members().is_empty());
        assert!(OrSet::default().clear(stamp(4, "n")).is_none());
    }
}
