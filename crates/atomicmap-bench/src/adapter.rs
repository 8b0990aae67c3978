//! The one adapter trait every benchmarked map implements, and the key types and hasher they
//! share.
//!
//! A map appears exactly once, as a type implementing [`MapAdapter`]. The runner is generic
//! over that type, so the timed loop is monomorphised per map: no dynamic dispatch per
//! operation. Each benchmark thread asks the adapter for a [`Worker`] and runs its operation
//! stream through it; for the concurrent maps a worker is just a reference to the shared map
//! (plus an epoch guard for papaya and flurry), for `LIMIT` it is the thread's private map.
//!
//! Taking a snapshot is an optional capability ([`MapAdapter::SNAPSHOT`]) rather than a second
//! trait, so the runner can ask any adapter whether it has one: only atomicmap's maps do, and
//! the snapshot workload skips the others instead of imitating a snapshot with iteration.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash, Hasher};

use atomicmap::{MapSnapshot, Subscription};

/// A key type the benchmark can generate: `u64` or `String`.
pub trait BenchKey: Clone + Hash + Eq + Ord + Debug + Send + Sync + 'static {
    /// Key number `i` of the key space. Distinct `i` give distinct keys.
    fn nth(i: u64) -> Self;

    /// Runs `operation` on key number `index`, whose key table is `keys` (`keys[i] == nth(i)`).
    ///
    /// Loading a key from a table of a million keys is a cache miss of the harness's own in
    /// every operation, and the map's own lookup depends on it, so it would add the same
    /// memory latency to every map and hide how they differ. A key that is cheaper to compute
    /// than to load is therefore computed.
    fn with_key<R>(keys: &[Self], index: u32, operation: impl FnOnce(&Self) -> R) -> R;
}

/// The SplitMix64 finalizer: a bijection on `u64`, so keys look random but stay distinct.
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
    fn nth(i: u64) -> Self {
        mix64(i) >> 1
    }

    /// Computed: a few multiplications, no memory access.
    #[inline(always)]
    fn with_key<R>(_keys: &[Self], index: u32, operation: impl FnOnce(&Self) -> R) -> R {
        operation(&Self::nth(u64::from(index)))
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

    /// From the table: building a `String` would allocate.
    #[inline(always)]
    fn with_key<R>(keys: &[Self], index: u32, operation: impl FnOnce(&Self) -> R) -> R {
        operation(&keys[index as usize])
    }
}

/// The hasher every map in one run uses, chosen on the command line.
///
/// An enum instead of a type parameter keeps the number of monomorphised runners (and the
/// compile time) down; the cost is one well-predicted branch per hash, paid equally by all
/// maps including `LIMIT`.
#[derive(Clone, Debug)]
pub enum BenchHasher {
    /// `foldhash::fast` with a fixed seed (the default).
    Foldhash(foldhash::fast::FixedState),
    /// The standard library's SipHash-1-3 with random keys.
    Std(std::hash::RandomState),
}

impl BenchHasher {
    /// The hasher named on the command line.
    pub fn from_kind(kind: crate::cli::HasherKind) -> Self {
        match kind {
            crate::cli::HasherKind::Foldhash => {
                Self::Foldhash(foldhash::fast::FixedState::default())
            }
            crate::cli::HasherKind::Std => Self::Std(std::hash::RandomState::new()),
        }
    }
}

/// The running state of a [`BenchHasher`].
pub enum BenchHasherState {
    /// See [`BenchHasher::Foldhash`].
    Foldhash(foldhash::fast::FoldHasher<'static>),
    /// See [`BenchHasher::Std`].
    Std(std::hash::DefaultHasher),
}

impl BuildHasher for BenchHasher {
    type Hasher = BenchHasherState;

