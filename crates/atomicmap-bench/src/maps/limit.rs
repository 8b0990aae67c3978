//! `LIMIT`: every thread runs its operations on its own private, unsynchronised std
//! `HashMap`. Nothing is shared, so no concurrent map can beat it; it is the ceiling of
//! the table.

use std::collections::HashMap;

use crate::adapter::{MapAdapter, Worker};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;

/// Builds one private map per worker; holds nothing shared.
pub struct LimitAdapter<S> {
    capacity: Option<usize>,
    hasher: S,
}

/// A thread's private map.
pub struct PrivateMap<K, S>(HashMap<K, u64, S>);

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for LimitAdapter<S> {
    const PRIVATE: bool = true;
    type Worker<'a> = PrivateMap<K, S>;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        LimitAdapter { capacity, hasher }
    }

    fn worker(&self) -> PrivateMap<K, S> {
        PrivateMap(HashMap::with_capacity_and_hasher(
            self.capacity.unwrap_or(0),
            self.hasher.clone(),
        ))
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for PrivateMap<K, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.0.get(key).copied()
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
        self.0.get_mut(key).map(|v| *v += 1).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}
