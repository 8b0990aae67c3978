//! The lock-based baselines: one `RwLock<HashMap>`, and 64 of them chosen by hash (the plain
//! sharded map that `ShardedMap` is measured against).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::RwLock;

use crate::adapter::{BenchHasher, BenchKey, MapAdapter, Worker};

/// A std `HashMap` behind one std `RwLock`.
pub struct RwLockAdapter<K>(RwLock<HashMap<K, u64, BenchHasher>>);

fn new_map<K>(capacity: Option<usize>, hasher: BenchHasher) -> HashMap<K, u64, BenchHasher> {
    HashMap::with_capacity_and_hasher(capacity.unwrap_or(0), hasher)
}

impl<K: BenchKey> MapAdapter<K> for RwLockAdapter<K> {
    type Worker<'a> = &'a Self;

    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self {
        RwLockAdapter(RwLock::new(new_map(capacity, hasher)))
    }

    fn worker(&self) -> &Self {
        self
    }
}

impl<K: BenchKey> Worker<K> for &RwLockAdapter<K> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.0.read().unwrap().get(key).copied()
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.0.write().unwrap().insert(key, value);
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.0.write().unwrap().remove(key).is_some()
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        self.0
            .write()
            .unwrap()
            .get_mut(key)
            .map(|v| *v += 1)
            .is_some()
    }

    fn len(&self) -> usize {
        self.0.read().unwrap().len()
    }
}

/// Number of shards of [`ShardedRwLockAdapter`].
const SHARDS: usize = 64;

/// One shard, alone on its cache lines so that locking one does not slow its neighbours.
#[repr(align(128))]
struct Shard<K>(RwLock<HashMap<K, u64, BenchHasher>>);

/// 64 `RwLock<HashMap>` shards. The key is hashed once to pick the shard and again inside
/// the shard's map, as a straightforward sharded map written over std does.
pub struct ShardedRwLockAdapter<K> {
    shards: Box<[Shard<K>]>,
    hasher: BenchHasher,
}

impl<K: BenchKey> ShardedRwLockAdapter<K> {
    #[inline]
    fn shard(&self, key: &K) -> &RwLock<HashMap<K, u64, BenchHasher>> {
        // The top bits pick the shard: the map inside uses the low bits for its buckets.
        let h = self.hasher.hash_one(key);
        &self.shards[(h >> 58) as usize % SHARDS].0
    }
}

impl<K: BenchKey> MapAdapter<K> for ShardedRwLockAdapter<K> {
    type Worker<'a> = &'a Self;

    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self {
        let per_shard = capacity.map(|c| c.div_ceil(SHARDS));
        ShardedRwLockAdapter {
            shards: (0..SHARDS)
                .map(|_| Shard(RwLock::new(new_map(per_shard, hasher.clone()))))
                .collect(),
            hasher,
        }
    }

    fn worker(&self) -> &Self {
        self
    }
}

impl<K: BenchKey> Worker<K> for &ShardedRwLockAdapter<K> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.shard(key).read().unwrap().get(key).copied()
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.shard(&key).write().unwrap().insert(key, value);
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.shard(key).write().unwrap().remove(key).is_some()
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        let mut shard = self.shard(key).write().unwrap();
        shard.get_mut(key).map(|v| *v += 1).is_some()
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.read().unwrap().len()).sum()
    }
}
