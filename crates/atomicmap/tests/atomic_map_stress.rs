//! Concurrent stress tests of `AtomicMap` whose outcomes are exact: no lost update, no torn or
//! foreign value, and a single key's writes forming one linear history. Every test runs while
//! other threads force the table to grow and shrink.
//!
//! `ATOMICMAP_STRESS_SCALE` (percent, default 100) scales the iteration counts, e.g. down for
//! ThreadSanitizer; under Miri they are cut to 1%.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use atomicmap::AtomicMap;
use common::scale::scaled;

/// Inserts and then removes a block of filler keys, `rounds` times, so the table grows past
/// and shrinks back around whatever the other threads are doing.
fn churn(map: &AtomicMap<u64, u64>, first_key: u64, keys: u64, rounds: usize) {
    for _ in 0..rounds {
        for key in first_key..first_key + keys {
            map.insert(key, key);
        }
        for key in first_key..first_key + keys {
            assert_eq!(
                map.remove(&key).map(atomicmap::GuardedRef::into_owned),
                Some(key),
                "filler key {key}"
            );
        }
    }
}

/// 4 threads increment 8 counters with `update` and `upsert` from an empty, minimum-size map
/// while a fifth thread makes the table grow and shrink: every increment is counted.
#[test]
fn concurrent_increments_are_never_lost_across_resizes() {
    const COUNTERS: u64 = 8;
    const THREADS: u64 = 4;
    // A multiple of COUNTERS, so each counter gets the same share.
    let per_thread = (scaled(60_000) as u64).div_ceil(COUNTERS) * COUNTERS;
    let map: AtomicMap<u64, u64> = AtomicMap::new();
    thread::scope(|s| {
        for thread in 0..THREADS {
            let map = &map;
            s.spawn(move || {
                for i in 0..per_thread {
                    let key = (i + thread) % COUNTERS;
                    if i % 2 == 0 {
                        map.upsert(key, || 1, |count| count + 1);
                    } else if map.update(&key, |count| count + 1).is_none() {
                        // Not yet created by anyone: create or increment atomically instead.
                        map.upsert(key, || 1, |count| count + 1);
                    }
                }
            });
        }
        s.spawn(|| churn(&map, 1_000, scaled(20_000) as u64, 4));
    });
    let total: u64 = (0..COUNTERS).map(|key| map.get(&key).unwrap()).sum();
    assert_eq!(total, THREADS * per_thread);
    // Each thread spreads its increments evenly over the counters.
    for key in 0..COUNTERS {
        assert_eq!(
            map.get(&key),
            Some(THREADS * per_thread / COUNTERS),
            "key {key}"
        );
    }
    assert_eq!(map.len(), COUNTERS as usize);
}

fn value_of(key: u64) -> u64 {
    key * 3 + 1
}

/// Writers own disjoint key ranges (inserting `value_of(k)` and removing some keys again, so
/// the table grows, compacts and shrinks) while readers check that every value they see for
/// `k`, through `get` and `iter`, is `value_of(k)`. The final contents are exact.
#[test]
fn readers_only_see_values_written_for_their_key() {
    const WRITERS: u64 = 3;
    let range = scaled(30_000) as u64;
    let map: AtomicMap<u64, u64> = AtomicMap::new();
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let map = &map;
                s.spawn(move || {
                    let keys = writer * range..(writer + 1) * range;
                    for key in keys.clone() {
                        assert_eq!(map.insert(key, value_of(key)), None);
                    }
                    // Remove two keys in three, then put back half of those.
                    for key in keys.clone().filter(|key| key % 3 != 0) {
                        assert_eq!(
                            map.remove(&key).map(atomicmap::GuardedRef::into_owned),
                            Some(value_of(key))
                        );
                    }
                    for key in keys.filter(|key| key % 3 == 1) {
                        assert_eq!(map.get_or_insert_with(key, || value_of(key)), value_of(key));
                    }
                })
            })
            .collect();
        for reader in 0..2u64 {
            let (map, done) = (&map, &done);
            s.spawn(move || {
                let mut key = reader;
                let mut seen = 0u64;
                let mut passes = 0;
                while !done.load(Ordering::Acquire) || passes == 0 {
                    for _ in 0..1_000 {
                        key = (key * 7 + 13) % (WRITERS * range);
                        if let Some(value) = map.get(&key) {
                            assert_eq!(value, value_of(key), "get({key})");
                            seen += 1;
                        }
                    }
                    let mut keys = HashSet::new();
                    for (key, value) in map.iter() {
                        assert_eq!(value, value_of(key), "iter at {key}");
                        assert!(keys.insert(key), "iter repeated {key}");
                    }
                    passes += 1;
                }
                seen
            });
        }
        for writer in writers {
            writer.join().unwrap();
        }
        done.store(true, Ordering::Release);
    });
    let expected: HashMap<u64, u64> = (0..WRITERS * range)
        .filter(|key| key % 3 != 2)
        .map(|key| (key, value_of(key)))
        .collect();
    let actual: HashMap<u64, u64> = map.iter().collect();
    assert_eq!(actual.len(), expected.len());
    assert_eq!(actual, expected);
    assert_eq!(map.len(), expected.len());
}

