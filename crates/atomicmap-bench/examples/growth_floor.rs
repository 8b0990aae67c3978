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
//! * **Bare tables**: the bench's `growing floor` table (`src/maps/bare_growth.rs`, included
//!   here by path), arrays of 16-byte atomic slots with the bench floor's operations. One is
//!   presized. The others double at 5/8 full and differ only in how they copy a table:
//!   * **locked copy**: with the locked instructions a lock-free copy needs, as `AtomicMap`'s
//!     `migrate` does them;
//!   * **plain copy**: with plain stores, as a table that one writer at a time owns may copy
//!     (dashmap's shards, under their lock).
//!
//! The bare tables' successors are allocated, and their pages mapped, before the timer starts.
//! So these rows leave out the memory a growing map must get from the OS, and no table that
//! grows by such a copy can beat them. The bench shows the two growing rows itself, in its own
//! loop, for one thread and workloads that start empty.

#[path = "../src/maps/bare_growth.rs"]
mod bare_growth;
mod support;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::Instant;

use atomicmap::{AtomicMap, MapRef};
use bare_growth::{key_word, BareMap, Migration};
use dashmap::DashMap;
use support::{key, median, nanos_per};

const KEYS: usize = 1_000_000;
/// Operations of the rapid-grow workload (the bench's default for the regime matrix).
const RAPID_GROW_OPS: usize = 2_000_000;
const ROUNDS: usize = 7;
/// Operations between two refreshes of `AtomicMap`'s pin, as in the bench.
const REPIN_EVERY: usize = 1024;
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

/// A bare table and the hasher that makes its keys' words.
struct BareRow {
    map: BareMap,
    hasher: Hasher,
}

impl BareRow {
    fn word(&self, key: u64) -> u64 {
        key_word(self.hasher.hash_one(key))
    }
}

impl Row for BareRow {
    fn get(&mut self, key: u64) -> Option<u64> {
        self.map.get(self.word(key))
    }

    fn insert(&mut self, key: u64, value: u64) {
        let word = self.word(key);
        self.map.insert(word, value);
    }

    fn remove(&mut self, key: u64) -> bool {
        let word = self.word(key);
        self.map.remove(word)
    }

    fn update(&mut self, key: u64) -> bool {
        let word = self.word(key);
        self.map.update(word)
    }
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
            let map = match bare {
                "bare, presized" => BareMap::presized(keys.len()),
                "bare, locked copy" => BareMap::growing(keys.len(), Migration::Locked),
                _ => BareMap::growing(keys.len(), Migration::Plain),
            };
            let mut row = BareRow { map, hasher };
            let time = time_ops(&mut row, ops);
            check(&mut |key| row.get(key));
            assert_eq!(row.map.live_keys(), expected.len(), "{name}: live keys");
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
