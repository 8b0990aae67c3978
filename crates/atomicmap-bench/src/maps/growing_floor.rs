//! `growing floor`: what a table of `AtomicMap`'s design that grows can do with one thread, so
//! that a workload starting empty has a floor too (the `floor` row is presized, and a map that
//! starts empty spends its first operations in small tables that stay in cache). Each thread
//! runs its own [`BareMap`], as LIMIT's threads do, so the row means something with one thread
//! only and runs only then.
//!
//! Two rows: the copy a lock-free table needs (`growing floor`), and a plain copy, which a
//! table owned by one writer at a time may make (`growing floor, plain copy`). A map built
//! with a capacity (the `presized` workload) starts with its final table instead.

use super::bare_growth::{key_word, BareMap, Migration};
use crate::adapter::{MapAdapter, Worker};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;

/// Key space assumed when the run does not say (the correctness check builds maps that way).
const DEFAULT_KEY_SPACE: usize = 4096;

/// Makes one [`BareMap`] per worker; `LOCKED` picks the copy.
pub struct GrowingFloorAdapter<S, const LOCKED: bool> {
    key_space: usize,
    capacity: Option<usize>,
    hasher: S,
}

/// A thread's own table.
pub struct GrowingFloorWorker<S> {
    map: BareMap,
    hasher: S,
}

impl<K: BenchKey, S: BenchHasher, const LOCKED: bool> MapAdapter<K, S>
    for GrowingFloorAdapter<S, LOCKED>
{
    const PRIVATE: bool = true;
    type Worker<'a> = GrowingFloorWorker<S>;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        GrowingFloorAdapter {
            key_space: capacity.unwrap_or(DEFAULT_KEY_SPACE),
            capacity,
            hasher,
        }
    }

    fn build_for_keys(key_space: usize, capacity: Option<usize>, hasher: S) -> Self {
        GrowingFloorAdapter {
            key_space: key_space.max(capacity.unwrap_or(0)),
            capacity,
            hasher,
        }
    }

    fn worker(&self) -> GrowingFloorWorker<S> {
        let migration = if LOCKED {
            Migration::Locked
        } else {
            Migration::Plain
        };
        GrowingFloorWorker {
            map: match self.capacity {
                Some(capacity) => BareMap::presized(capacity),
                None => BareMap::growing(self.key_space, migration),
            },
            hasher: self.hasher.clone(),
        }
    }
}

impl<S: BenchHasher> GrowingFloorWorker<S> {
    #[inline]
    fn word<K: BenchKey>(&self, key: &K) -> u64 {
        key_word(self.hasher.hash_one(key))
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for GrowingFloorWorker<S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.map.get(self.word(key))
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        let word = self.word(&key);
        self.map.insert(word, value);
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        let word = self.word(key);
        self.map.remove(word)
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        let word = self.word(key);
        self.map.update(word)
    }

    fn len(&self) -> usize {
        self.map.live_keys()
    }
}
