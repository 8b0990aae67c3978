//! The key types a workload can use (`u64` and `String`): how key number `i` is made, and how
//! an operation gets its key.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::hash::Hash;

use clap::ValueEnum;

/// How key number `i` of the key space is made (`--key-pattern`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum KeyPattern {
    /// Pseudo-random ids: `i` through a 64-bit mix, so every hasher sees scattered keys.
    #[default]
    Mixed,
    /// `0, 1, 2, ...` (for strings, `i` in zero-padded decimal): auto-increment ids, the keys
    /// on which an identity-like hasher puts neighbours in neighbouring slots.
    Sequential,
}

impl KeyPattern {
    /// The name in the output.
    pub fn name(self) -> &'static str {
        match self {
            KeyPattern::Mixed => "mixed",
            KeyPattern::Sequential => "sequential",
        }
    }

    /// Key number `i` in this pattern.
    pub fn nth<K: BenchKey>(self, i: u64) -> K {
        match self {
            KeyPattern::Mixed => K::nth(i),
            KeyPattern::Sequential => K::sequential(i),
        }
    }
}

/// A key type the benchmark can generate: `u64` or `String`.
pub trait BenchKey: Clone + Hash + Eq + Ord + Debug + Send + Sync + 'static {
    /// Key number `i` of the mixed key space. Distinct `i` give distinct keys.
    fn nth(i: u64) -> Self;

    /// Key number `i` of the sequential key space. Distinct `i` give distinct keys.
    fn sequential(i: u64) -> Self;

    /// What an operation holds of its key: the key itself where it is computed, a reference
    /// into the key table where it is loaded.
    type Key<'a>: Borrow<Self>
    where
        Self: 'a;

    /// Key number `index`, whose key table is `keys` (`keys[i] == sequential(i)` when
    /// `SEQUENTIAL`, else `keys[i] == nth(i)`). The pattern is a constant so that the choice
    /// costs nothing per operation.
    ///
    /// Loading a key from a table of a million keys is a cache miss of the harness's own in
    /// every operation, and the map's own lookup depends on it, so it would add the same
    /// memory latency to every map and hide how they differ. A key that is cheaper to compute
    /// than to load is therefore computed.
    fn key<const SEQUENTIAL: bool>(keys: &[Self], index: u32) -> Self::Key<'_>;
}

/// The SplitMix64 finalizer: a bijection on `u64`, so keys look random but stay distinct.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl BenchKey for u64 {
    /// Pseudo-random 63-bit ids. `AtomicMap` keeps 64-bit keys below 2^63 inside the slot and
    /// boxes the others; ids, counters and timestamps fit, so the benchmark uses that range
    /// (every other map is indifferent to it).
    #[inline]
    fn nth(i: u64) -> Self {
        mix64(i) >> 1
    }

    #[inline]
    fn sequential(i: u64) -> Self {
        i
    }

    type Key<'a> = u64;

    /// Computed: a few multiplications or nothing, no memory access.
    #[inline(always)]
    fn key<const SEQUENTIAL: bool>(_keys: &[Self], index: u32) -> u64 {
        if SEQUENTIAL {
            Self::sequential(u64::from(index))
        } else {
            Self::nth(u64::from(index))
        }
    }
}

impl BenchKey for String {
    /// 16 to 32 bytes: a unique prefix `k<hex index>-` padded with pseudo-random letters.
    fn nth(i: u64) -> Self {
        let mut bits = mix64(i);
        let len = 16 + (bits % 17) as usize;
        let mut key = format!("k{i:x}-");
        while key.len() < len {
            bits = mix64(bits);
            key.push((b'a' + (bits % 26) as u8) as char);
        }
        key
    }

    /// 16 bytes: `key` and the index in 13 zero-padded decimal digits.
    fn sequential(i: u64) -> Self {
        format!("key{i:013}")
    }

    type Key<'a> = &'a String;

    /// From the table: building a `String` would allocate.
    #[inline(always)]
    fn key<const SEQUENTIAL: bool>(keys: &[Self], index: u32) -> &String {
        &keys[index as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn string_keys_are_distinct_and_16_to_32_bytes() {
        let keys: Vec<String> = (0..10_000).map(String::nth).collect();
        assert!(keys.iter().all(|k| (16..=32).contains(&k.len())));
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
    }

    /// Operations must see exactly the key the table holds, whether it is computed or loaded.
    fn assert_operations_use_the_table_keys<K: BenchKey>() {
        for pattern in [KeyPattern::Mixed, KeyPattern::Sequential] {
            let keys: Vec<K> = (0..1_000).map(|i| pattern.nth(i)).collect();
            for (index, key) in keys.iter().enumerate() {
                let used = match pattern {
                    KeyPattern::Mixed => K::key::<false>(&keys, index as u32).borrow().clone(),
                    KeyPattern::Sequential => K::key::<true>(&keys, index as u32).borrow().clone(),
                };
                assert_eq!(&used, key, "{pattern:?} key {index}");
            }
        }
    }

    #[test]
    fn operations_use_the_table_keys() {
        assert_operations_use_the_table_keys::<u64>();
        assert_operations_use_the_table_keys::<String>();
    }

    #[test]
    fn sequential_keys_count_up() {
        let keys: Vec<u64> = (0..5).map(|i| KeyPattern::Sequential.nth(i)).collect();
        assert_eq!(keys, [0, 1, 2, 3, 4]);
        let text: String = KeyPattern::Sequential.nth(42);
        assert_eq!(text, "key0000000000042");
    }

    #[test]
    fn u64_keys_are_distinct() {
        let keys: HashSet<u64> = (0..10_000).map(u64::nth).collect();
        assert_eq!(keys.len(), 10_000);
    }
}