/// Threads `insert` unique values into one key while another thread resizes the table around
/// it. Each insert returns the value it replaced, so (previous → written) edges must form one
/// chain from "absent" through every written value: each value except the last is returned as
/// "previous" exactly once, only one insert finds the key absent, and each thread's own
/// values appear on the chain in the order it wrote them.
#[test]
fn inserts_on_one_key_form_a_single_history() {
    const THREADS: u64 = 4;
    const KEY: u64 = 42;
    let per_thread = scaled(40_000) as u64;
    let map: AtomicMap<u64, u64> = AtomicMap::new();
    // Value written by thread `t` in its `i`th insert.
    let value = |thread: u64, i: u64| thread * per_thread + i + 1;
    let histories: Vec<Vec<(Option<u64>, u64)>> = thread::scope(|s| {
        let inserters: Vec<_> = (0..THREADS)
            .map(|thread| {
                let map = &map;
                s.spawn(move || {
                    (0..per_thread)
                        .map(|i| {
                            (
                                map.insert(KEY, value(thread, i))
                                    .map(atomicmap::GuardedRef::into_owned),
                                value(thread, i),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        s.spawn(|| churn(&map, 1_000_000, scaled(20_000) as u64, 4));
        inserters.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let last = map.get(&KEY).expect("the key has a value");

    let mut next: HashMap<Option<u64>, u64> = HashMap::new();
    for &(previous, written) in histories.iter().flatten() {
        if let Some(earlier) = next.insert(previous, written) {
            panic!("{previous:?} was replaced twice: by {earlier} and by {written}");
        }
    }
    let writes = (THREADS * per_thread) as usize;
    assert_eq!(next.len(), writes, "one replaced value per write");
    // Walk the chain from "absent": it must visit every write and end at the final value.
    let mut newest_by_thread = vec![0u64; THREADS as usize];
    let mut at = None;
    for step in 0..writes {
        let written = *next
            .get(&at)
            .unwrap_or_else(|| panic!("chain broken after {at:?} at step {step}"));
        let thread = ((written - 1) / per_thread) as usize;
        assert!(
            written > newest_by_thread[thread],
            "thread {thread}'s writes out of order: {written} after {}",
            newest_by_thread[thread]
        );
        newest_by_thread[thread] = written;
        at = Some(written);
    }
    assert_eq!(at, Some(last), "the chain ends at the final value");
    assert!(
        !next.contains_key(&Some(last)),
        "the final value was never replaced"
    );
}

/// `clear` sizes a compaction while six threads insert new keys: the compacted table must
/// have room for every key it has to carry, whatever the inserters add meanwhile (it once
/// stalled for good here). Afterwards the map is consistent: every key holds its own value
/// and `len` agrees with an iteration.
#[test]
fn clear_racing_inserts_of_new_keys_finishes() {
    let map: AtomicMap<u64, u64> = AtomicMap::new();
    let inserts = scaled(1 << 17);
    thread::scope(|s| {
        for thread in 0..6u64 {
            let map = &map;
            s.spawn(move || {
                let mut state = 0x9E37_79B9_7F4A_7C15 ^ thread;
                for _ in 0..inserts {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let key = state >> 1;
                    map.insert(key, key);
                }
            });
        }
        s.spawn(|| {
            for _ in 0..scaled(400) {
                map.clear();
            }
        });
    });
    let entries: Vec<(u64, u64)> = map.iter().collect();
    assert!(entries.iter().all(|(key, value)| key == value));
    assert_eq!(entries.len(), map.len());
}
