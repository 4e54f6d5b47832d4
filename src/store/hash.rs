//! The 64-bit hash anti-entropy compares: FNV-1a over the bytes, then the SplitMix64 finalizer,
//! so every bit depends on every input byte (bucket indexes are the top bits). Stable across
//! builds and platforms, unlike std's `DefaultHasher`: two nodes of different versions must
//! hash one state alike. Not a defence against forgery: only key holders reach the stores.

/// Hash of `parts`, each length-prefixed so `("ab", "c")` and `("a", "bc")` differ.
pub fn hash(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for part in parts {
        for byte in (part.len() as u64).to_le_bytes().iter().chain(part.iter()) {
            h ^= u64::from(*byte);
            h = h.wrapping_mul(PRIME);
        }
    }
    finalize(h)
}

/// SplitMix64's finalizer: a bijection that spreads every input bit over the output.
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bucket of a location hash among `2^bits` buckets (its top bits).
pub fn bucket(location: u64, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        usize::try_from(location >> (64 - bits.min(63))).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_delimited_and_the_hash_is_stable() {
        assert_ne!(hash(&[b"ab", b"c"]), hash(&[b"a", b"bc"]));
        assert_eq!(hash(&[b"workers", b"w1"]), hash(&[b"workers", b"w1"]));
        // Pinned: a change of the function would make old and new nodes disagree forever.
        assert_eq!(format!("{:016x}", hash(&[b"meshd"])), "525ae98df23e0686");
    }

    #[test]
    fn buckets_are_the_top_bits_and_spread_evenly() {
        assert_eq!(bucket(u64::MAX, 0), 0);
        assert_eq!(bucket(u64::MAX, 4), 15);
        assert_eq!(bucket(1 << 60, 4), 1);
        let mut counts = [0usize; 16];
        for i in 0..16_000u32 {
            counts[bucket(hash(&[&i.to_le_bytes()]), 4)] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}
