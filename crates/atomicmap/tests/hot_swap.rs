//! HotSwap and RcuMap: publication semantics, monotonic versions, whole-map visibility under
//! concurrent publishes, and exactly-once drops of replaced values.

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use atomicmap::{HotSwap, PersistentMap, RcuMap};
use common::panics::{
    arm, disarm, double_drops, live_objects, silence_injected_panics, subject_by_shared_vocabulary,
    sweep, upserts_some_of_which_panic, Key, Subject, UserCode, Value,
};

#[test]
fn load_store_swap_and_versions() {
    let cell = HotSwap::new(String::from("v0"));
    assert_eq!(cell.version(), 0);
    assert_eq!(*cell.load(), "v0");
    assert_eq!(cell.store(String::from("v1")), 1);
    let held = cell.load();
    assert_eq!(cell.swap(String::from("v2")).as_str(), "v1");
    assert_eq!(
        *held, "v1",
        "a held guard is unaffected by later publications"
    );
    assert_eq!(held.version(), 1);
    assert_eq!(cell.version(), 2);
    assert_eq!(*cell.load_full(), "v2");
    assert_eq!(cell.rcu(|old| format!("{old}+")), 3);
    assert_eq!(*cell.load(), "v2+");
}

#[test]
fn compare_and_swap_publishes_only_against_the_expected_version() {
    let cell = HotSwap::new(1u32);
    assert_eq!(cell.compare_and_swap(0, 2).ok(), Some(1));
    let mismatch = cell.compare_and_swap(0, 3).unwrap_err();
    assert_eq!(mismatch.current_version, 1);
    assert_eq!(*mismatch.rejected, 3);
    assert_eq!(*cell.load(), 2);
    assert!(mismatch.to_string().contains("current version is 1"));
}

#[test]
fn concurrent_rcu_loses_no_update_and_versions_count_publications() {
    const THREADS: u64 = 4;
    const UPDATES: u64 = 200;
    let cell = HotSwap::new(0u64);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let mut last_seen = 0;
                for _ in 0..UPDATES {
                    let version = cell.rcu(|count| count + 1);
                    assert!(version > last_seen, "versions seen by one writer increase");
                    last_seen = version;
                }
            });
        }
    });
    assert_eq!(*cell.load(), THREADS * UPDATES);
    assert_eq!(cell.version(), THREADS * UPDATES);
}

/// Counts live instances.
struct Counted {
    live: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

impl Counted {
    fn new(live: &Arc<AtomicUsize>, drops: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Counted {
            live: Arc::clone(live),
            drops: Arc::clone(drops),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let before = self.live.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "a value was dropped twice");
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn every_replaced_value_is_dropped_exactly_once() {
    const PUBLISHES: usize = 500;
    let live = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let cell = HotSwap::new(Counted::new(&live, &drops));
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let guard = cell.load();
                    assert!(Arc::strong_count(&guard.drops) >= 1);
                    let owned = cell.load_full();
                    drop(guard);
                    drop(owned);
                }
            });
        }
        for _ in 0..PUBLISHES {
            cell.store(Counted::new(&live, &drops));
        }
        done.store(true, Ordering::Relaxed);
    });
    assert!(
        live.load(Ordering::Relaxed) < PUBLISHES / 2,
        "replaced values are freed while the cell lives, not only at drop"
    );
    drop(cell);
    assert_eq!(live.load(Ordering::Relaxed), 0);
    assert_eq!(drops.load(Ordering::Relaxed), PUBLISHES + 1);
}

