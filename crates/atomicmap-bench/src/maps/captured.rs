//! atomicmap's maps with change capture on (`CapturedMap`), for the capture workload: each is
//! the same backend as its plain adapter, so the two rows differ only by capture.

use std::collections::HashMap;

use ::atomicmap::capture::{
    CaptureBackend, CapturedMap, SubscribeOptions, Subscription, Versioned,
};
use ::atomicmap::{AtomicMap, RcuMap, ShardedMap};

use crate::adapter::{BenchHasher, BenchKey, CapturingAdapter, MapAdapter, Worker};

/// A `CapturedMap` over backend `M`; one node, so versions come from one clock.
pub struct CapturedAdapter<K, M>(CapturedMap<K, u64, M>);

/// `AtomicMap` with capture on.
pub type CapturedAtomicMapAdapter<K> =
    CapturedAdapter<K, AtomicMap<K, Versioned<u64>, BenchHasher>>;
/// `ShardedMap` with capture on.
pub type CapturedShardedAdapter<K> = CapturedAdapter<K, ShardedMap<K, Versioned<u64>, BenchHasher>>;
/// `RcuMap` (`HotSwap`) with capture on.
pub type CapturedHotSwapAdapter<K> = CapturedAdapter<K, RcuMap<K, Versioned<u64>, BenchHasher>>;

/// How each backend is built, as its plain adapter builds it.
pub trait BuildBackend: Sized {
    /// An empty backend, presized for `capacity` entries when given.
    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self;
}

impl<K: BenchKey> BuildBackend for AtomicMap<K, Versioned<u64>, BenchHasher> {
    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self {
        AtomicMap::with_capacity_and_hasher(capacity.unwrap_or(0), hasher)
    }
}

impl<K: BenchKey> BuildBackend for ShardedMap<K, Versioned<u64>, BenchHasher> {
    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self {
        ShardedMap::with_options(
            capacity.unwrap_or(0),
            ::atomicmap::sharded::default_shard_count(),
            hasher,
        )
        .expect("the default shard count is valid")
    }
}

impl<K: BenchKey> BuildBackend for RcuMap<K, Versioned<u64>, BenchHasher> {
    fn build(_capacity: Option<usize>, hasher: BenchHasher) -> Self {
        RcuMap::with_hasher(hasher)
    }
}

impl<K, M> MapAdapter<K> for CapturedAdapter<K, M>
where
    K: BenchKey,
    M: CaptureBackend<K, u64> + BuildBackend,
{
    type Worker<'a>
        = &'a Self
    where
        Self: 'a;

    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self {
        CapturedAdapter(CapturedMap::with_backend(M::build(capacity, hasher), 0))
    }

    fn worker(&self) -> &Self {
        self
    }
}

impl<K, M> CapturingAdapter<K> for CapturedAdapter<K, M>
where
    K: BenchKey,
    M: CaptureBackend<K, u64> + BuildBackend,
{
    fn snapshot_and_subscribe(&self) -> (HashMap<K, u64>, Subscription<K, u64>) {
        let (snapshot, subscription) = self.0.snapshot_and_subscribe(SubscribeOptions::default());
        (snapshot.to_map(), subscription)
    }

    fn contents(&self) -> HashMap<K, u64> {
        self.0.snapshot().to_map()
    }
}

impl<K, M> Worker<K> for &CapturedAdapter<K, M>
where
    K: BenchKey,
    M: CaptureBackend<K, u64>,
{
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
