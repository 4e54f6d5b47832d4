//! Last-writer-wins register: the value of the write with the highest [`Stamp`]. A delete is a
//! write of "no value" (a tombstone), so a delete and a concurrent put resolve like two puts.

use crate::store::clock::Stamp;

/// One key of an `lww` store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lww {
    /// The stamp of the winning write.
    pub stamp: Stamp,
    /// Its value (JSON text), or `None` for a delete.
    pub value: Option<Vec<u8>>,
}

impl Lww {
    /// A put (`Some`) or delete (`None`) stamped `stamp`: the whole state, and its own delta.
    pub fn write(stamp: Stamp, value: Option<Vec<u8>>) -> Self {
        Lww { stamp, value }
    }

    /// Takes `other` if it was written later; true if that changed anything. Two registers
    /// with the same stamp come from one write, so they hold the same value; should they not
    /// (a bug or a forgery), the larger value wins, so every replica still picks the same one.
    pub fn merge(&mut self, other: &Lww) -> bool {
        let newer = match other.stamp.cmp(&self.stamp) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal => other.value > self.value,
            std::cmp::Ordering::Less => false,
        };
        if newer {
            *self = other.clone();
        }
        newer
    }

    /// True unless the last write was a delete.
    pub fn is_present(&self) -> bool {
        self.value.is_some()
    }

    /// A delete older than `horizon_ms` may be forgotten: every replica is assumed to have it.
    pub fn is_collectable(&self, horizon_ms: u64) -> bool {
        self.value.is_none() && self.stamp.wall_ms < horizon_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(wall: u64, node: &str, v: &str) -> Lww {
        Lww::write(Stamp::new(wall, 0, node), Some(v.as_bytes().to_vec()))
    }

    #[test]
    fn the_later_write_wins_in_either_order() {
        let (early, late) = (put(1, "a", "1"), put(2, "b", "2"));
        let mut x = early.clone();
        assert!(x.merge(&late));
        let mut y = late.clone();
        assert!(!y.merge(&early));
        assert_eq!(x, y);
        assert_eq!(x.value.as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn a_delete_is_a_write_and_collectable_after_the_horizon() {
        let mut x = put(1, "a", "1");
        let delete = Lww::write(Stamp::new(5, 0, "b"), None);
        assert!(x.merge(&delete));
        assert!(!x.is_present());
        assert!(!x.is_collectable(5));
        assert!(x.is_collectable(6));
        assert!(
            !put(1, "a", "1").is_collectable(100),
            "values are never collected"
        );
    }

    #[test]
    fn equal_stamps_resolve_the_same_everywhere() {
        let (p, q) = (put(1, "a", "p"), put(1, "a", "q"));
        let mut x = p.clone();
        x.merge(&q);
        let mut y = q.clone();
        y.merge(&p);
        assert_eq!(x, y);
    }
}
