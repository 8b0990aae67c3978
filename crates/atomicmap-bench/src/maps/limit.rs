//! `LIMIT`: every thread runs its operations on its own private, unsynchronised std
//! `HashMap`. Nothing is shared, so no concurrent map can beat it; it is the ceiling of
//! the table.

use std::collections::HashMap;

use crate::adapter::{BenchHasher, BenchKey, MapAdapter, Worker};

/// Builds one private map per worker; holds nothing shared.
pub struct LimitAdapter {
    capacity: Option<usize>,
    hasher: BenchHasher,
}

/// A thread's private map.
pub struct PrivateMap<K>(HashMap<K, u64, BenchHasher>);

impl<K: BenchKey> MapAdapter<K> for LimitAdapter {
    const PRIVATE: bool = true;
    type Worker<'a> = PrivateMap<K>;

    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self {
        LimitAdapter { capacity, hasher }
    }

    fn worker(&self) -> PrivateMap<K> {
        PrivateMap(HashMap::with_capacity_and_hasher(
            self.capacity.unwrap_or(0),
            self.hasher.clone(),
        ))
    }
}

impl<K: BenchKey> Worker<K> for PrivateMap<K> {
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
