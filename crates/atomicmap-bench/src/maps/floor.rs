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
//! `value << 1 | 1`), no full-table handling. Its array is on huge pages where the kernel
//! gives them, as `AtomicMap`'s tables are. So it is not a map a user could have, and no
//! implementation of the design can beat it: its row is the proof of which targets the
//! hardware allows.

use std::sync::atomic::Ordering;

use super::bare_growth::{mapped_slots, Slot};

use crate::adapter::{MapAdapter, Worker};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;

/// A key word or value word that holds nothing.
const EMPTY: u64 = 0;

/// Key space assumed when the run does not say (the correctness check builds maps that way).
const DEFAULT_KEY_SPACE: usize = 4096;

/// Lookups of a batch whose home slots are prefetched together: the group size `AtomicMap`'s
/// batched lookup uses.
const PREFETCH_GROUP: usize = 32;

/// The shared array of slots.
pub struct FloorAdapter<S> {
    slots: Box<[Slot]>,
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
            slots: mapped_slots(capacity),
            hasher,
        }
    }

    /// The key's word: its hash, never `EMPTY`.
    #[inline]
    fn key_word<K: BenchKey>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key).max(1)
    }

    /// Asks the CPU to start loading the home slot of `word` without waiting for it.
    #[inline]
    fn prefetch(&self, word: u64) {
        let slot = &self.slots[word as usize & (self.slots.len() - 1)];
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

    /// The slot holding `word`, or `None` if the probe met `EMPTY` first.
    #[inline]
    fn find(&self, word: u64) -> Option<&Slot> {
        let mask = self.slots.len() - 1;
        let mut index = word as usize;
        for _ in 0..self.slots.len() {
            let slot = &self.slots[index & mask];
            match slot.key.load(Ordering::Acquire) {
                k if k == word => return Some(slot),
                EMPTY => return None,
                _ => index = index.wrapping_add(1),
            }
        }
        None
    }

    /// The slot holding `word`, claiming the first `EMPTY` slot of its probe if it has none.
    #[inline]
    fn find_or_claim(&self, word: u64) -> &Slot {
        let mask = self.slots.len() - 1;
        let mut index = word as usize;
        for _ in 0..self.slots.len() {
            let slot = &self.slots[index & mask];
            let mut current = slot.key.load(Ordering::Acquire);
            if current == EMPTY {
                match slot
                    .key
                    .compare_exchange(EMPTY, word, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return slot,
                    Err(winner) => current = winner,
                }
            }
            if current == word {
                return slot;
            }
            index = index.wrapping_add(1);
        }
        panic!("floor: more keys than the key space it was sized for")
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

impl<S: BenchHasher> FloorWorker<'_, S> {
    /// Sets the value of the key `word`, claiming its slot if it has none.
    #[inline]
    fn store(&self, word: u64, value: u64) {
        let slot = self.0.find_or_claim(word);
        let mut current = slot.value.load(Ordering::Acquire);
        while let Err(now) = slot.value.compare_exchange_weak(
            current,
            value << 1 | 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            current = now;
        }
    }

    /// Replaces the value of the key `word` by `change(value)` with one CAS (retried when a
    /// writer races); false if the key has no value.
    #[inline]
    fn change_present(&self, word: u64, change: impl Fn(u64) -> u64) -> bool {
        let Some(slot) = self.0.find(word) else {
            return false;
        };
        let mut current = slot.value.load(Ordering::Acquire);
        while current != EMPTY {
            match slot.value.compare_exchange_weak(
                current,
                change(current),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
        false
    }

    #[inline]
    fn value_of(&self, word: u64) -> Option<u64> {
        let slot = self.0.find(word)?;
        match slot.value.load(Ordering::Acquire) {
            EMPTY => None,
            value => Some(value >> 1),
        }
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for FloorWorker<'_, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.value_of(self.0.key_word(key))
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
                visit(group * PREFETCH_GROUP + index, self.value_of(*word));
            }
        }
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.store(self.0.key_word(&key), value);
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
                self.store(word, value);
            }
        }
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.change_present(self.0.key_word(key), |_| EMPTY)
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        self.change_present(self.0.key_word(key), |value| value.wrapping_add(2))
    }

    fn len(&self) -> usize {
        self.0
            .slots
            .iter()
            .filter(|slot| slot.value.load(Ordering::Acquire) != EMPTY)
            .count()
    }
}