    #[inline]
    fn build_hasher(&self) -> BenchHasherState {
        match self {
            Self::Foldhash(s) => BenchHasherState::Foldhash(s.build_hasher()),
            Self::Std(s) => BenchHasherState::Std(s.build_hasher()),
        }
    }
}

impl Hasher for BenchHasherState {
    #[inline]
    fn finish(&self) -> u64 {
        match self {
            Self::Foldhash(h) => h.finish(),
            Self::Std(h) => h.finish(),
        }
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        match self {
            Self::Foldhash(h) => h.write(bytes),
            Self::Std(h) => h.write(bytes),
        }
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        match self {
            Self::Foldhash(h) => h.write_u64(i),
            Self::Std(h) => h.write_u64(i),
        }
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        match self {
            Self::Foldhash(h) => h.write_usize(i),
            Self::Std(h) => h.write_usize(i),
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        match self {
            Self::Foldhash(h) => h.write_u8(i),
            Self::Std(h) => h.write_u8(i),
        }
    }
}

/// A point-in-time snapshot of a map under test: the type every atomicmap map's `snapshot()`
/// returns.
pub type BenchSnapshot<K> = MapSnapshot<K, u64, BenchHasher>;

/// One map under test. Values are always `u64`.
pub trait MapAdapter<K: BenchKey>: Send + Sync + Sized {
    /// True when every thread works on its own unshared map (only `LIMIT`): each worker is
    /// then prefilled with the whole key space and `len` counts only its own entries.
    const PRIVATE: bool = false;

    /// How to take a snapshot of the map, for the maps that have `snapshot()`; `None` for the
    /// others, which the snapshot workload does not run.
    const SNAPSHOT: Option<fn(&Self) -> BenchSnapshot<K>> = None;

    /// What one benchmark thread holds while it runs operations.
    type Worker<'a>: Worker<K>
    where
        Self: 'a;

    /// An empty map, presized for `capacity` entries when given, hashing with `hasher`.
    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self;

    /// A worker for the calling thread.
    fn worker(&self) -> Self::Worker<'_>;
}

/// The capture workload's subscriber's copy of a map: a plain `HashMap` with the fast hasher
/// (the subscriber's own cost is not what the workload measures).
pub type Replica<K> = HashMap<K, u64, foldhash::fast::FixedState>;

/// A map with change capture on, for the capture workload.
pub trait CapturingAdapter<K: BenchKey>: MapAdapter<K> {
    /// The map's entries now, and a lossless subscription to every later change (no gap).
    fn snapshot_and_subscribe(&self) -> (Replica<K>, Subscription<K, u64>);
    /// The map's entries now.
    fn contents(&self) -> Replica<K>;
}

/// The operations a benchmark thread runs on a map.
pub trait Worker<K> {
    /// The value of `key`, if present.
    fn get(&mut self, key: &K) -> Option<u64>;
    /// Insert `key`, overwriting any previous value.
    fn insert(&mut self, key: K, value: u64);
    /// Remove `key`; true if it was present.
    fn remove(&mut self, key: &K) -> bool;
    /// Add one to the value of `key` in place; true if it was present.
    fn update(&mut self, key: &K) -> bool;
    /// Entries in the map this worker sees.
    fn len(&self) -> usize;
    /// Called between batches of operations. Epoch-based maps drop and re-take their guard
    /// here, so one guard never pins garbage for longer than a batch.
    fn repin(&mut self) {}
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
        let keys: Vec<K> = (0..1_000).map(K::nth).collect();
        for (index, key) in keys.iter().enumerate() {
            let used = K::with_key(&keys, index as u32, K::clone);
            assert_eq!(&used, key, "key {index}");
        }
    }

    #[test]
    fn operations_use_the_table_keys() {
        assert_operations_use_the_table_keys::<u64>();
        assert_operations_use_the_table_keys::<String>();
    }

    #[test]
    fn u64_keys_are_distinct() {
        let keys: HashSet<u64> = (0..10_000).map(u64::nth).collect();
        assert_eq!(keys.len(), 10_000);
    }
}
