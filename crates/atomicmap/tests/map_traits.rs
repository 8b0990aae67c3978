//! Issue 15 for ReadMostlyMap, RcuMap, HotSwap, PersistentMap and MapSnapshot: iteration,
//! Clone, PartialEq, Debug, stats, and lookups by an `Equivalent` type that is not a
//! `Borrow` of the key.

use std::collections::{BTreeMap, BTreeSet};

mod common;

use atomicmap::{HotSwap, MapSnapshot, PersistentMap, RcuMap, ReadMostlyMap, ShardedMap};
use common::names::{name, FullName, NameQuery};

#[test]
fn read_mostly_map_iterates_an_instant() {
    let map: ReadMostlyMap<u32, String> = ReadMostlyMap::new();
    for key in 0..50 {
        map.store(key, key.to_string());
    }
    map.delete(&0);
    let entries: BTreeMap<u32, String> = map.iter().collect();
    assert_eq!(entries, (1..50).map(|key| (key, key.to_string())).collect());
    let mut borrowed = 0;
    for (key, value) in &map {
        assert_eq!(value, key.to_string());
        borrowed += 1;
    }
    assert_eq!(borrowed, 49);
    assert_eq!(map.keys().collect::<BTreeSet<_>>(), (1..50).collect());
    assert_eq!(
        map.values().collect::<BTreeSet<_>>(),
        (1..50).map(|key| key.to_string()).collect()
    );
}

#[test]
fn read_mostly_map_clone_and_equality() {
    let map: ReadMostlyMap<u32, u32> = (0..30).map(|key| (key, key)).collect();
    let copy = map.clone();
    assert_eq!(copy, map);
    copy.store(1, 100);
    assert_eq!(map.load(&1), Some(1), "the copy is a separate map");
    assert_ne!(copy, map);
    map.store(1, 100);
    assert_eq!(copy, map);
    map.delete(&2);
    assert_ne!(copy, map);
}

#[test]
fn read_mostly_map_stats_count_snapshots_and_entries() {
    let map: ReadMostlyMap<u32, u32> = (0..10).map(|key| (key, key)).collect();
    assert_eq!(map.map_stats().snapshots_taken, 0);
    let _ = map.snapshot();
    let _ = map.iter();
    let stats = map.map_stats();
    assert_eq!(stats.snapshots_taken, 2);
    assert_eq!(stats.len, 10);
    assert!(stats.capacity >= 10, "the read map was promoted: {stats:?}");
    assert_eq!(map.stats().read_len, 10, "Go's own figures stay");
}

#[test]
fn read_mostly_snapshot_matches_other_maps_and_clones_cheaply() {
    let read_mostly: ReadMostlyMap<u32, u32> = (0..20).map(|key| (key, key * 2)).collect();
    let sharded: ShardedMap<u32, u32> = (0..20).map(|key| (key, key * 2)).collect();
    let snapshot = read_mostly.snapshot();
    assert_eq!(snapshot, sharded.snapshot());
    let copy = snapshot.clone();
    assert_eq!(copy, snapshot);
    assert_eq!(copy.version(), snapshot.version());
    let expected: MapSnapshot<u32, u32> = (0..20).map(|key| (key, key * 2)).collect();
    assert_eq!(expected, snapshot);
    let different: MapSnapshot<u32, u32> = (0..20).map(|key| (key, key)).collect();
    assert_ne!(different, snapshot);
}

