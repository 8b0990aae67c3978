//! A bare table of `AtomicMap`'s 16-byte slots that grows by doubling, for the `growing floor`
//! rows and the `growth_floor` example (which includes this file by path), and for the
//! `stop-the-world growth` row (`stop_the_world.rs`). It depends on nothing else in the crate
//! but `huge_pages.rs`, which it includes by path.
//! The `floor` row takes its slots from here ([`mapped_slots`]) but keeps its own probes
//! (`floor.rs`): built on this file's [`Table`], its batched and read-heavy rows ran 4-5%
//! slower against `AtomicMap` in alternating runs, so they stay as they were measured.
//!
//! A key is given as its word: its hash, never `EMPTY` or `SEALED` (see [`key_word`]). Reads
//! are Acquire loads; a write claims a new key's word with a CAS and sets the value word with
//! a CAS (`value << 1 | 1`, so values keep 63 bits); a remove leaves its key as a tombstone.
//! No pin, codec or reclamation. The table doubles when more than 5/8 of its slots are claimed
//! (`AtomicMap` grows between 0.61 and 0.72 full), into successors allocated and mapped when
//! the map is made, so no timed operation gets memory from the OS. A [`Migration`] says how a
//! table is copied into its successor. One thread at a time: the copy runs inside the insert
//! that crowds the table.

use std::sync::atomic::{AtomicU64, Ordering};

// By path, so that the examples that include this file find it too.
#[path = "huge_pages.rs"]
mod huge_pages;

/// `AtomicMap`'s smallest table.
const FIRST_CAPACITY: usize = 16;
/// A table grows when more than this share of its slots is claimed.
const GROW_NUMERATOR: usize = 5;
const GROW_DENOMINATOR: usize = 8;
/// A free key word, or the value word of a removed key.
pub const EMPTY: u64 = 0;
/// The key word of an empty slot a copy has passed.
const SEALED: u64 = u64::MAX;
/// The value word of a key a copy has carried to the successor, or of a tombstone it passed.
const MOVED: u64 = u64::MAX;

/// How a table is copied into its successor.
#[derive(Clone, Copy, Debug)]
pub enum Migration {
    /// With the locked instructions a lock-free copy needs, as `AtomicMap`'s `migrate` does
    /// them, since other writers may claim in either table meanwhile: a CAS seals each empty
    /// slot and one marks each tombstone; a live key is claimed in the successor with a CAS,
    /// its value stored there, and the old value marked moved with a CAS.
    Locked,
    /// With plain stores, as a table that one writer at a time owns may copy it (a dashmap
    /// shard under its lock).
    Plain,
}

/// The word of a key whose hash is `hash`.
pub fn key_word(hash: u64) -> u64 {
    hash.clamp(1, SEALED - 1)
}

/// One slot: key word then value word, aligned so a slot never straddles two cache lines.
#[repr(align(16))]
pub struct Slot {
    pub key: AtomicU64,
    pub value: AtomicU64,
}

/// A power-of-two array of slots, probed linearly from `word & mask`. Any number of threads
/// may use one: every operation is Acquire loads and CASes.
pub struct Table(Box<[Slot]>);

impl Table {
    /// A table of `capacity` (a power of two) slots, from [`mapped_slots`].
    pub fn new(capacity: usize) -> Table {
        Table(mapped_slots(capacity))
    }

    /// The value of the key `word`.
    #[inline]
    pub fn get(&self, word: u64) -> Option<u64> {
        match self.find(word)?.value.load(Ordering::Acquire) {
            EMPTY => None,
            value => Some(value >> 1),
        }
    }

    /// Sets the value of the key `word` (63 bits are kept); true if it claimed a new slot.
    #[inline]
    pub fn set(&self, word: u64, value: u64) -> bool {
        let (slot, claimed) = self.claim(word);
        let mut current = slot.value.load(Ordering::Acquire);
        while let Err(now) = slot.value.compare_exchange_weak(
            current,
            value << 1 | 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            current = now;
        }
        claimed
    }