#[test]
fn rcu_map_single_key_operations() {
    let map: RcuMap<String, u32> = RcuMap::new();
    assert!(map.is_empty());
    assert_eq!(map.insert("a".into(), 1), None);
    assert_eq!(map.insert("a".into(), 2), Some(1));
    assert_eq!(map.get("a"), Some(2));
    assert_eq!(map.get_with("a", |value| value * 10), Some(20));
    assert!(map.contains_key("a"));
    assert_eq!(map.upsert("a".into(), || 0, |value| value + 5), 7);
    assert_eq!(map.upsert("b".into(), || 0, |value| value + 5), 0);
    assert_eq!(map.update("b", |value| value + 1), Some(1));
    assert_eq!(map.update("b", |value| value - 1), Some(0));
    let version = map.version();
    assert_eq!(map.update("zzz", |value| value + 1), None);
    assert_eq!(
        map.version(),
        version,
        "updating an absent key publishes nothing"
    );
    assert_eq!(
        map.compute("b".into(), |value| value.map(|v| v + 1)),
        Some(1)
    );
    assert_eq!(map.compute("b".into(), |_| None), None);
    assert_eq!(map.get_or_insert_with("c".into(), || 3), 3);
    assert_eq!(map.get_or_insert_with("c".into(), || unreachable!()), 3);
    assert_eq!(map.len(), 2);
    let version = map.version();
    assert_eq!(map.remove("zzz"), None);
    assert_eq!(
        map.version(),
        version,
        "removing an absent key publishes nothing"
    );
    assert_eq!(map.remove("a"), Some(7));
    map.retain(|_, value| *value != 3);
    assert!(map.is_empty());
    map.insert("d".into(), 4);
    map.clear();
    assert!(map.is_empty());
}

#[test]
fn rcu_map_batches_loads_and_conversions() {
    let mut map: RcuMap<u32, u32> = (0..10).map(|key| (key, key)).collect();
    let before = map.load_full();
    let version = map.update_map(|m| {
        for key in 0..10 {
            m.insert(key, key + 100);
        }
    });
    assert_eq!(map.version(), version);
    assert!(
        before.values().all(|value| *value < 100),
        "an old publication is immutable"
    );
    assert!(map.load_full().values().all(|value| *value >= 100));
    map.extend([(20, 20)]);
    assert_eq!(map.len(), 11);
    let mut replacement = PersistentMap::with_hasher(Default::default());
    replacement.insert(1, 1);
    map.replace(replacement.clone());
    assert!(*map.load() == replacement);
    assert_eq!(map.len(), 1);
    assert!(format!("{map:?}").contains("RcuMap"));
}

#[test]
fn readers_never_observe_a_half_built_map() {
    const KEYS: u32 = 64;
    const ROUNDS: u32 = 150;
    let map: RcuMap<u32, u32> = (0..KEYS).map(|key| (key, 0)).collect();
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let mut last_version = 0;
                while !done.load(Ordering::Relaxed) {
                    let current = map.load();
                    assert!(current.version() >= last_version, "versions are monotonic");
                    last_version = current.version();
                    assert_eq!(current.len(), KEYS as usize);
                    let round = current[&0];
                    assert!(
                        current.values().all(|value| *value == round),
                        "a publication mixes two rounds"
                    );
                }
            });
        }
        scope.spawn(|| {
            for round in 1..=ROUNDS {
                map.update_map(|m| {
                    for key in 0..KEYS {
                        m.insert(key, round);
                    }
                });
            }
            done.store(true, Ordering::Relaxed);
        });
    });
    assert_eq!(map.get(&0), Some(ROUNDS));
    assert_eq!(map.version(), u64::from(ROUNDS));
}

#[test]
fn hot_swap_and_rcu_map_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HotSwap<Vec<String>>>();
    assert_send_sync::<RcuMap<String, Vec<u8>>>();
}

subject_by_shared_vocabulary!(RcuMap<Key, Value>, |map| {
    map.load()
        .iter()
        .map(|(key, value)| (key.id, value.n))
        .collect()
});

/// `Hash`, `Eq`, `Clone` and every closure panicking on their N-th call, swept over N: the
/// map loses nothing, keeps working, and drops every key and value exactly once.
#[test]
fn panicking_user_code_loses_and_leaks_nothing() {
    let injected = sweep(RcuMap::new, 120);
    assert!(injected > 0);
}

