//! This project's maps from the `atomicmap` crate.

use ::atomicmap::{AtomicMap, MapRef, RcuMap, ReadMostlyMap, ShardedMap};

use crate::adapter::{MapAdapter, TakeSnapshot, Worker};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;

/// `ReadMostlyMap`: Go `sync.Map` semantics. Presized runs presize its dirty maps.
pub struct ReadMostlyAdapter<K, S>(ReadMostlyMap<K, u64, S>);

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for ReadMostlyAdapter<K, S> {
    const SNAPSHOT: Option<TakeSnapshot<Self, K, S>> = Some(|map| map.0.snapshot());

    type Worker<'a> = &'a Self;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        ReadMostlyAdapter(ReadMostlyMap::with_capacity_and_hasher(
            capacity.unwrap_or(0),
            hasher,
        ))
    }

    fn worker(&self) -> &Self {
        self
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for &ReadMostlyAdapter<K, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.0.load(key)
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.0.store(key, value);
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.0.delete(key)
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        // sync.Map has no in-place update: the idiom is a load + CompareAndSwap loop.
        loop {
            let Some(current) = self.0.load(key) else {
                return false;
            };
            if self.0.compare_and_swap(key, &current, current + 1) {
                return true;
            }
        }
    }

    fn len(&self) -> usize {
        let mut n = 0;
        self.0.range(|_, _| {
            n += 1;
            true
        });
        n
    }
}

/// `ShardedMap` with its default shard count (scaled to the cores).
pub struct ShardedAdapter<K, S>(ShardedMap<K, u64, S>);

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for ShardedAdapter<K, S> {
    const SNAPSHOT: Option<TakeSnapshot<Self, K, S>> = Some(|map| map.0.snapshot());

    type Worker<'a> = &'a Self;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        ShardedAdapter(match capacity {
            None => ShardedMap::with_hasher(hasher),
            Some(capacity) => ShardedMap::with_capacity_and_hasher(capacity, hasher),
        })
    }

    fn worker(&self) -> &Self {
        self
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for &ShardedAdapter<K, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.0.get(key)
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
        self.0.update(key, |v| v + 1).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// `RcuMap`, the map published whole through a `HotSwap` cell: every write publishes a new
/// persistent map. Built for
/// read-mostly configuration, so write-heavy workloads show its cost; no capacity hint.
pub struct RcuMapAdapter<K, S>(RcuMap<K, u64, S>);

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for RcuMapAdapter<K, S> {
    const SNAPSHOT: Option<TakeSnapshot<Self, K, S>> = Some(|map| map.0.snapshot());

    type Worker<'a> = &'a Self;

    fn build(_capacity: Option<usize>, hasher: S) -> Self {
        RcuMapAdapter(RcuMap::with_hasher(hasher))
    }

    fn worker(&self) -> &Self {
        self
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for &RcuMapAdapter<K, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.0.get(key)
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
        self.0.update(key, |v| v + 1).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// `AtomicMap`. Like papaya's and flurry's, its worker keeps one pin ([`AtomicMap::pin`]) for a
/// batch of operations and re-pins between batches, so the per-operation pin is amortised the
/// same way for all three.
pub struct AtomicMapAdapter<K: BenchKey, S: BenchHasher>(AtomicMap<K, u64, S>);

/// A thread's pinned handle on the shared `AtomicMap`.
pub struct AtomicMapWorker<'a, K: BenchKey, S: BenchHasher> {
    map: &'a AtomicMap<K, u64, S>,
    pinned: MapRef<'a, K, u64, S>,
}

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for AtomicMapAdapter<K, S> {
    const SNAPSHOT: Option<TakeSnapshot<Self, K, S>> = Some(|map| map.0.snapshot());

    type Worker<'a> = AtomicMapWorker<'a, K, S>;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        AtomicMapAdapter(match capacity {
            None => AtomicMap::with_hasher(hasher),
            Some(capacity) => AtomicMap::with_capacity_and_hasher(capacity, hasher),
        })
    }

    fn worker(&self) -> AtomicMapWorker<'_, K, S> {
        AtomicMapWorker {
            map: &self.0,
            pinned: self.0.pin(),
        }
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for AtomicMapWorker<'_, K, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.pinned.get(key).map(|value| *value)
    }

    #[inline]
    fn get_each(&mut self, keys: &[&K], mut visit: impl FnMut(usize, Option<u64>)) {
        self.pinned
            .get_each(keys, |index, value| visit(index, value.copied()));
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.pinned.insert(key, value);
    }

    #[inline]
    fn insert_each(&mut self, entries: impl Iterator<Item = (K, u64)>) {
        self.pinned.insert_all(entries);
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.pinned.remove(key).is_some()
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        self.pinned.update(key, |v| v + 1).is_some()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn repin(&mut self) {
        self.pinned.refresh();
    }
}