    /// Removes the key `word` (its slot stays claimed); false if it had no value.
    #[inline]
    pub fn remove(&self, word: u64) -> bool {
        self.change(word, |_| EMPTY)
    }

    /// Adds one to the value of the key `word`; false if it has none.
    #[inline]
    pub fn update(&self, word: u64) -> bool {
        self.change(word, |value| value.wrapping_add(2))
    }

    /// Keys with a value.
    pub fn live_keys(&self) -> usize {
        self.0
            .iter()
            .filter(|slot| {
                slot.key.load(Ordering::Acquire) != EMPTY
                    && slot.value.load(Ordering::Acquire) != EMPTY
            })
            .count()
    }

    /// The slot holding `word`, or `None` if the probe meets `EMPTY` first.
    #[inline]
    fn find(&self, word: u64) -> Option<&Slot> {
        let mask = self.0.len() - 1;
        let mut index = word as usize;
        for _ in 0..self.0.len() {
            let slot = &self.0[index & mask];
            match slot.key.load(Ordering::Acquire) {
                found if found == word => return Some(slot),
                EMPTY => return None,
                _ => index = index.wrapping_add(1),
            }
        }
        None
    }

    /// Replaces the value of the key `word` by `change(value)` with a CAS (retried when a
    /// writer races); false if the key has no value.
    #[inline]
    fn change(&self, word: u64, change: impl Fn(u64) -> u64) -> bool {
        let Some(slot) = self.find(word) else {
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

    /// The slot of `word`, claimed with a CAS if the probe meets `EMPTY` first, and whether it
    /// was claimed now.
    #[inline]
    pub fn claim(&self, word: u64) -> (&Slot, bool) {
        let mask = self.0.len() - 1;
        let mut index = word as usize;
        for _ in 0..self.0.len() {
            let slot = &self.0[index & mask];
            let mut current = slot.key.load(Ordering::Acquire);
            if current == EMPTY {
                match slot
                    .key
                    .compare_exchange(EMPTY, word, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return (slot, true),
                    Err(winner) => current = winner,
                }
            }
            if current == word {
                return (slot, false);
            }
            index = index.wrapping_add(1);
        }
        panic!("bare table: more keys than slots")
    }

    /// The slots, in index order.
    pub fn slots(&self) -> &[Slot] {
        &self.0
    }

    /// The first `EMPTY` slot of `word`'s probe, taken with a plain store.
    fn place(&self, word: u64) -> &Slot {
        let mask = self.0.len() - 1;
        let mut index = word as usize;
        loop {
            let slot = &self.0[index & mask];
            if slot.key.load(Ordering::Relaxed) == EMPTY {
                slot.key.store(word, Ordering::Relaxed);
                return slot;
            }
            index = index.wrapping_add(1);
        }
    }

    /// Whether `claimed` slots crowd the table enough that it must grow.
    pub fn is_crowded(&self, claimed: usize) -> bool {
        claimed * GROW_DENOMINATOR > self.0.len() * GROW_NUMERATOR
    }
}

/// `capacity` empty slots on huge pages, mapped in (see [`huge_pages::zeroed_array`]).
pub fn mapped_slots(capacity: usize) -> Box<[Slot]> {
    // SAFETY: all-zero bytes are a valid `Slot` (two `AtomicU64`s), and a zero key word is
    // `EMPTY`: every slot is free.
    unsafe { huge_pages::zeroed_array(capacity) }
}

/// Copies one slot with a lock-free copy's locked instructions; true if it carried a key.
fn copy_locked(slot: &Slot, new: &Table) -> bool {
    let word = slot.key.load(Ordering::Acquire);
    if word == EMPTY {
        // Without the seal, a writer racing for this slot could leave its key where no copy
        // looks.
        let _ = slot
            .key
            .compare_exchange(EMPTY, SEALED, Ordering::AcqRel, Ordering::Acquire);
        return false;
    }
    let value = slot.value.load(Ordering::Acquire);
    if value == EMPTY {
        let _ = slot
            .value
            .compare_exchange(EMPTY, MOVED, Ordering::AcqRel, Ordering::Acquire);
        return false;
    }
    new.claim(word).0.value.store(value, Ordering::Release);
    let _ = slot
        .value
        .compare_exchange(value, MOVED, Ordering::AcqRel, Ordering::Acquire);
    true
}

/// Copies one slot as its only writer may; true if it carried a key.
fn copy_plain(slot: &Slot, new: &Table) -> bool {
    let word = slot.key.load(Ordering::Relaxed);
    let value = slot.value.load(Ordering::Relaxed);
    if word == EMPTY || value == EMPTY {
        return false;
    }
    new.place(word).value.store(value, Ordering::Relaxed);
    true
}

/// The smallest power-of-two table that holds `keys` at most 5/8 full: 2^21 slots for 1M.
fn final_capacity(keys: usize) -> usize {
    (keys.max(1) * GROW_DENOMINATOR)
        .div_ceil(GROW_NUMERATOR)
        .next_power_of_two()
        .max(FIRST_CAPACITY)
}

/// `AtomicMap`'s smallest table and each of its doublings up to the one that holds `keys`,
/// made (and mapped) now.
pub fn ladder(keys: usize) -> Vec<Table> {
    let last = final_capacity(keys);
    std::iter::successors(Some(FIRST_CAPACITY), |&capacity| {
        (capacity < last).then_some(capacity * 2)
    })
    .map(Table::new)
    .collect()
}

/// The table and its successors, made up front.
pub struct BareMap {
    tables: Vec<Table>,
    current: usize,
    /// Slots claimed in the current table, tombstones included.
    claimed: usize,
    migration: Migration,
}

impl BareMap {
    /// A map that starts at `AtomicMap`'s smallest table and doubles, with successors made now
    /// up to the table that holds `keys` (a map given more keys makes the next ones as it
    /// grows).
    pub fn growing(keys: usize, migration: Migration) -> BareMap {
        BareMap {
            tables: ladder(keys),
            current: 0,
            claimed: 0,
            migration,
        }
    }

    /// A map whose one table holds `keys` without growing.
    pub fn presized(keys: usize) -> BareMap {
        BareMap {
            tables: vec![Table::new(final_capacity(keys))],
            current: 0,
            claimed: 0,
            migration: Migration::Locked,
        }
    }

    fn table(&self) -> &Table {
        &self.tables[self.current]
    }

    fn grow(&mut self) {
        if self.current + 1 == self.tables.len() {
            self.tables.push(Table::new(self.table().0.len() * 2));
        }
        let (old, new) = (&self.tables[self.current], &self.tables[self.current + 1]);
        let carried = old
            .slots()
            .iter()
            .filter(|slot| match self.migration {
                Migration::Locked => copy_locked(slot, new),
                Migration::Plain => copy_plain(slot, new),
            })
            .count();
        self.current += 1;
        self.claimed = carried;
    }

    /// The value of the key `word`.
    pub fn get(&self, word: u64) -> Option<u64> {
        self.table().get(word)
    }

    /// Sets the value of the key `word` (63 bits are kept), growing the table when it crowds.
    pub fn insert(&mut self, word: u64, value: u64) {
        if self.table().set(word, value) {
            self.claimed += 1;
            if self.table().is_crowded(self.claimed) {
                self.grow();
            }
        }
    }

    /// Removes the key `word`; false if it had no value.
    pub fn remove(&mut self, word: u64) -> bool {
        self.table().remove(word)
    }

    /// Adds one to the value of the key `word`; false if it has none.
    pub fn update(&mut self, word: u64) -> bool {
        self.table().update(word)
    }

    /// Keys with a value.
    pub fn live_keys(&self) -> usize {
        self.table().live_keys()
    }
}
