//! ShardedMap's API for users coming from dashmap and std (issue 15): in-place iteration,
//! non-blocking reads, conditional writes, iteration forms, Clone/PartialEq, stats,
//! `Equivalent` lookups, and ShardedSet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::thread;

mod common;

use atomicmap::sharded::WouldBlock;
use atomicmap::{ShardedMap, ShardedSet};
use common::names::{name, FullName, NameQuery};

#[test]
fn for_each_mut_changes_every_value_in_place() {
    let map: ShardedMap<u32, Vec<u32>> = (0..200).map(|key| (key, vec![key])).collect();
    let mut visited = 0;
    map.for_each_mut(|key, values| {
        values.push(key + 1);
        visited += 1;
    });
    assert_eq!(visited, 200);
    for key in 0..200 {
        assert_eq!(map.get(&key), Some(vec![key, key + 1]));
    }
}

#[test]
fn for_each_mut_does_not_write_into_a_snapshot() {
    let map: ShardedMap<u32, u32> = (0..50).map(|key| (key, key)).collect();
    let before = map.snapshot();
    map.for_each_mut(|_, value| *value += 1000);
    assert!(before.iter().all(|(key, value)| key == value));
    assert_eq!(map.get(&7), Some(1007));
}

#[test]
fn try_reads_return_would_block_while_a_writer_holds_the_shard() {
    let map: ShardedMap<u32, u32> = ShardedMap::with_shards(1).unwrap();
    map.insert(1, 10);
    let (locked_tx, locked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    thread::scope(|scope| {
        let map = &map;
        scope.spawn(move || {
            map.get_mut(&1, |_| {
                locked_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            });
        });
        locked_rx.recv().unwrap();
        assert_eq!(map.try_get(&1), Err(WouldBlock));
        assert_eq!(map.try_get_with(&1, |value| *value), Err(WouldBlock));
        assert_eq!(map.try_get_mut(&1, |value| *value), Err(WouldBlock));
        release_tx.send(()).unwrap();
    });
    assert_eq!(map.try_get(&1), Ok(Some(10)));
    assert_eq!(map.try_get(&2), Ok(None));
    assert_eq!(
        map.try_get_mut(&1, |value| std::mem::replace(value, 11)),
        Ok(Some(10))
    );
    assert_eq!(map.get(&1), Some(11));
}

#[test]
fn try_reads_inside_a_closure_of_the_same_map_neither_deadlock_nor_panic() {
    let map: ShardedMap<u32, u32> = ShardedMap::with_shards(1).unwrap();
    map.insert(1, 10);
    let inside = map.get_mut(&1, |_| map.try_get(&1));
    assert_eq!(inside, Some(Err(WouldBlock)));
    let mut seen = Vec::new();
    map.for_each(|key, _| seen.push(map.try_get_with(key, |value| *value)));
    assert_eq!(seen.len(), 1);
}

#[test]
fn try_insert_reports_whether_it_inserted_and_keeps_the_old_value() {
    let map: ShardedMap<String, u32> = ShardedMap::new();
    assert_eq!(map.try_insert("a".into(), 1), Ok(()));
    assert_eq!(map.try_insert("a".into(), 2), Err(("a".to_owned(), 2)));
    assert_eq!(map.get("a"), Some(1));
    assert_eq!(map.len(), 1);
}

#[test]
fn remove_if_removes_only_when_the_condition_holds() {
    let map: ShardedMap<String, u32> = [("a".to_owned(), 1), ("b".to_owned(), 2)]
        .into_iter()
        .collect();
    assert_eq!(map.remove_if("a", |value| *value == 2), None);
    assert_eq!(map.get("a"), Some(1));
    assert_eq!(map.remove_if("b", |value| *value == 2), Some(2));
    assert!(!map.contains_key("b"));
    let mut ran = false;
    assert_eq!(
        map.remove_if("missing", |_| {
            ran = true;
            true
        }),
        None
    );
    assert!(!ran, "the condition does not run for an absent key");
}

#[test]
fn borrowed_iteration_keys_and_values() {
    let map: ShardedMap<u32, String> = (0..100).map(|key| (key, key.to_string())).collect();
    let mut entries = BTreeMap::new();
    for (key, value) in &map {
        entries.insert(key, value);
    }
    assert_eq!(entries.len(), 100);
    assert_eq!(entries[&42], "42");
    let keys: BTreeSet<u32> = map.keys().collect();
    assert_eq!(keys, (0..100).collect());
    let values: BTreeSet<String> = map.values().collect();
    assert_eq!(values, (0..100).map(|key| key.to_string()).collect());
    let mut iter = map.iter();
    iter.next();
    let shown = format!("{iter:?}");
    assert!(shown.contains("next_shard"), "{shown}");
}

#[test]
fn capacity_and_stats() {
    let mut map: ShardedMap<u32, u32> = ShardedMap::with_shards(2).unwrap();
    assert_eq!(map.capacity(), 0);
    assert_eq!(map.stats().resizes, 0);
    map.extend((0..1000).map(|key| (key, key)));
    assert!(map.capacity() >= 1000);
    let stats = map.stats();
    assert_eq!(stats.len, 1000);
    assert_eq!(stats.capacity, map.capacity());
    assert!(stats.resizes >= 2, "both shards grew: {stats:?}");
    assert_eq!(stats.snapshots_taken, 0);
    let _first = map.snapshot();
    let _second = map.snapshot();
    assert_eq!(map.stats().snapshots_taken, 2);
    let resizes = map.stats().resizes;
    map.insert(0, 1);
    assert_eq!(
        map.stats().resizes,
        resizes,
        "a copy-on-write copy is no resize"
    );
}

#[test]
fn clone_is_a_separate_map_with_the_same_entries() {
    let map: ShardedMap<u32, u32> = (0..100).map(|key| (key, key)).collect();
    let copy = map.clone();
    assert_eq!(copy, map);
    map.insert(1, 1000);
    copy.insert(2, 2000);
    assert_eq!(map.get(&1), Some(1000));
    assert_eq!(map.get(&2), Some(2));
    assert_eq!(copy.get(&1), Some(1));
    assert_eq!(copy.get(&2), Some(2000));
    assert_ne!(copy, map);
    assert_eq!(copy.shard_count(), map.shard_count());
}

#[test]
fn equality_ignores_shard_counts_and_insertion_order() {
    let mut one: ShardedMap<u32, u32> = ShardedMap::with_shards(1).unwrap();
    let mut many: ShardedMap<u32, u32> = ShardedMap::with_shards(16).unwrap();
    one.extend((0..50).map(|key| (key, key)));
    many.extend((0..50).rev().map(|key| (key, key)));
    assert_eq!(one, many);
    many.insert(50, 50);
    assert_ne!(one, many);
    many.remove(&50);
    many.insert(0, 1);
    assert_ne!(one, many);
}

#[test]
fn lookups_by_an_equivalent_type_that_is_not_a_borrow() {
    let map: ShardedMap<FullName, u32> = ShardedMap::new();
    map.insert(name("ada", "lovelace"), 1815);
    map.insert(name("alan", "turing"), 1912);
    let ada = NameQuery("ada", "lovelace");
    assert_eq!(map.get(&ada), Some(1815));
    assert!(map.contains_key(&NameQuery("alan", "turing")));
    assert!(!map.contains_key(&NameQuery("ada", "turing")));
    assert_eq!(map.try_get(&ada), Ok(Some(1815)));
    assert_eq!(map.get_mut(&ada, |year| *year), Some(1815));
    assert_eq!(map.snapshot().get(&ada), Some(&1815));
    assert_eq!(map.remove_if(&ada, |year| *year > 1900), None);
    assert_eq!(map.remove(&ada), Some(1815));
    assert_eq!(map.len(), 1);

    let set: ShardedSet<FullName> = [name("grace", "hopper")].into_iter().collect();
    assert!(set.contains(&NameQuery("grace", "hopper")));
    assert!(set.remove(&NameQuery("grace", "hopper")));
    assert!(set.is_empty());
}

#[test]
fn sharded_set_operations() {
    let set: ShardedSet<u32> = ShardedSet::with_shards(4).unwrap();
    assert!(set.insert(1));
    assert!(!set.insert(1));
    assert!(set.insert(2));
    assert!(set.contains(&1));
    assert_eq!(set.len(), 2);
    let snapshot = set.snapshot();
    assert!(set.remove(&1));
    assert!(!set.remove(&1));
    assert!(snapshot.contains_key(&1));
    assert_eq!(
        snapshot.keys().copied().collect::<BTreeSet<_>>(),
        [1, 2].into()
    );
    assert_eq!(set.iter().collect::<Vec<_>>(), vec![2]);
    assert_eq!((&set).into_iter().collect::<Vec<_>>(), vec![2]);
    assert_eq!(format!("{set:?}"), "{2}");

    let mut copy = set.clone();
    assert_eq!(copy, set);
    copy.extend([3, 4]);
    assert_ne!(copy, set);
    assert_eq!(set.len(), 1);
    copy.retain(|element| element % 2 == 0);
    assert_eq!(copy.iter().collect::<BTreeSet<_>>(), [2, 4].into());
    let collected: ShardedSet<u32> = [4, 2].into_iter().collect();
    assert_eq!(collected, copy);
    copy.clear();
    assert!(copy.is_empty());
    assert_eq!(set.stats().len, 1);
}

#[test]
fn sharded_set_inserts_from_many_threads_count_once() {
    let set: ShardedSet<u32> = ShardedSet::new();
    let inserted: usize = thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| (0..500).filter(|&n| set.insert(n)).count()))
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .sum()
    });
    assert_eq!(
        inserted, 500,
        "each element is reported inserted exactly once"
    );
    assert_eq!(set.len(), 500);
}

#[test]
#[cfg(debug_assertions)]
fn for_each_mut_using_the_same_map_panics_in_debug_builds() {
    let map: ShardedMap<u32, u32> = (0..4).map(|key| (key, key)).collect();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        map.for_each_mut(|key, _| {
            map.get(key);
        });
    }));
    let message = outcome
        .expect_err("re-entering the map from for_each_mut panics")
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("for_each_mut"), "{message}");
    assert_eq!(map.len(), 4, "the map stays usable");
}
