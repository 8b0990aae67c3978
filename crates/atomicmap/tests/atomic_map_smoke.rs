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
        assert_eq!(map.remove(&key), Some(key * 2));
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
        map.insert("key-1".into(), "x".into()),
        Some("value-1".into())
    );
    assert_eq!(map.remove("key-1"), Some("x".into()));
    assert_eq!(map.len(), 4_999);
}
