//! What growing costs a table of `AtomicMap`'s design with one thread, next to dashmap: the
//! floor behind the one-thread rapid-grow target (`docs/scaling.md`, "Growing with one thread:
//! the floor"). Run with `cargo run --release -p atomicmap-bench --example growth_floor`.
//!
//! Two workloads, one thread, foldhash (fixed seed), a space of 1M `u64` keys, every map
//! starting empty:
//! * **insert once**: every key inserted once (the bench's `default-growth`);
//! * **rapid-grow**: the bench's mix of that name, 2M operations (5% reads, 80% inserts, 5%
//!   removes, 10% updates) on uniformly drawn keys.
//!
//! Each prints ns per operation, the median of the rounds (each round runs every row once),
//! and dashmap's time over the row's. The rows:
//! * **dashmap** and **`AtomicMap`**, grown from empty as their users grow them, and
//!   **`AtomicMap`, presized** (`with_capacity` for the whole key space).
//! * **Bare tables**: arrays of 16-byte atomic slots with the bench floor's operations (Acquire
//!   loads; a CAS claims a new key's word, a CAS sets or clears a value; a removed key stays
//!   as a tombstone). No pin, codec or reclamation. One is presized. The others double at 5/8
//!   full and differ only in how they copy a table:
//!   * **locked copy**: the locked instructions a lock-free copy needs, as `AtomicMap`'s
//!     `migrate` does them. A CAS seals each empty slot and one marks each tombstone. A live
//!     key is claimed in the successor with a CAS and its value stored there; a CAS then marks
//!     the old value moved.
//!   * **plain copy**: live keys and values stored into the successor with plain stores, as a
//!     table that one writer at a time owns may copy (dashmap's shards, under their lock).
//!
//! The bare tables' successors are allocated, and their pages mapped, before the timer starts.
//! So these rows leave out the memory a growing map must get from the OS, and no table that
//! grows by such a copy can beat them.

mod support;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use atomicmap::{AtomicMap, MapRef};
use dashmap::DashMap;
use support::{key, median, nanos_per};

const KEYS: usize = 1_000_000;
/// Operations of the rapid-grow workload (the bench's default for the regime matrix).
const RAPID_GROW_OPS: usize = 2_000_000;
const ROUNDS: usize = 7;
/// `AtomicMap`'s smallest table.
const FIRST_CAPACITY: usize = 16;
/// A bare table grows when more than this share of its slots is claimed (`AtomicMap` grows
/// between 0.61 and 0.72 full, see `docs/scaling.md`).
const GROW_NUMERATOR: usize = 5;
const GROW_DENOMINATOR: usize = 8;
/// Operations between two refreshes of `AtomicMap`'s pin, as in the bench.
const REPIN_EVERY: usize = 1024;
const PAGE: usize = 4096;
/// A free key word, or the value word of a removed key.
const EMPTY: u64 = 0;
/// The key word of an empty slot a copy has passed.
const SEALED: u64 = u64::MAX;
/// The value word of a key a copy has carried to the successor, or of a tombstone it passed.
const MOVED: u64 = u64::MAX;
/// Issue 13's target for one thread: at least 1.1 times the best peer's throughput.
const TARGET: f64 = 1.1;

type Hasher = foldhash::fast::FixedState;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Insert,
    Remove,
    Update,
}

/// The operations every row runs alike.
trait Row {
    fn get(&mut self, key: u64) -> Option<u64>;
    fn insert(&mut self, key: u64, value: u64);
    fn remove(&mut self, key: u64) -> bool;
    /// Adds one to the key's value; false if it has none.
    fn update(&mut self, key: u64) -> bool;
    /// Called every [`REPIN_EVERY`] operations.
    fn refresh(&mut self) {}
}

impl Row for DashMap<u64, u64, Hasher> {
    fn get(&mut self, key: u64) -> Option<u64> {
        DashMap::get(self, &key).map(|value| *value)
    }

    fn insert(&mut self, key: u64, value: u64) {
        DashMap::insert(self, key, value);
    }

    fn remove(&mut self, key: u64) -> bool {
        DashMap::remove(self, &key).is_some()
    }

    fn update(&mut self, key: u64) -> bool {
        self.get_mut(&key).map(|mut value| *value += 1).is_some()
    }
}

impl Row for MapRef<'_, u64, u64, Hasher> {
    fn get(&mut self, key: u64) -> Option<u64> {
        MapRef::get(self, &key).map(|value| *value)
    }

    fn insert(&mut self, key: u64, value: u64) {
        MapRef::insert(self, key, value);
    }

    fn remove(&mut self, key: u64) -> bool {
        MapRef::remove(self, &key).is_some()
    }

    fn update(&mut self, key: u64) -> bool {
        MapRef::update(self, &key, |value| value + 1).is_some()
    }

    fn refresh(&mut self) {
        MapRef::refresh(self);
    }
}

#[derive(Default)]
#[repr(align(16))]
struct Slot {
    key: AtomicU64,
    value: AtomicU64,
}

/// A power-of-two array of slots, probed linearly from `word & mask`.
struct Table(Box<[Slot]>);

