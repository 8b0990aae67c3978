//! ShardedMap: the common API, configuration errors, the debug-build re-entrancy check, panics
//! in user code and a short concurrent stress.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;

use atomicmap::sharded::{default_shard_count, MAX_SHARDS};
use atomicmap::{CapacityError, ShardedMap, ShardedMapError};
use common::panics::{
    arm, disarm, double_drops, live_objects, silence_injected_panics, subject_by_shared_vocabulary,
    sweep, upserts_some_of_which_panic, Key, Subject, UserCode, Value,
};

#[test]
fn single_key_operations() {
    let map: ShardedMap<String, u32> = ShardedMap::new();
    assert!(map.is_empty());
    assert_eq!(map.insert("a".into(), 1), None);
    assert_eq!(map.insert("a".into(), 2), Some(1));
    assert_eq!(map.get("a"), Some(2));
    assert_eq!(map.get_with("a", |value| value * 10), Some(20));
    assert!(map.contains_key("a"));
    assert_eq!(
        map.get_mut("a", |value| std::mem::replace(value, 5)),
        Some(2)
    );
    assert_eq!(map.get_mut("zzz", |value| *value), None);
    assert_eq!(map.update("a", |value| value * 2), Some(10));
    assert_eq!(map.update("zzz", |value| *value), None);
    assert!(!map.contains_key("zzz"), "update inserts nothing");
    assert_eq!(map.upsert("a".into(), || 0, |value| value + 1), 11);
    assert_eq!(map.upsert("b".into(), || 7, |value| value + 1), 7);
    assert_eq!(map.get("a"), Some(11));
    assert_eq!(map.get("b"), Some(7));
    assert_eq!(map.get_or_insert_with("c".into(), || 3), 3);
    assert_eq!(map.get_or_insert_with("c".into(), || unreachable!()), 3);
    assert_eq!(map.len(), 3);
    assert_eq!(map.remove("c"), Some(3));
    assert_eq!(map.remove("c"), None);
}

#[test]
fn compute_inserts_replaces_and_removes() {
    let map: ShardedMap<u32, u32> = ShardedMap::new();
    assert_eq!(
        map.compute(1, |value| {
            assert!(value.is_none());
            Some(10)
        }),
        Some(10)
    );
    assert_eq!(
        map.compute(1, |value| value.map(|value| value + 1)),
        Some(11)
    );
    assert_eq!(map.get(&1), Some(11));
    assert_eq!(map.compute(1, |_| None), None);
    assert!(!map.contains_key(&1));
    assert_eq!(map.compute(2, |_| None), None);
    assert!(
        !map.contains_key(&2),
        "leaving an absent key absent inserts nothing"
    );
}

#[test]
fn shard_configuration_and_errors() {
    let default = default_shard_count();
    assert!(default.is_power_of_two());
    assert!(default >= 4);
    assert_eq!(ShardedMap::<u32, u32>::new().shard_count(), default);
    assert_eq!(
        ShardedMap::<u32, u32>::with_shards(64)
            .unwrap()
            .shard_count(),
        64
    );
    assert_eq!(
        ShardedMap::<u32, u32>::with_shards(1)
            .unwrap()
            .shard_count(),
        1
    );
    assert_eq!(
        ShardedMap::<u32, u32>::with_shards(3)
            .unwrap()
            .shard_count(),
        4
    );
    assert_eq!(
        ShardedMap::<u32, u32>::with_shards(0).unwrap_err(),
        ShardedMapError::ZeroShards
    );
    assert_eq!(
        ShardedMap::<u32, u32>::with_shards(MAX_SHARDS + 1).unwrap_err(),
        ShardedMapError::TooManyShards {
            requested: MAX_SHARDS + 1
        }
    );
    assert_eq!(
        ShardedMap::<u64, u64>::try_with_capacity(usize::MAX).unwrap_err(),
        CapacityError::Overflow
    );
    let message = panic_message(catch_unwind(|| {
        ShardedMap::<u64, u64>::with_capacity(usize::MAX);
    }));
    assert!(message.contains("ShardedMap::with_capacity"), "{message}");
    assert!(message.contains("overflows"), "{message}");
    let presized = ShardedMap::<u32, u32>::with_capacity(1000);
    presized.insert(1, 1);
    assert_eq!(presized.len(), 1);
}

