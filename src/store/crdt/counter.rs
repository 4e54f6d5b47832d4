//! PN-counter: each replica counts its own increments and decrements (only ever growing), and
//! merging takes each replica's larger counts; the value is the sum. A G-counter is a
//! PN-counter that is only incremented.
//!
//! A replica is one process lifetime of a node (`name@start`), not the node: a node restarted
//! without its data starts counting from zero, and its new counts must add to the old ones
//! rather than hide below them in a max.
//!
//! A delete resets the counter to zero: it remembers the counts it saw (`reset`), and the value
//! is what was counted beyond them. Increments the delete did not see still count afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::store::clock::Stamp;

/// What one replica counted, and when it last counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Sum of its increments.
    pub inc: u64,
    /// Sum of its decrements (as a positive number).
    pub dec: u64,
    /// Stamp of its latest change.
    pub stamp: Stamp,
}

impl Part {
    /// Takes the larger of each field; true if that changed anything.
    fn merge(&mut self, other: &Part) -> bool {
        let before = (self.inc, self.dec);
        self.inc = self.inc.max(other.inc);
        self.dec = self.dec.max(other.dec);
        let stamp_newer = other.stamp > self.stamp;
        if stamp_newer {
            self.stamp = other.stamp.clone();
        }
        before != (self.inc, self.dec) || stamp_newer
    }

    /// Increments minus decrements.
    fn net(&self) -> i128 {
        i128::from(self.inc) - i128::from(self.dec)
    }
}

/// One key of a `counter` store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Each replica's counts.
    pub parts: BTreeMap<Arc<str>, Part>,
    /// The counts the latest delete saw, per replica.
    pub reset: BTreeMap<Arc<str>, Part>,
    /// Stamp of the latest delete.
    pub deleted_at: Option<Stamp>,
}

impl Counter {
    /// Adds `by` (negative: subtracts) to `replica`'s counts; returns the delta to spread (that
    /// replica's new counts).
    pub fn add(&mut self, replica: &Arc<str>, by: i64, stamp: Stamp) -> Counter {
        let part = self.parts.entry(replica.clone()).or_insert_with(|| Part {
            inc: 0,
            dec: 0,
            stamp: stamp.clone(),
        });
        if by >= 0 {
            part.inc = part.inc.saturating_add(by.unsigned_abs());
        } else {
            part.dec = part.dec.saturating_add(by.unsigned_abs());
        }
        part.stamp = stamp;
        let mut delta = Counter::default();
        delta.parts.insert(replica.clone(), part.clone());
        delta
    }

    /// Resets the value to zero; returns the delta to spread (the counts it reset, with the
    /// counts themselves, so a replica that had not seen them reads zero too).
    pub fn delete(&mut self, stamp: Stamp) -> Counter {
        let delta = Counter {
            parts: self.parts.clone(),
            reset: self.parts.clone(),
            deleted_at: Some(stamp),
        };
        self.merge(&delta);
        delta
    }

    /// Merges `other` field by field (largest counts, latest stamps); true if anything changed.
    pub fn merge(&mut self, other: &Counter) -> bool {
        let mut changed = merge_parts(&mut self.parts, &other.parts);
        changed |= merge_parts(&mut self.reset, &other.reset);
        if other.deleted_at > self.deleted_at {
            self.deleted_at = other.deleted_at.clone();
            changed = true;
        }
        changed
    }

    /// The sum of what every replica counted since the latest delete it saw, clamped to i64.
    pub fn value(&self) -> i64 {
        let counted: i128 = self.parts.values().map(Part::net).sum();
        let reset: i128 = self.reset.values().map(Part::net).sum();
        let value = counted - reset;
        i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
    }

    /// Present unless deleted with nothing counted since.
    pub fn is_present(&self) -> bool {
        self.deleted_at.is_none()
            || self
                .parts
                .iter()
                .any(|(replica, part)| self.reset.get(replica) != Some(part))
    }

    /// A deleted counter with nothing counted since, deleted before `horizon_ms`, may be
    /// forgotten.
    pub fn is_collectable(&self, horizon_ms: u64) -> bool {
        !self.is_present()
            && self
                .deleted_at
                .as_ref()
                .is_some_and(|at| at.wall_ms < horizon_ms)
    }

    /// The latest stamp of any change.
    pub fn updated(&self) -> Option<&Stamp> {
        let parts = self.parts.values().map(|p| &p.stamp);
        parts.chain(self.deleted_at.as_ref()).max()
    }
}

fn merge_parts(mine: &mut BTreeMap<Arc<str>, Part>, theirs: &BTreeMap<Arc<str>, Part>) -> bool {
    let mut changed = false;
    for (replica, part) in theirs {
        match mine.get_mut(replica) {
            Some(held) => changed |= held.merge(part),
            None => {
                mine.insert(replica.clone(), part.clone());
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(wall: u64) -> Stamp {
        Stamp::new(wall, 0, "n")
    }

    #[test]
    fn the_value_is_the_sum_of_every_replica() {
        let (a, b): (Arc<str>, Arc<str>) = ("a@1".into(), "b@1".into());
        let mut x = Counter::default();
        let d1 = x.add(&a, 5, stamp(1));
        let mut y = Counter::default();
        let d2 = y.add(&b, -2, stamp(2));
        assert!(x.merge(&d2));
        assert!(y.merge(&d1));
        assert_eq!((x.value(), y.value()), (3, 3));
        assert_eq!(x, y);
        assert!(!x.merge(&d1), "a delta merged twice changes nothing");
    }

    #[test]
    fn a_delete_resets_to_zero_and_later_increments_count() {
        let a: Arc<str> = "a@1".into();
        let mut x = Counter::default();
        x.add(&a, 7, stamp(1));
        let delete = x.delete(stamp(2));
        assert_eq!(x.value(), 0);
        assert!(!x.is_present());
        assert!(x.is_collectable(3) && !x.is_collectable(2));
        x.add(&a, 2, stamp(3));
        assert_eq!(x.value(), 2);
        assert!(x.is_present());
        // A replica that gets the delete after the later increment agrees.
        let mut y = Counter::default();
        y.add(&a, 7, stamp(1));
        y.merge(&x);
        y.merge(&delete);
        assert_eq!(y.value(), 2);
    }

    #[test]
    fn a_concurrent_increment_survives_a_delete_that_did_not_see_it() {
        let (a, b): (Arc<str>, Arc<str>) = ("a@1".into(), "b@1".into());
        let mut x = Counter::default();
        x.add(&a, 4, stamp(1));
        let mut y = x.clone();
        let inc = y.add(&b, 1, stamp(2));
        let delete = x.delete(stamp(2));
        x.merge(&inc);
        y.merge(&delete);
        assert_eq!((x.value(), y.value()), (1, 1));
    }

    #[test]
    fn huge_counts_saturate_instead_of_wrapping() {
        let a: Arc<str> = "a@1".into();
        let mut x = Counter::default();
        x.add(&a, i64::MAX, stamp(1));
        x.add(&a, i64::MAX, stamp(2));
        x.add(&a, i64::MAX, stamp(3));
        assert_eq!(x.value(), i64::MAX);
        x.add(&a, i64::MIN, stamp(4));
        assert!(x.value() > 0);
    }
}