impl Table {
    /// A table of `capacity` slots with every page mapped, so that no timed operation maps one.
    fn new(capacity: usize) -> Table {
        let slots: Box<[Slot]> = (0..capacity).map(|_| Slot::default()).collect();
        for slot in slots.iter().step_by(PAGE / size_of::<Slot>()) {
            slot.key.store(EMPTY, Ordering::Relaxed);
        }
        Table(slots)
    }

    /// The slot holding `word`, or `None` if the probe meets `EMPTY` first.
    fn find(&self, word: u64) -> Option<&Slot> {
        let mask = self.0.len() - 1;
        let mut index = word as usize;
        loop {
            let slot = &self.0[index & mask];
            match slot.key.load(Ordering::Acquire) {
                found if found == word => return Some(slot),
                EMPTY => return None,
                _ => index = index.wrapping_add(1),
            }
        }
    }

    /// The slot of `word`, claimed with a CAS if the probe meets `EMPTY` first, and whether
    /// it was claimed now.
    fn claim(&self, word: u64) -> (&Slot, bool) {
        let mask = self.0.len() - 1;
        let mut index = word as usize;
        loop {
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

    fn is_crowded(&self, claimed: usize) -> bool {
        claimed * GROW_DENOMINATOR > self.0.len() * GROW_NUMERATOR
    }
}

/// Replaces `slot`'s value by `change(value)` with a CAS while it has one; false if it has none.
fn change_present(slot: &Slot, change: impl Fn(u64) -> u64) -> bool {
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

#[derive(Clone, Copy)]
enum Migration {
    Locked,
    Plain,
}

/// A bare table that grows through successors made before the timer starts. A key's word is
/// its hash (never `EMPTY` or `SEALED`); a value word is `value << 1 | 1`.
struct BareMap {
    tables: Vec<Table>,
    current: usize,
    /// Slots claimed in the current table, tombstones included.
    claimed: usize,
    migration: Migration,
    hasher: Hasher,
}

impl BareMap {
    /// A map that starts at [`FIRST_CAPACITY`] and doubles up to the table that holds `keys`.
    fn growing(keys: usize, migration: Migration, hasher: Hasher) -> BareMap {
        let last = final_capacity(keys);
        let tables = std::iter::successors(Some(FIRST_CAPACITY), |&capacity| {
            (capacity < last).then_some(capacity * 2)
        })
        .map(Table::new)
        .collect();
        BareMap {
            tables,
            current: 0,
            claimed: 0,
            migration,
            hasher,
        }
    }

    /// A map whose one table holds `keys` without growing.
    fn presized(keys: usize, hasher: Hasher) -> BareMap {
        BareMap {
            tables: vec![Table::new(final_capacity(keys))],
            current: 0,
            claimed: 0,
            migration: Migration::Locked,
            hasher,
        }
    }

    fn word(&self, key: u64) -> u64 {
        self.hasher.hash_one(key).clamp(1, SEALED - 1)
    }

    fn table(&self) -> &Table {
        &self.tables[self.current]
    }

    fn grow(&mut self) {
        let (old, new) = (&self.tables[self.current], &self.tables[self.current + 1]);
        let carried = old
            .0
            .iter()
            .filter(|slot| match self.migration {
                Migration::Locked => copy_locked(slot, new),
                Migration::Plain => copy_plain(slot, new),
            })
            .count();
        self.current += 1;
        self.claimed = carried;
    }
}

impl Row for BareMap {
    fn get(&mut self, key: u64) -> Option<u64> {
        let slot = self.table().find(self.word(key))?;
        match slot.value.load(Ordering::Acquire) {
            EMPTY => None,
            value => Some(value >> 1),
        }
    }

    fn insert(&mut self, key: u64, value: u64) {
        let (slot, claimed) = self.table().claim(self.word(key));
        let mut current = slot.value.load(Ordering::Acquire);
        while let Err(now) = slot.value.compare_exchange_weak(
            current,
            value << 1 | 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            current = now;
        }
        if claimed {
            self.claimed += 1;
            if self.table().is_crowded(self.claimed) {
                self.grow();
            }
        }
    }

    fn remove(&mut self, key: u64) -> bool {
        let word = self.word(key);
        self.table()
            .find(word)
            .is_some_and(|slot| change_present(slot, |_| EMPTY))
    }

    fn update(&mut self, key: u64) -> bool {
        let word = self.word(key);
        self.table()
            .find(word)
            .is_some_and(|slot| change_present(slot, |value| value + 2))
    }
}

/// Copies one slot as a lock-free copy must, since other writers may claim in either table
/// meanwhile; true if it carried a key.
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
    (keys * GROW_DENOMINATOR)
        .div_ceil(GROW_NUMERATOR)
        .next_power_of_two()
}

/// The SplitMix64 finalizer of `index`: draws that look independent (`key`'s mix spreads
/// consecutive indexes too evenly to draw keys with replacement).
fn random(index: u64) -> u64 {
    let mut z = index.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number below `bound` from the high bits of `random`.
fn below(random: u64, bound: usize) -> usize {
    ((u128::from(random) * bound as u128) >> 64) as usize
}

/// Runs `ops` on `row`: ns per operation.
fn time_ops(row: &mut impl Row, ops: &[(Op, u64)]) -> f64 {
    let started = Instant::now();
    for batch in ops.chunks(REPIN_EVERY) {
        for &(op, key) in batch {
            match op {
                Op::Get => {
                    std::hint::black_box(row.get(key));
                }
                Op::Insert => row.insert(key, key),
                Op::Remove => {
                    std::hint::black_box(row.remove(key));
                }
                Op::Update => {
                    std::hint::black_box(row.update(key));
                }
            }
        }
        row.refresh();
    }
    nanos_per(started, ops.len())
}

/// What every key holds after `ops`, by a `HashMap` run over the same operations.
fn expected(ops: &[(Op, u64)]) -> HashMap<u64, u64> {
    let mut map = HashMap::new();
    for &(op, key) in ops {
        match op {
            Op::Get => {}
            Op::Insert => {
                map.insert(key, key);
            }
            Op::Remove => {
                map.remove(&key);
            }
            Op::Update => {
                if let Some(value) = map.get_mut(&key) {
                    *value += 1;
                }
            }
        }
    }
    map
}

/// Runs `ops` on the row `name` builds, then checks every key against `expected`.
fn time_row(name: &str, ops: &[(Op, u64)], keys: &[u64], expected: &HashMap<u64, u64>) -> f64 {
    let hasher = Hasher::with_seed(7);
    let check = |row: &mut dyn FnMut(u64) -> Option<u64>| {
        for key in keys {
            assert_eq!(row(*key), expected.get(key).copied(), "{name}: key {key}");
        }
    };
    match name {
        "dashmap" => {
            let mut map = DashMap::with_hasher(hasher);
            let time = time_ops(&mut map, ops);
            check(&mut |key| Row::get(&mut map, key));
            time
        }
        "AtomicMap" | "AtomicMap, presized" => {
            let map = if name == "AtomicMap" {
                AtomicMap::with_hasher(hasher)
            } else {
                AtomicMap::with_capacity_and_hasher(keys.len(), hasher)
            };
            let mut pinned = map.pin();
            let time = time_ops(&mut pinned, ops);
            check(&mut |key| Row::get(&mut pinned, key));
            time
        }
        bare => {
            let mut map = match bare {
                "bare, presized" => BareMap::presized(keys.len(), hasher),
                "bare, locked copy" => BareMap::growing(keys.len(), Migration::Locked, hasher),
                _ => BareMap::growing(keys.len(), Migration::Plain, hasher),
            };
            let time = time_ops(&mut map, ops);
            check(&mut |key| map.get(key));
            time
        }
    }
}

fn main() {
    // Below 2^63, as the bench's keys are: `AtomicMap` keeps such keys in the slot (and boxes
    // larger ones), and the bare tables' value word keeps 63 bits.
    let keys: Vec<u64> = (0..KEYS as u64).map(|index| key(index) >> 1).collect();
    let insert_once: Vec<(Op, u64)> = keys.iter().map(|&key| (Op::Insert, key)).collect();
    let rapid_grow: Vec<(Op, u64)> = (0..RAPID_GROW_OPS as u64)
        .map(|index| {
            let op = match below(random(index), 100) {
                0..5 => Op::Get,
                5..85 => Op::Insert,
                85..90 => Op::Remove,
                _ => Op::Update,
            };
            (op, keys[below(random(index + RAPID_GROW_OPS as u64), KEYS)])
        })
        .collect();
    let all_rows = [
        "dashmap",
        "AtomicMap",
        "AtomicMap, presized",
        "bare, presized",
        "bare, locked copy",
        "bare, plain copy",
    ];
    // Rows named on the command line run alone (dashmap always runs: it is the reference).
    let named: Vec<String> = std::env::args().skip(1).collect();
    let rows: Vec<&str> = all_rows
        .into_iter()
        .filter(|row| *row == "dashmap" || named.is_empty() || named.iter().any(|name| name == row))
        .collect();
    println!(
        "{KEYS} u64 keys, one thread, foldhash (fixed seed), every map starting empty; \
         ns per operation, median of {ROUNDS} rounds"
    );
    for (workload, ops) in [("insert once", &insert_once), ("rapid-grow", &rapid_grow)] {
        let expected = expected(ops);
        let mut times = vec![Vec::new(); rows.len()];
        for _ in 0..ROUNDS {
            for (row, row_times) in rows.iter().zip(&mut times) {
                row_times.push(time_row(row, ops, &keys, &expected));
            }
        }
        let medians: Vec<f64> = times.into_iter().map(median).collect();
        println!("\n{workload} ({} operations)", ops.len());
        println!("{:18} {:>8} {:>14}", "row", "ns/op", "dashmap / row");
        for (row, time) in rows.iter().zip(&medians) {
            let target = if *row == "dashmap" {
                String::new()
            } else {
                format!("  (target >= {TARGET})")
            };
            println!("{row:18} {time:8.1} {:14.2}{target}", medians[0] / time);
        }
    }
}
