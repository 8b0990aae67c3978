//! The one adapter trait every benchmarked map implements.
//!
//! A map appears exactly once, as a type implementing [`MapAdapter`]. The runner is generic
//! over that type and over the hasher, so the timed loop is monomorphised per map and hasher:
//! no dynamic dispatch per operation. Each benchmark thread asks the adapter for a [`Worker`]
//! and runs its operation stream through it; for the concurrent maps a worker is just a
//! reference to the shared map (plus an epoch guard for papaya and flurry), for `LIMIT` it is
//! the thread's private map.
//!
//! Taking a snapshot is an optional capability ([`MapAdapter::SNAPSHOT`]) rather than a second
//! trait, so the runner can ask any adapter whether it has one: only atomicmap's maps do, and
//! the snapshot workload skips the others instead of imitating a snapshot with iteration.

use std::collections::HashMap;

use atomicmap::{MapSnapshot, Subscription};

use crate::hasher::BenchHasher;
use crate::keys::BenchKey;

/// A point-in-time snapshot of a map under test: the type every atomicmap map's `snapshot()`
/// returns.
pub type BenchSnapshot<K, S> = MapSnapshot<K, u64, S>;

/// How to take a snapshot of map `A`.
pub type TakeSnapshot<A, K, S> = fn(&A) -> BenchSnapshot<K, S>;

/// One map under test, hashing with `S`. Values are always `u64`.
pub trait MapAdapter<K: BenchKey, S: BenchHasher>: Send + Sync + Sized {
    /// True when every thread works on its own unshared map (only `LIMIT`): each worker is
    /// then prefilled with the whole key space and `len` counts only its own entries.
    const PRIVATE: bool = false;

    /// How to take a snapshot of the map, for the maps that have `snapshot()`; `None` for the
    /// others, which the snapshot workload does not run.
    const SNAPSHOT: Option<TakeSnapshot<Self, K, S>> = None;

    /// What one benchmark thread holds while it runs operations.
    type Worker<'a>: Worker<K>
    where
        Self: 'a;

    /// An empty map, presized for `capacity` entries when given, hashing with `hasher`.
    fn build(capacity: Option<usize>, hasher: S) -> Self;

    /// An empty map for a run over `key_space` distinct keys, presized for `capacity` entries
    /// when given. Only a map that cannot grow needs the key space (`floor`); the others are
    /// built as by [`MapAdapter::build`].
    fn build_for_keys(key_space: usize, capacity: Option<usize>, hasher: S) -> Self {
        let _ = key_space;
        Self::build(capacity, hasher)
    }

    /// A worker for the calling thread.
    fn worker(&self) -> Self::Worker<'_>;
}

/// The capture workload's subscriber's copy of a map: a plain `HashMap` with the fast hasher
/// (the subscriber's own cost is not what the workload measures).
pub type Replica<K> = HashMap<K, u64, foldhash::fast::FixedState>;

/// A map with change capture on, for the capture workload.
pub trait CapturingAdapter<K: BenchKey, S: BenchHasher>: MapAdapter<K, S> {
    /// The map's entries now, and a lossless subscription to every later change (no gap).
    fn snapshot_and_subscribe(&self) -> (Replica<K>, Subscription<K, u64>);
    /// The map's entries now.
    fn contents(&self) -> Replica<K>;
}

/// The operations a benchmark thread runs on a map.
pub trait Worker<K> {
    /// The value of `key`, if present.
    fn get(&mut self, key: &K) -> Option<u64>;
    /// Calls `visit` with each key's index in `keys` and its value, in order. Maps without a
    /// batched lookup (every one but `AtomicMap`) look the keys up one at a time, which is
    /// what their users would write.
    #[inline]
    fn get_each(&mut self, keys: &[&K], mut visit: impl FnMut(usize, Option<u64>)) {
        for (index, key) in keys.iter().enumerate() {
            visit(index, self.get(key));
        }
    }
    /// Insert `key`, overwriting any previous value.
    fn insert(&mut self, key: K, value: u64);
    /// Inserts each entry, in order. Maps without a batched insert (every one but `AtomicMap`)
    /// insert one entry at a time, which is what their users would write.
    #[inline]
    fn insert_each(&mut self, entries: impl Iterator<Item = (K, u64)>) {
        for (key, value) in entries {
            self.insert(key, value);
        }
    }
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
