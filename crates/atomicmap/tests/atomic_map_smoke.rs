use atomicmap::AtomicMap;

#[test]
fn grows_and_shrinks_through_resizes() {
    let map: AtomicMap<u64, u64> = AtomicMap::new();
    for key in 0..100_000u64 {
        assert_eq!(map.insert(key, key * 2), None);
    }
    assert_eq!(map.len(), 100_000);
    for key in 0..100_000u64 {
        assert_eq!(map.get(&key), Some(key * 2), "key {key}");
    }
    for key in 0..99_000u64 {
        assert_eq!(
            map.remove(&key).map(atomicmap::GuardedRef::into_owned),
            Some(key * 2)
        );
    }
    assert_eq!(map.len(), 1_000);
    for key in 99_000..100_000u64 {
        assert_eq!(map.get(&key), Some(key * 2));
    }
    map.clear();
    assert!(map.is_empty());
}

#[test]
fn string_keys_and_values() {
    let map: AtomicMap<String, String> = AtomicMap::new();
    for i in 0..5_000 {
        map.insert(format!("key-{i}"), format!("value-{i}"));
    }
    for i in 0..5_000 {
        assert_eq!(
            map.get(format!("key-{i}").as_str()),
            Some(format!("value-{i}"))
        );
    }
    assert_eq!(
        map.insert("key-1".into(), "x".into())
            .map(atomicmap::GuardedRef::into_owned),
        Some("value-1".into())
    );
    assert_eq!(
        map.remove("key-1").map(atomicmap::GuardedRef::into_owned),
        Some("x".into())
    );
    assert_eq!(map.len(), 4_999);
}

/// Batched lookups return exactly what one `get` per key returns, in the order asked, for
/// batches larger and smaller than a prefetch group, for present and missing keys, inline and
/// boxed.
#[test]
fn batched_lookups_agree_with_single_lookups() {
    let numbers: AtomicMap<u64, u64> = (0..1_000)
        .filter(|key| key % 3 != 0)
        .map(|key| (key, key * 7))
        .collect();
    let pinned = numbers.pin();
    let keys: Vec<u64> = (0..100).map(|i| (i * 37) % 1_200).collect();
    let asked: Vec<&u64> = keys.iter().collect();
    let mut seen = Vec::new();
    pinned.get_each(&asked, |index, value| seen.push((index, value.copied())));
    let expected: Vec<(usize, Option<u64>)> = keys
        .iter()
        .enumerate()
        .map(|(index, key)| (index, numbers.get(key)))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        numbers.get_many([&1, &3, &2_000, &998]),
        [Some(7), None, None, Some(6_986)]
    );

    let names: AtomicMap<String, String> = (0..50)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    let [first, missing, last] = names.get_many(["k0", "nope", "k49"]);
    assert_eq!(
        (first.as_deref(), missing, last.as_deref()),
        (Some("v0"), None, Some("v49"))
    );
}

/// A capacity whose table would exceed what an allocation can be is an overflow, reported
/// before anything is allocated; one that could exist but is refused is an allocation failure.
#[test]
fn impossible_capacities_are_reported_not_attempted() {
    use atomicmap::CapacityError;
    type Map = AtomicMap<u64, u64>;
    assert_eq!(
        Map::try_with_capacity(1 << 59).err(),
        Some(CapacityError::Overflow)
    );
    assert_eq!(
        Map::try_with_capacity(usize::MAX).err(),
        Some(CapacityError::Overflow)
    );
    let map = Map::new();
    assert_eq!(
        map.try_reserve(usize::MAX).err(),
        Some(CapacityError::Overflow)
    );
    assert_eq!(
        map.try_reserve(1 << 59).err(),
        Some(CapacityError::Overflow)
    );
    map.insert(1, 1);
    assert_eq!(map.get(&1), Some(1), "a refused reserve changes nothing");
}
