//! Arbitrary bytes deserialized as JSON into each map (the crate's `serde` feature): never a
//! panic, the same verdict as std's `HashMap` on the same bytes, and the same content when
//! both accept them (the last value of a repeated key wins). An accepted map serializes and
//! reads back to the same content.

#![no_main]

use std::collections::{BTreeMap, HashMap};

use atomicmap::{AtomicMap, RcuMap, ReadMostlyMap, ShardedMap};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

type Content = BTreeMap<String, i64>;

/// Deserializes `bytes` as map type `M`, whose content `entries` lists.
fn check<M: DeserializeOwned + Serialize>(
    name: &str,
    bytes: &[u8],
    reference: &Option<Content>,
    entries: impl Fn(&M) -> Content,
) {
    let parsed: Option<M> = serde_json::from_slice(bytes).ok();
    let content = parsed.as_ref().map(&entries);
    assert_eq!(&content, reference, "{name}: differs from std's HashMap");
    if let Some(map) = parsed {
        let json = serde_json::to_vec(&map).expect("serializing an accepted map");
        let again: M = serde_json::from_slice(&json).expect("reading back a serialized map");
        assert_eq!(entries(&again), entries(&map), "{name}: round trip");
    }
}

fn listed<'a>(entries: impl Iterator<Item = (&'a String, &'a i64)>) -> Content {
    entries.map(|(k, v)| (k.clone(), *v)).collect()
}

fuzz_target!(|bytes: &[u8]| {
    let reference: Option<Content> = serde_json::from_slice::<HashMap<String, i64>>(bytes)
        .ok()
        .map(|map| map.into_iter().collect());
    check(
        "AtomicMap",
        bytes,
        &reference,
        |map: &AtomicMap<String, i64>| listed(map.snapshot().iter()),
    );
    check(
        "ShardedMap",
        bytes,
        &reference,
        |map: &ShardedMap<String, i64>| listed(map.snapshot().iter()),
    );
    check(
        "ReadMostlyMap",
        bytes,
        &reference,
        |map: &ReadMostlyMap<String, i64>| listed(map.snapshot().iter()),
    );
    check("RcuMap", bytes, &reference, |map: &RcuMap<String, i64>| {
        listed(map.snapshot().iter())
    });
});
