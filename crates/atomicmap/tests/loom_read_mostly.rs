//! loom models of ReadMostlyMap: promotion racing a store, and a snapshot's frozen entries
//! racing lock-free stores.
#![cfg(loom)]

mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use atomicmap::ReadMostlyMap;
use common::serial::check_model;
use loom::thread;

/// A miss that promotes the dirty map races a store of a brand-new key: the new key ends up
/// in the dirty map of the new generation (or in the promoted read map), never lost.
#[test]
fn promotion_racing_a_store_of_a_new_key() {
    check_model(|| {
        let map = Arc::new(ReadMostlyMap::<u32, u32>::new());
        map.store(0, 0);
        let promoter = {
            let map = Arc::clone(&map);
            thread::spawn(move || assert_eq!(map.load(&0), Some(0)))
        };
        map.store(1, 1);
        promoter.join().unwrap();
        assert_eq!(map.load(&0), Some(0));
        assert_eq!(map.load(&1), Some(1));
        assert!(map.stats().promotions >= 1);
    });
}

/// A promotion races a store to a key that is being promoted: the stored value survives.
#[test]
fn promotion_racing_a_store_to_the_promoted_key() {
    check_model(|| {
        let map = Arc::new(ReadMostlyMap::<u32, u32>::new());
        map.store(0, 0);
        let promoter = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                let seen = map.load(&0);
                assert!(seen == Some(0) || seen == Some(5));
            })
        };
        map.store(0, 5);
        promoter.join().unwrap();
        assert_eq!(map.load(&0), Some(5));
    });
}

/// Rebuilding the dirty map (which expunges a deleted entry) races a store to that deleted
/// key through the read map: the store must land in the dirty map so that the next
/// promotion keeps it.
#[test]
fn dirty_rebuild_racing_a_store_to_a_deleted_key() {
    check_model(|| {
        let map = Arc::new(ReadMostlyMap::<u32, u32>::new());
        map.store(0, 0);
        map.range(|_, _| true);
        map.delete(&0);
        let rebuilder = {
            let map = Arc::clone(&map);
            thread::spawn(move || map.store(1, 1))
        };
        map.store(0, 2);
        rebuilder.join().unwrap();
        map.range(|_, _| true);
        assert_eq!(map.load(&0), Some(2));
        assert_eq!(map.load(&1), Some(1));
    });
}

/// A snapshot freezes entries while a lock-free writer stores key 1, then key 0: the snapshot
/// never shows the second store without the first, and both stores land. With this fixed
/// hasher the snapshot freezes key 0 before key 1, the reverse of the write order, so a
/// snapshot that merely read the entries one by one fails this model.
#[test]
fn snapshot_freeze_racing_lock_free_stores() {
    check_model(|| {
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        let map = Arc::new(ReadMostlyMap::<u32, u32, _>::with_hasher(hasher));
        map.store(0, 10);
        map.store(1, 11);
        map.range(|_, _| true);
        let writer = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                map.store(1, 1);
                map.store(0, 1);
            })
        };
        let snapshot = map.snapshot();
        writer.join().unwrap();
        let state = (snapshot.get(&0).copied(), snapshot.get(&1).copied());
        assert!(
            [
                (Some(10), Some(11)),
                (Some(10), Some(1)),
                (Some(1), Some(1))
            ]
            .contains(&state),
            "snapshot (k0, k1) = {state:?}: not a state the map was in"
        );
        assert_eq!((map.load(&0), map.load(&1)), (Some(1), Some(1)));
    });
}