/// `Eq` panicking while keys that share a hash are inserted. imbl 7's own map leaks the entries
/// it was moving into a new node when that happens (up to 16 per panic, `GenericHashMap::insert`
/// alone); a `PersistentMap`, and so an `RcuMap`, runs no user `Eq` while it changes its trie,
/// and leaks and loses nothing.
#[test]
fn eq_panicking_on_colliding_keys_leaks_nothing() {
    const KEYS: u64 = 300;
    silence_injected_panics();
    for nth in (1..=600).step_by(7) {
        let map: RcuMap<Key, Value> = RcuMap::new();
        let mut persistent: PersistentMap<Key, Value> = PersistentMap::new();
        let mut expected = BTreeMap::new();
        let mut persistent_expected = BTreeMap::new();
        arm(UserCode::Eq, nth);
        for id in 0..KEYS {
            if catch_unwind(AssertUnwindSafe(|| {
                map.insert(Key::new(id), Value::new(id))
            }))
            .is_ok()
            {
                expected.insert(id, id);
            }
        }
        arm(UserCode::Eq, nth);
        for id in 0..KEYS {
            let inserted = catch_unwind(AssertUnwindSafe(|| {
                persistent.insert(Key::new(id), Value::new(id))
            }));
            if inserted.is_ok() {
                persistent_expected.insert(id, id);
            }
        }
        disarm();
        assert_eq!(
            Subject::entries(&map),
            expected,
            "Eq panicking on call {nth}"
        );
        let persistent_entries: BTreeMap<u64, u64> = persistent
            .iter()
            .map(|(key, value)| (key.id, value.n))
            .collect();
        assert_eq!(
            persistent_entries, persistent_expected,
            "Eq panicking on call {nth}"
        );
        drop(map);
        drop(persistent);
        assert_eq!(live_objects(), 0, "Eq panicking on call {nth}: leaked");
        assert_eq!(
            double_drops(),
            0,
            "Eq panicking on call {nth}: dropped twice"
        );
    }
}

/// Threads whose `upsert` closures panic now and then while the others publish: a panicking
/// write publishes nothing, and the map counts every upsert that returned.
#[test]
fn concurrent_panicking_closures_publish_nothing() {
    const THREADS: u32 = 4;
    const ROUNDS: u32 = 300;
    const KEYS: u32 = 16;
    let map: RcuMap<u32, u32> = RcuMap::new();
    let returned = upserts_some_of_which_panic(THREADS, ROUNDS, KEYS, |key, update| {
        map.upsert(key, || 1, |count| update(count));
    });
    assert!(returned < THREADS * ROUNDS, "no closure panicked");
    assert_eq!(map.load().values().sum::<u32>(), returned);
    assert_eq!(map.version(), u64::from(returned));
}

/// `Clone` panicking while a large trie (keys with distinct hashes, so its nodes split and
/// upgrade) is written: each write copies the path it changes, cloning keys and values, and a
/// panic there publishes nothing, loses nothing and leaks nothing.
#[test]
fn clone_panicking_while_a_large_trie_changes_leaks_nothing() {
    const KEYS: u64 = 600;
    silence_injected_panics();
    let mut panicked = 0;
    for nth in (1..=400).step_by(13) {
        let map: RcuMap<Key, Value> = RcuMap::new();
        let mut expected = BTreeMap::new();
        arm(UserCode::Clone, nth);
        for id in 0..KEYS {
            let write = catch_unwind(AssertUnwindSafe(|| {
                if id % 5 == 4 {
                    map.remove(&Key::distinct(id - 1))
                } else {
                    map.insert(Key::distinct(id), Value::new(id))
                }
            }));
            match write {
                Ok(_) if id % 5 == 4 => {
                    expected.remove(&(id - 1));
                }
                Ok(_) => {
                    expected.insert(id, id);
                }
                Err(_) => panicked += 1,
            }
        }
        disarm();
        assert_eq!(
            Subject::entries(&map),
            expected,
            "Clone panicking on call {nth}"
        );
        drop(map);
        assert_eq!(live_objects(), 0, "Clone panicking on call {nth}: leaked");
        assert_eq!(
            double_drops(),
            0,
            "Clone panicking on call {nth}: dropped twice"
        );
    }
    assert!(panicked > 0, "no Clone panicked");
}
