//! The other crates' concurrent maps, each used the way its documentation recommends.

use crate::adapter::{MapAdapter, Worker};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;

/// `dashmap::DashMap` (sharded `RwLock`s over hashbrown tables).
pub struct DashMapAdapter<K, S>(dashmap::DashMap<K, u64, S>);

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for DashMapAdapter<K, S> {
    type Worker<'a> = &'a Self;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        DashMapAdapter(dashmap::DashMap::with_capacity_and_hasher(
            capacity.unwrap_or(0),
            hasher,
        ))
    }

    fn worker(&self) -> &Self {
        self
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for &DashMapAdapter<K, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.0.get(key).map(|v| *v)
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.0.insert(key, value);
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.0.remove(key).is_some()
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        match self.0.get_mut(key) {
            Some(mut v) => {
                *v += 1;
                true
            }
            None => false,
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// `papaya::HashMap` (lock-free, epoch-based reclamation via seize).
pub struct PapayaAdapter<K, S>(papaya::HashMap<K, u64, S>);

/// A papaya worker: the map plus a guard that is re-taken every batch, as papaya's docs
/// suggest for long-running loops (one guard per operation would pay an enter/leave each).
pub struct PapayaWorker<'a, K, S> {
    map: &'a papaya::HashMap<K, u64, S>,
    guard: papaya::LocalGuard<'a>,
}

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for PapayaAdapter<K, S> {
    type Worker<'a> = PapayaWorker<'a, K, S>;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        PapayaAdapter(papaya::HashMap::with_capacity_and_hasher(
            capacity.unwrap_or(0),
            hasher,
        ))
    }

    fn worker(&self) -> PapayaWorker<'_, K, S> {
        PapayaWorker {
            map: &self.0,
            guard: self.0.guard(),
        }
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for PapayaWorker<'_, K, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.map.get(key, &self.guard).copied()
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.map.insert(key, value, &self.guard);
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.map.remove(key, &self.guard).is_some()
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        // papaya's `update` takes the key by value; for `String` keys that is a clone.
        self.map
            .update(key.clone(), |v| v + 1, &self.guard)
            .is_some()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn repin(&mut self) {
        self.guard = self.map.guard();
    }
}

/// `scc::HashMap` (bucket locks, epoch-based reclamation via sdd), synchronous API.
pub struct SccAdapter<K, S: BenchHasher>(scc::HashMap<K, u64, S>);

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for SccAdapter<K, S> {
    type Worker<'a> = &'a Self;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        SccAdapter(scc::HashMap::with_capacity_and_hasher(
            capacity.unwrap_or(0),
            hasher,
        ))
    }

    fn worker(&self) -> &Self {
        self
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for &SccAdapter<K, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.0.read_sync(key, |_, v| *v)
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.0.upsert_sync(key, value);
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.0.remove_sync(key).is_some()
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        self.0.update_sync(key, |_, v| *v += 1).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// `flurry::HashMap` (a port of Java's ConcurrentHashMap, reclamation via seize).
pub struct FlurryAdapter<K, S>(flurry::HashMap<K, u64, S>);

/// A flurry worker: the map plus a guard re-taken every batch.
pub struct FlurryWorker<'a, K, S> {
    map: &'a flurry::HashMap<K, u64, S>,
    guard: flurry::Guard<'a>,
}

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for FlurryAdapter<K, S> {
    type Worker<'a> = FlurryWorker<'a, K, S>;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        FlurryAdapter(flurry::HashMap::with_capacity_and_hasher(
            capacity.unwrap_or(0),
            hasher,
        ))
    }

    fn worker(&self) -> FlurryWorker<'_, K, S> {
        FlurryWorker {
            map: &self.0,
            guard: self.0.guard(),
        }
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for FlurryWorker<'_, K, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.map.get(key, &self.guard).copied()
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.map.insert(key, value, &self.guard);
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.map.remove(key, &self.guard).is_some()
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        self.map
            .compute_if_present(key, |_, v| Some(v + 1), &self.guard)
            .is_some()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn repin(&mut self) {
        self.guard = self.map.guard();
    }
}
