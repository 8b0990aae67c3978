//! `floor`: the least work a shared map of `AtomicMap`'s design can do per operation, run
//! through the same loop as every map, so its row shows how far that design can go on this
//! machine in each regime.
//!
//! It is a fixed array of 16-byte slots (a key word and a value word, one cache line holds
//! four) with linear probing from `hash & mask`. A read is Acquire loads only; a write is one
//! CAS on the value word (plus one on the key word when the key is new); a remove leaves its
//! key as a tombstone. What `AtomicMap` does on top of that is left out: no pin (so nothing is
//! ever reclaimed), no resize (the array is sized once for the whole key space, as `AtomicMap`'s
//! table is after growing to it), no codec (the key word is the key's hash, the value word is
//! `value << 1 | 1`), no full-table handling. So it is not a map a user could have, and no
//! implementation of the design can beat it: its row is the proof of which targets the
//! hardware allows.

use super::bare_growth::{key_word, Table};
use crate::adapter::{MapAdapter, Worker};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;

/// Key space assumed when the run does not say (the correctness check builds maps that way).
const DEFAULT_KEY_SPACE: usize = 4096;

/// Lookups of a batch whose home slots are prefetched together: the group size `AtomicMap`'s
/// batched lookup uses.
const PREFETCH_GROUP: usize = 32;

/// The shared array of slots.
pub struct FloorAdapter<S> {
    table: Table,
    hasher: S,
}

/// A thread's handle: the shared array.
pub struct FloorWorker<'a, S>(&'a FloorAdapter<S>);

impl<S: BenchHasher> FloorAdapter<S> {
    /// Slots for `key_space` keys: the smallest power of two they fill at most 3/4 of, the
    /// size `AtomicMap`'s table has once it has grown to that many keys (10,000 keys: 16,384
    /// slots; a million: 2^21).
    fn with_key_space(key_space: usize, hasher: S) -> Self {
        let capacity = (key_space.max(1).saturating_mul(4) / 3 + 1).next_power_of_two();
        FloorAdapter {
            table: Table::new(capacity),
            hasher,
        }
    }

    /// The key's word: its hash, never a free slot's word.
    #[inline]
    fn key_word<K: BenchKey>(&self, key: &K) -> u64 {
        key_word(self.hasher.hash_one(key))
    }

    /// Asks the CPU to start loading the home slot of `word` without waiting for it.
    #[inline]
    fn prefetch(&self, word: u64) {
        let slot = self.table.home(word);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint with no architectural effect: it never faults and
        // writes nothing, and the address is a slot of the array anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                std::ptr::from_ref(slot).cast(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }
}

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for FloorAdapter<S> {
    type Worker<'a>
        = FloorWorker<'a, S>
    where
        S: 'a;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        Self::with_key_space(capacity.unwrap_or(DEFAULT_KEY_SPACE), hasher)
    }

    fn build_for_keys(key_space: usize, capacity: Option<usize>, hasher: S) -> Self {
        Self::with_key_space(key_space.max(capacity.unwrap_or(0)), hasher)
    }

    fn worker(&self) -> FloorWorker<'_, S> {
        FloorWorker(self)
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for FloorWorker<'_, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.0.table.get(self.0.key_word(key))
    }

    /// Group prefetching, as `AtomicMap`'s batched lookup does it: the home slots of a group
    /// are prefetched before the group's first lookup.
    #[inline]
    fn get_each(&mut self, keys: &[&K], mut visit: impl FnMut(usize, Option<u64>)) {
        let mut words = [0u64; PREFETCH_GROUP];
        for (group, keys) in keys.chunks(PREFETCH_GROUP).enumerate() {
            for (word, key) in words.iter_mut().zip(keys) {
                *word = self.0.key_word(*key);
                self.0.prefetch(*word);
            }
            for (index, word) in words[..keys.len()].iter().enumerate() {
                visit(group * PREFETCH_GROUP + index, self.0.table.get(*word));
            }
        }
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.0.table.set(self.0.key_word(&key), value);
    }

    /// Group prefetching, as `AtomicMap`'s grouped insert does it: the home slots of a group
    /// are prefetched before the group's first insert.
    #[inline]
    fn insert_each(&mut self, entries: impl Iterator<Item = (K, u64)>) {
        let mut group = [(0u64, 0u64); PREFETCH_GROUP];
        let mut entries = entries.peekable();
        while entries.peek().is_some() {
            let mut len = 0;
            for ((word, value), (key, entry_value)) in group.iter_mut().zip(entries.by_ref()) {
                *word = self.0.key_word(&key);
                *value = entry_value;
                self.0.prefetch(*word);
                len += 1;
            }
            for &(word, value) in &group[..len] {
                self.0.table.set(word, value);
            }
        }
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.0.table.remove(self.0.key_word(key))
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        self.0.table.update(self.0.key_word(key))
    }

    fn len(&self) -> usize {
        self.0.table.live_keys()
    }
}