#[test]
fn one_shard_map_works() {
    let map: ShardedMap<u32, u32> = ShardedMap::with_shards(1).unwrap();
    for key in 0..100 {
        map.insert(key, key);
    }
    assert_eq!(map.len(), 100);
    assert_eq!(map.get(&42), Some(42));
}

#[test]
fn iteration_retain_clear_and_conversions() {
    let mut map: ShardedMap<u32, u32> = (0..100).map(|key| (key, key)).collect();
    map.extend([(100, 100)]);
    let mut keys: Vec<u32> = map.iter().map(|(key, _)| key).collect();
    keys.sort_unstable();
    assert_eq!(keys, (0..=100).collect::<Vec<_>>());
    map.retain(|key, value| {
        *value += 1;
        key % 2 == 0
    });
    let mut sum = 0;
    map.for_each(|_, value| sum += value);
    assert_eq!(sum, (0..=100).step_by(2).map(|key| key + 1).sum::<u32>());
    for (key, _) in map.iter() {
        // No lock is held between `next` calls, so the body may use the map.
        map.remove(&key);
    }
    assert!(map.is_empty());
    map.insert(1, 1);
    assert_eq!(format!("{map:?}"), "{1: 1}");
    map.clear();
    assert!(map.is_empty());
}

#[test]
fn borrowed_lookups() {
    let map: ShardedMap<String, Vec<u8>> = ShardedMap::default();
    map.insert("key".to_owned(), vec![1, 2]);
    assert_eq!(map.get_with("key", Vec::len), Some(2));
    assert!(map.contains_key("key"));
    assert_eq!(map.remove("key"), Some(vec![1, 2]));
}

fn panic_message(result: std::thread::Result<()>) -> String {
    let payload = result.expect_err("the call should have panicked");
    payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default()
}

#[test]
#[cfg(debug_assertions)]
fn reentrant_access_from_a_closure_panics_in_debug_builds() {
    let map: ShardedMap<u32, u32> = ShardedMap::with_shards(4).unwrap();
    map.insert(1, 1);
    let message = panic_message(catch_unwind(AssertUnwindSafe(|| {
        map.get_with(&1, |_| map.get(&1));
    })));
    assert!(message.contains("re-entered"), "{message}");
    assert!(message.contains("would deadlock now"), "{message}");

    let message = panic_message(catch_unwind(AssertUnwindSafe(|| {
        map.get_mut(&1, |value| {
            map.insert(2, *value);
        });
    })));
    assert!(message.contains("re-entered"), "{message}");

    // The map stays usable: the lock was released while unwinding.
    assert_eq!(map.get(&1), Some(1));
    map.insert(3, 3);
    assert_eq!(map.len(), 2);
}

#[test]
#[cfg(debug_assertions)]
fn another_map_may_be_used_inside_a_closure() {
    let first: ShardedMap<u32, u32> = ShardedMap::new();
    let second: ShardedMap<u32, u32> = ShardedMap::new();
    first.insert(1, 10);
    first.get_with(&1, |value| second.insert(1, *value));
    assert_eq!(second.get(&1), Some(10));
}

#[test]
fn concurrent_upserts_lose_no_update() {
    const THREADS: u32 = 4;
    const ROUNDS: u32 = 2_000;
    const KEYS: u32 = 32;
    let map: ShardedMap<u32, u32> = ShardedMap::with_shards(8).unwrap();
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for round in 0..ROUNDS {
                    map.upsert(round % KEYS, || 1, |value| value + 1);
                    map.get(&((round + 7) % KEYS));
                }
            });
        }
    });
    let mut expected = HashMap::new();
    for round in 0..ROUNDS {
        *expected.entry(round % KEYS).or_insert(0) += THREADS;
    }
    for (key, count) in expected {
        assert_eq!(map.get(&key), Some(count));
    }
}

