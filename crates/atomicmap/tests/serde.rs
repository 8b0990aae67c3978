//! The `serde` feature: every map and `MapSnapshot` serialize as a map of their entries and
//! the maps deserialize from one (`.ci/run` runs this with `--features serde`).
#![cfg(feature = "serde")]

use std::collections::BTreeMap;

use atomicmap::{AtomicMap, HotSwap, MapSnapshot, RcuMap, ReadMostlyMap, ShardedMap};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Entries with keys that need escaping and a value of every size class `AtomicMap` stores
/// differently (inline, boxed above 2^63).
fn entries() -> BTreeMap<String, u64> {
    (0..200u64)
        .map(|n| {
            (
                format!("key \"{n}\""),
                n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            )
        })
        .collect()
}

/// Serializes `map` (holding `entries()`), checks the JSON against std's, and deserializes it
/// back into an `M` whose entries, collected by `contents`, must be the same.
fn round_trip<M: Serialize + DeserializeOwned>(
    map: &M,
    contents: impl Fn(&M) -> BTreeMap<String, u64>,
) {
    let expected = entries();
    let json = serde_json::to_string(map).expect("serializes");
    let as_std: BTreeMap<String, u64> = serde_json::from_str(&json).expect("a JSON map");
    assert_eq!(as_std, expected, "serialized entries");
    let back: M = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(contents(&back), expected, "deserialized entries");
}

#[test]
fn atomic_map_round_trips() {
    let map: AtomicMap<String, u64> = entries().into_iter().collect();
    round_trip(&map, |map| map.iter().collect());
}

#[test]
fn sharded_map_round_trips() {
    let map: ShardedMap<String, u64> = entries().into_iter().collect();
    round_trip(&map, |map| map.iter().collect());
}

#[test]
fn read_mostly_map_round_trips() {
    let map: ReadMostlyMap<String, u64> = entries().into_iter().collect();
    round_trip(&map, |map| {
        let mut contents = BTreeMap::new();
        map.range(|key, value| {
            contents.insert(key.clone(), *value);
            true
        });
        contents
    });
}

#[test]
fn rcu_map_round_trips() {
    let map: RcuMap<String, u64> = entries().into_iter().collect();
    round_trip(&map, |map| {
        map.snapshot()
            .iter()
            .map(|(key, value)| (key.clone(), *value))
            .collect()
    });
}

#[test]
fn a_snapshot_serializes_its_instant_not_the_map_now() {
    let map: AtomicMap<u64, u64> = (0..100).map(|n| (n, n)).collect();
    let snapshot = map.snapshot();
    map.insert(1_000, 1_000);
    map.remove(&0);
    let json = serde_json::to_string(&snapshot).expect("serializes");
    let seen: BTreeMap<u64, u64> = serde_json::from_str(&json).expect("a JSON map");
    assert_eq!(seen, (0..100).map(|n| (n, n)).collect());
}

#[test]
fn integer_keys_round_trip() {
    let map: AtomicMap<u64, String> = (0..50).map(|n| (n, n.to_string())).collect();
    let json = serde_json::to_string(&map).expect("serializes");
    let back: AtomicMap<u64, String> = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back.len(), 50);
    assert!((0..50).all(|n| back.get(&n) == Some(n.to_string())));
}

#[test]
fn a_repeated_key_keeps_its_last_value() {
    let map: AtomicMap<String, u64> =
        serde_json::from_str(r#"{"a": 1, "b": 2, "a": 3}"#).expect("deserializes");
    assert_eq!(map.len(), 2);
    assert_eq!(map.get("a"), Some(3));
}

#[test]
fn bad_input_is_an_error_not_a_partial_map() {
    let wrong_value = serde_json::from_str::<AtomicMap<String, u64>>(r#"{"a": 1, "b": "two"}"#);
    assert!(wrong_value.is_err());
    let not_a_map = serde_json::from_str::<ShardedMap<String, u64>>("[1, 2]");
    assert!(not_a_map.is_err());
    let truncated = serde_json::from_str::<RcuMap<String, u64>>(r#"{"a": 1, "b""#);
    assert!(truncated.is_err());
}

#[test]
fn a_snapshot_deserializes_with_version_zero() {
    let map: ShardedMap<String, u64> = entries().into_iter().collect();
    map.insert("extra".into(), 1);
    map.remove("extra");
    let snapshot = map.snapshot();
    assert!(snapshot.version() > 0);
    round_trip(&snapshot, |back: &MapSnapshot<String, u64>| {
        assert_eq!(back.version(), 0, "the serialized form carries no version");
        back.to_map()
    });
    let back: MapSnapshot<String, u64> =
        serde_json::from_str(&serde_json::to_string(&snapshot).unwrap()).unwrap();
    assert_eq!(back, snapshot);
    assert_eq!(back.get("key \"7\""), snapshot.get("key \"7\""));
}

#[test]
fn a_snapshot_rejects_bad_input() {
    assert!(serde_json::from_str::<MapSnapshot<String, u64>>(r#"{"a": "one"}"#).is_err());
    let repeated: MapSnapshot<String, u64> =
        serde_json::from_str(r#"{"a": 1, "a": 2}"#).expect("deserializes");
    assert_eq!((repeated.len(), repeated.get("a")), (1, Some(&2)));
}

#[test]
fn hot_swap_serializes_its_current_value_without_the_version() {
    let cell = HotSwap::new(vec!["v1".to_owned()]);
    cell.store(vec!["v2".to_owned(), "v2b".to_owned()]);
    let json = serde_json::to_string(&cell).expect("serializes");
    assert_eq!(json, r#"["v2","v2b"]"#);
    let back: HotSwap<Vec<String>> = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, cell);
    assert_eq!((cell.version(), back.version()), (1, 0));
    assert!(serde_json::from_str::<HotSwap<Vec<String>>>("{}").is_err());
}