#[test]
fn snapshot_iterators_clone_and_debug() {
    let snapshot: MapSnapshot<u32, &str> = [(1, "one")].into_iter().collect();
    let mut iter = snapshot.iter();
    let copy = iter.clone();
    assert_eq!(format!("{copy:?}"), r#"{1: "one"}"#);
    assert_eq!(iter.next(), Some((&1, &"one")));
    assert_eq!(format!("{iter:?}"), "{}");
    assert_eq!(copy.count(), 1, "the clone kept its own position");
    let keys: Vec<_> = (&snapshot).into_iter().map(|(key, _)| *key).collect();
    assert_eq!(keys, vec![1]);
    assert_eq!(snapshot.values().collect::<Vec<_>>(), vec![&"one"]);
}

#[test]
fn snapshots_look_up_by_equivalent_keys() {
    let ada = NameQuery("ada", "lovelace");
    let read_mostly: ReadMostlyMap<FullName, u32> = ReadMostlyMap::new();
    read_mostly.store(name("ada", "lovelace"), 1815);
    assert_eq!(read_mostly.snapshot().get(&ada), Some(&1815));
    let rcu: RcuMap<FullName, u32> = RcuMap::new();
    rcu.insert(name("ada", "lovelace"), 1815);
    assert_eq!(rcu.snapshot().get(&ada), Some(&1815));
    assert!(!rcu.snapshot().contains_key(&NameQuery("ada", "byron")));
}

#[test]
fn rcu_map_looks_up_by_equivalent_keys() {
    let map: RcuMap<FullName, u32> = RcuMap::new();
    map.insert(name("alan", "turing"), 1912);
    let alan = NameQuery("alan", "turing");
    assert_eq!(map.get(&alan), Some(1912));
    assert_eq!(map.get_with(&alan, |year| year + 1), Some(1913));
    assert!(map.contains_key(&alan));
    assert_eq!(map.update(&alan, |year| year + 100), Some(2012));
    assert_eq!(map.remove(&alan), Some(2012));
    assert!(map.is_empty());

    let mut persistent: PersistentMap<FullName, u32> = PersistentMap::new();
    persistent.insert(name("grace", "hopper"), 1906);
    let grace = NameQuery("grace", "hopper");
    assert_eq!(persistent[&grace], 1906);
    assert_eq!(
        persistent
            .get_key_value(&grace)
            .map(|(key, _)| key.first.as_str()),
        Some("grace")
    );
    assert_eq!(persistent.remove(&grace), Some(1906));
}

#[test]
fn rcu_map_iterates_one_publication_and_clones() {
    let map: RcuMap<u32, u32> = (0..10).map(|key| (key, key)).collect();
    let iter = map.iter();
    map.insert(100, 100);
    assert_eq!(
        iter.len(),
        10,
        "the iterator keeps the publication it started from"
    );
    let mut total = 0;
    for (_, value) in &map {
        total += value;
    }
    assert_eq!(total, 45 + 100);

    let copy = map.clone();
    assert_eq!(copy, map);
    assert_eq!(copy.version(), 0);
    copy.insert(1, 1000);
    assert_eq!(map.get(&1), Some(1));
    assert_ne!(copy, map);
}

#[test]
fn rcu_map_stats() {
    let map: RcuMap<u32, u32> = (0..10).map(|key| (key, key)).collect();
    let _ = map.snapshot();
    let stats = map.stats();
    assert_eq!((stats.len, stats.snapshots_taken), (10, 1));
    assert_eq!((stats.capacity, stats.resizes), (0, 0));
}

#[test]
fn persistent_map_iterates_by_reference_and_by_value() {
    let map: PersistentMap<u32, String> = (0..5).map(|key| (key, key.to_string())).collect();
    let shared = map.clone();
    let borrowed: BTreeMap<u32, String> = (&map)
        .into_iter()
        .map(|(key, value)| (*key, value.clone()))
        .collect();
    let owned: BTreeMap<u32, String> = map.into_iter().collect();
    assert_eq!(borrowed, owned);
    assert_eq!(shared.len(), 5, "consuming one copy leaves the other whole");
    let mut iter = shared.iter();
    iter.next();
    assert_eq!(format!("{iter:?}").matches(':').count(), 4);
}

#[test]
fn hot_swap_clone_shares_the_value_and_compares_values() {
    let cell = HotSwap::new(String::from("v1"));
    cell.store(String::from("v2"));
    let copy = cell.clone();
    assert!(std::sync::Arc::ptr_eq(&copy.load_full(), &cell.load_full()));
    assert_eq!(copy, cell);
    assert_eq!((copy.version(), cell.version()), (0, 1));
    copy.store(String::from("v3"));
    assert_ne!(copy, cell);
    assert_eq!(*cell.load(), "v2");
}

#[test]
fn captured_maps_compare_values_and_their_snapshots_compare_versions() {
    use atomicmap::capture::CapturedMap;

    let on_node_one: CapturedMap<String, u32> = CapturedMap::with_node(1);
    let on_node_two: CapturedMap<String, u32> = CapturedMap::with_node(2);
    on_node_one.insert("a".into(), 1);
    on_node_two.insert("a".into(), 1);
    assert!(on_node_one == on_node_two, "versions differ, values do not");
    let snapshot = on_node_one.snapshot();
    assert!(
        snapshot != on_node_two.snapshot(),
        "a snapshot compares versions too"
    );
    assert!(snapshot == snapshot.clone());
    let full_name: CapturedMap<FullName, u32> = CapturedMap::new();
    full_name.insert(name("ada", "lovelace"), 1815);
    let found = full_name.snapshot();
    let found = found.get(&NameQuery("ada", "lovelace"));
    assert_eq!(found.map(|entry| entry.value), Some(1815));
    on_node_two.insert("a".into(), 2);
    assert!(on_node_one != on_node_two);
}

#[test]
fn a_version_mismatch_clones_and_compares() {
    let cell = HotSwap::new(1u32);
    cell.store(2);
    let mismatch = cell.compare_and_swap(0, 3).unwrap_err();
    let copy = mismatch.clone();
    assert!(std::sync::Arc::ptr_eq(&copy.rejected, &mismatch.rejected));
    assert_eq!(copy, mismatch);
    assert_eq!(copy.current_version, 1);
}

#[test]
fn an_rcu_map_starts_from_a_persistent_map_at_version_zero() {
    let initial: PersistentMap<u32, u32> = (0..3).map(|key| (key, key)).collect();
    let map = RcuMap::from_persistent(initial.clone());
    assert_eq!((map.version(), map.len()), (0, 3));
    assert_eq!(*map.load(), initial);
    fn assert_eq_trait<T: Eq>(_: &T) {}
    assert_eq_trait(&initial);
    let mut owned = initial.into_iter();
    owned.next();
    assert_eq!(
        format!("{owned:?}").matches(':').count(),
        2,
        "two entries left"
    );
}