#[test]
fn sharded_map_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ShardedMap<String, Vec<u8>>>();
}

/// A `compute` whose closure panics leaves the entry it was shown in place, and drops no
/// value (the entry used to be taken out of the table before the closure ran).
#[test]
fn compute_keeps_the_entry_when_its_closure_panics() {
    let map: ShardedMap<u64, Value> = ShardedMap::with_shards(4).unwrap();
    for key in 0..32 {
        map.insert(key, Value::new(key));
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        map.compute(5, |_| panic!("the closure of compute panics"));
    }));
    assert!(outcome.is_err());
    assert_eq!(map.get_with(&5, |value| value.n), Some(5), "key 5 is lost");
    assert_eq!(map.len(), 32);
    assert_eq!(
        map.compute(5, |value| value.map(|value| Value::new(value.n + 1)))
            .map(|value| value.n),
        Some(6)
    );
    drop(map);
    assert_eq!(live_objects(), 0, "values leaked");
    assert_eq!(double_drops(), 0, "a value was dropped twice");
}

subject_by_shared_vocabulary!(ShardedMap<Key, Value>, |map| {
    let mut entries = BTreeMap::new();
    map.for_each(|key, value| {
        entries.insert(key.id, value.n);
    });
    entries
});

/// `Hash`, `Eq`, `Clone` and every closure panicking on their N-th call, swept over N: the
/// map loses nothing, keeps working (its shard locks recover from poisoning), and drops every
/// key and value exactly once.
#[test]
fn panicking_user_code_loses_and_leaks_nothing() {
    let injected = sweep(|| ShardedMap::with_shards(4).unwrap(), 120);
    assert!(injected > 0);
}

/// A `Hash` that panics while a shard's table re-hashes its keys in place (std's `HashMap`
/// does when deleted slots fill it, and drops the keys it has not re-hashed yet if the hasher
/// panics): no entry is lost, because the map never asks a stored key for its hash again.
#[test]
fn hash_panicking_while_a_table_rehashes_loses_nothing() {
    const FULL: u64 = 224;
    const REMOVED: u64 = 150;
    silence_injected_panics();
    for nth in [1, 2, 3, 10, 40] {
        let map: ShardedMap<Key, Value> = ShardedMap::with_shards(1).unwrap();
        map.reserve(FULL as usize);
        for key in 0..FULL {
            map.insert(Key::new(key), Value::new(key));
        }
        for key in 0..REMOVED {
            map.remove(&Key::new(key));
        }
        arm(UserCode::Hash, nth);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            map.insert(Key::new(FULL), Value::new(FULL));
        }));
        disarm();
        let mut expected: BTreeMap<u64, u64> = (REMOVED..FULL).map(|key| (key, key)).collect();
        if outcome.is_ok() {
            expected.insert(FULL, FULL);
        }
        assert_eq!(
            Subject::entries(&map),
            expected,
            "Hash panicking on call {nth}"
        );
        drop(map);
        assert_eq!(live_objects(), 0, "keys or values leaked");
        assert_eq!(double_drops(), 0, "a key or value was dropped twice");
    }
}

/// Threads whose `upsert` closures panic now and then, on shards the other threads use: each
/// panic poisons a shard lock, and the map keeps working and counts every upsert that returned.
#[test]
fn concurrent_panicking_closures_leave_the_map_usable() {
    const THREADS: u32 = 4;
    const ROUNDS: u32 = 2_000;
    const KEYS: u32 = 16;
    let map: ShardedMap<u32, u32> = ShardedMap::with_shards(4).unwrap();
    let returned = upserts_some_of_which_panic(THREADS, ROUNDS, KEYS, |key, update| {
        map.upsert(key, || 1, |count| update(count));
    });
    assert!(returned < THREADS * ROUNDS, "no closure panicked");
    let mut counted = 0;
    map.for_each(|_, count| counted += count);
    assert_eq!(counted, returned);
    assert_eq!(map.len(), KEYS as usize);
}
