//! The lock-based baselines: one `RwLock<HashMap>`, and 64 of them chosen by hash (the plain
//! sharded map that `ShardedMap` is measured against).

use std::collections::HashMap;
use std::sync::RwLock;

use crate::adapter::{MapAdapter, Worker};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;

/// A std `HashMap` behind one std `RwLock`.
pub struct RwLockAdapter<K, S>(RwLock<HashMap<K, u64, S>>);

fn new_map<K, S>(capacity: Option<usize>, hasher: S) -> HashMap<K, u64, S> {
    HashMap::with_capacity_and_hasher(capacity.unwrap_or(0), hasher)
}

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for RwLockAdapter<K, S> {
    type Worker<'a> = &'a Self;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        RwLockAdapter(RwLock::new(new_map(capacity, hasher)))
    }

    fn worker(&self) -> &Self {
        self
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for &RwLockAdapter<K, S> {
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
struct Shard<K, S>(RwLock<HashMap<K, u64, S>>);

/// 64 `RwLock<HashMap>` shards. The key is hashed once to pick the shard and again inside
/// the shard's map, as a straightforward sharded map written over std does.
pub struct ShardedRwLockAdapter<K, S> {
    shards: Box<[Shard<K, S>]>,
    hasher: S,
}

impl<K: BenchKey, S: BenchHasher> ShardedRwLockAdapter<K, S> {
    #[inline]
    fn shard(&self, key: &K) -> &RwLock<HashMap<K, u64, S>> {
        // The top bits pick the shard: the map inside uses the low bits for its buckets.
        let h = self.hasher.hash_one(key);
        &self.shards[(h >> 58) as usize % SHARDS].0
    }
}

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for ShardedRwLockAdapter<K, S> {
    type Worker<'a> = &'a Self;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
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

impl<K: BenchKey, S: BenchHasher> Worker<K> for &ShardedRwLockAdapter<K, S> {
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
