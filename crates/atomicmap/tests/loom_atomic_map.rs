//! loom models of `AtomicMap`: the one-CAS slot protocol under racing writers, and the hand-off
//! of entries from a table to its successor while other threads read and write them.
//!
//! Under `cfg(loom)` the map migrates 2 slots per chunk. The models use a 4-slot table (two
//! chunks, so a grow stays in flight after the insert that starts it until another write
//! helps) and an identity hasher that puts key `k` in slot `k % capacity`: every execution lays
//! the table out the same way, as loom's replay requires (the default hasher is randomly
//! seeded).
//!
//! The crate's per-thread crowding-sample seed and shrink-check counter are loom's thread
//! locals, so every execution starts from the same state;
//! `crowding_checks_keep_executions_deterministic` and
//! `shrink_checks_keep_executions_deterministic` keep it that way.
#![cfg(loom)]

mod common;

use std::hash::BuildHasherDefault;

use atomicmap::AtomicMap;
use common::serial::{check_model, check_model_with_preemptions};
use common::IdentityHasher;
use loom::sync::Arc;
use loom::thread;

type Map = AtomicMap<u8, u8, BuildHasherDefault<IdentityHasher>>;

/// An empty map with a 4-slot table.
fn new_map() -> Arc<Map> {
    Arc::new(Map::with_capacity_and_hasher(2, Default::default()))
}

/// A map whose 4-slot table is full with keys 0..4 (value `10 + key`), each in its home slot.
fn full_map() -> Arc<Map> {
    let map = new_map();
    for key in 0..4 {
        map.insert(key, 10 + key);
    }
    map
}

/// Two `upsert` increments of one missing key: one creates it, the other increments what the
/// first stored, whichever claims the slot or commits first.
#[test]
fn racing_upserts_of_a_new_key_both_count() {
    check_model(|| {
        let map = new_map();
        let other = {
            let map = Arc::clone(&map);
            thread::spawn(move || map.upsert(0, || 1, |count| count + 1))
        };
        let mine = map.upsert(0, || 1, |count| count + 1);
        let theirs = other.join().unwrap();
        let mut stored = [mine, theirs];
        stored.sort_unstable();
        assert_eq!(stored, [1, 2], "each upsert returns the value it stored");
        assert_eq!(map.get(&0), Some(2));
        assert_eq!(map.len(), 1);
    });
}

/// An overwrite races a remove of the same key. The two linearizable orders are the only
/// outcomes, and the values each call returns agree with the final state.
#[test]
fn insert_racing_remove_of_one_key_is_linearizable() {
    check_model(|| {
        let map = new_map();
        map.insert(0, 1);
        let inserter = {
            let map = Arc::clone(&map);
            thread::spawn(move || map.insert(0, 2).map(atomicmap::GuardedRef::into_owned))
        };
        let removed = map.remove(&0).map(atomicmap::GuardedRef::into_owned);
        let replaced = inserter.join().unwrap();
        let outcome = (replaced, removed, map.get(&0));
        let insert_first = (Some(1), Some(2), None);
        let remove_first = (None, Some(1), Some(2));
        assert!(
            outcome == insert_first || outcome == remove_first,
            "(insert returned, remove returned, final) = {outcome:?}"
        );
        assert_eq!(map.len(), usize::from(outcome.2.is_some()));
    });
}

/// Two new keys with different home slots are inserted at once, each thread then reading the
/// other's key: each read sees the key absent or with its value, and both keys end up stored.
#[test]
fn racing_inserts_of_different_keys() {
    check_model(|| {
        let map = new_map();
        let other = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                assert_eq!(map.insert(1, 20), None);
                let seen = map.get(&0);
                assert!(seen.is_none() || seen == Some(10), "read {seen:?}");
            })
        };
        assert_eq!(map.insert(0, 10), None);
        let seen = map.get(&1);
        assert!(seen.is_none() || seen == Some(20), "read {seen:?}");
        other.join().unwrap();
        assert_eq!(map.get(&0), Some(10));
        assert_eq!(map.get(&1), Some(20));
        assert_eq!(map.len(), 2);
    });
}

/// A grower inserts key 4 into the full table (home slot 0: it probes every slot, so the table
/// grows and the first chunk, keys 0 and 1, moves) and then key 5 (whose write helps move the
/// second chunk and finishes the grow); meanwhile another thread increments `key` and reads it
/// back. The increment is never lost to the move, and the grower's keys all arrive.
fn update_racing_a_grow(key: u8) {
    check_model(move || {
        let map = full_map();
        let grower = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                assert_eq!(map.insert(4, 14), None);
                assert_eq!(map.insert(5, 15), None);
            })
        };
        assert_eq!(map.update(&key, |value| value + 100), Some(110 + key));
        assert_eq!(
            map.get(&key),
            Some(110 + key),
            "the update survived the move"
        );
        grower.join().unwrap();
        for other in (0..6).filter(|&other| other != key) {
            assert_eq!(map.get(&other), Some(10 + other), "key {other}");
        }
        assert_eq!(map.get(&key), Some(110 + key));
        assert_eq!(map.len(), 6);
    });
}

#[test]
fn update_racing_a_grow_of_the_first_chunk_is_not_lost() {
    update_racing_a_grow(0);
}

#[test]
fn update_racing_a_grow_of_the_second_chunk_is_not_lost() {
    update_racing_a_grow(3);
}

/// A reader races a grow: keys being moved read with their values throughout, and the
/// grower's inserts appear in the order it made them (seeing key 5 implies seeing key 4).
/// `read` returns the values of keys 5, 4, 0 and 3, looked up in that order.
fn reads_racing_a_grow(read: fn(&Map) -> [Option<u8>; 4]) {
    check_model(move || {
        let map = full_map();
        let grower = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                map.insert(4, 14);
                map.insert(5, 15);
            })
        };
        let [second, first, moved_first, moved_second] = read(&map);
        assert_eq!(
            moved_first,
            Some(10),
            "a key of the first chunk is never missing"
        );
        assert_eq!(
            moved_second,
            Some(13),
            "a key of the second chunk is never missing"
        );
        assert!(second.is_none() || second == Some(15), "read {second:?}");
        assert!(first.is_none() || first == Some(14), "read {first:?}");
        assert!(
            second.is_none() || first.is_some(),
            "saw key 5 but then not key 4, which was inserted before it"
        );
        grower.join().unwrap();
        assert_eq!(map.len(), 6);
    });
}

#[test]
fn reads_racing_a_grow_see_only_written_values() {
    reads_racing_a_grow(|map| [map.get(&5), map.get(&4), map.get(&0), map.get(&3)]);
}

/// The batch takes the root once for all its keys, so its later lookups may run in a table the
/// grow has since forwarded.
#[test]
fn a_batched_read_racing_a_grow_sees_only_written_values() {
    reads_racing_a_grow(|map| map.get_many([&5, &4, &0, &3]));
}

/// Two threads insert new keys into the full table at once, so both find it full and start,
/// help (one chunk each) and finish the same grow: both new keys and all moved keys survive.
#[test]
fn racing_inserts_that_both_need_a_grow() {
    check_model(|| {
        let map = full_map();
        let other = {
            let map = Arc::clone(&map);
            thread::spawn(move || assert_eq!(map.insert(4, 14), None))
        };
        assert_eq!(map.insert(5, 15), None);
        other.join().unwrap();
        for key in 0..6 {
            assert_eq!(map.get(&key), Some(10 + key), "key {key}");
        }
        assert_eq!(map.len(), 6);
    });
}

/// The smallest table (2 slots) and two new keys that share a home slot: whichever thread
/// claims the slot second probes on to the free slot and checks there whether the table is
/// crowded; the other thread's key must then be readable.
///
/// The crowding check samples the table from a start drawn from a per-thread generator. It
/// once was a std thread local, shared by all loom threads and carried across executions, so
/// the slots were loaded in a different order from one execution to the next, loom replayed
/// recorded choices against the wrong loads, and this model failed inside loom (`assertion
/// left != right failed` in `match_load_to_stores`). It is loom's thread local now.
#[test]
fn crowding_checks_keep_executions_deterministic() {
    check_model(|| {
        let map = Arc::new(Map::with_hasher(Default::default()));
        let other = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                assert_eq!(map.insert(2, 20), None);
                let seen = map.get(&0);
                assert!(seen.is_none() || seen == Some(10), "read {seen:?}");
            })
        };
        assert_eq!(map.insert(0, 10), None);
        other.join().unwrap();
        assert_eq!(map.get(&0), Some(10));
        assert_eq!(map.get(&2), Some(20));
    });
}

/// Removes before the race on every execution, then a reader racing an overwrite.
///
/// Removes count towards a shrink check (every 256th remove of a thread runs it) in a
/// per-thread counter. It once was a std thread local, kept across loom's executions, so the
/// execution in which the count came round ran extra loads before the race, diverged from the
/// path loom had recorded, and this model failed ("Is the model fully deterministic?"). It is
/// loom's thread local now, so each execution counts from zero.
#[test]
fn shrink_checks_keep_executions_deterministic() {
    check_model(|| {
        let map = new_map();
        for _ in 0..64 {
            map.insert(1, 1);
            map.remove(&1);
        }
        map.insert(0, 0);
        let reader = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                let seen = map.get(&0);
                assert!(seen == Some(0) || seen == Some(5), "read {seen:?}");
            })
        };
        map.insert(0, 5);
        reader.join().unwrap();
        assert_eq!(map.get(&0), Some(5));
    });
}

/// A snapshot's freezing migration races a writer that sets key 0, then key 2 (one in each
/// migration chunk). The snapshot is the map at one instant: it never shows the second write
/// without the first, and no write is lost to the migration.
#[test]
fn snapshot_freeze_hand_off_keeps_write_order() {
    check_model(|| {
        let map = new_map();
        map.insert(0, 10);
        map.insert(2, 12);
        let writer = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                map.insert(0, 1);
                map.insert(2, 1);
            })
        };
        let snapshot = map.snapshot();
        writer.join().unwrap();
        let state = (snapshot.get(&0).copied(), snapshot.get(&2).copied());
        assert!(
            [
                (Some(10), Some(12)),
                (Some(1), Some(12)),
                (Some(1), Some(1))
            ]
            .contains(&state),
            "snapshot (k0, k2) = {state:?}: not a state the map was in"
        );
        assert_eq!(snapshot.len(), 2);
        assert_eq!((map.get(&0), map.get(&2)), (Some(1), Some(1)));
    });
}

/// A remove and reinsert of one key (the ABA case of a value word) races a snapshot: the key is
/// missing from the snapshot only if the snapshot fell between the two, and never appears
/// with a value it did not have.
#[test]
fn snapshot_racing_remove_and_reinsert() {
    check_model(|| {
        let map = new_map();
        map.insert(1, 10);
        let writer = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                map.remove(&1);
                map.insert(1, 11);
            })
        };
        let snapshot = map.snapshot();
        writer.join().unwrap();
        let seen = snapshot.get(&1).copied();
        assert!(matches!(seen, None | Some(10) | Some(11)), "{seen:?}");
        assert_eq!(snapshot.len(), usize::from(seen.is_some()));
        assert_eq!(map.get(&1), Some(11));
    });
}

/// `clear` shrinks a table holding tombstones while another thread inserts a new key: the
/// map grew past the 4 slots `with_capacity` asked for, so `clear` compacts it back to them.
/// The compaction's successor is sized by counting claimed slots with new claims paused, so
/// every key it must carry finds a slot, the resize ends, and nothing torn or foreign survives
/// (the racing insert may or may not survive: `clear` is not atomic). A `clear` is a walk,
/// removes and a resize, so this model explores executions with up to two preemptions.
#[test]
fn clear_racing_inserts_of_new_keys() {
    check_model_with_preemptions(2, || {
        let map = new_map();
        for key in 0..5 {
            map.insert(key, 10 + key);
        }
        for key in 0..5 {
            map.remove(&key);
        }
        let writer = {
            let map = Arc::clone(&map);
            thread::spawn(move || map.insert(6, 16).map(atomicmap::GuardedRef::into_owned))
        };
        map.clear();
        assert_eq!(writer.join().unwrap(), None);
        assert_eq!(map.get(&0), None);
        let survivors: Vec<(u8, u8)> = map.iter().collect();
        assert!(survivors.iter().all(|&(key, value)| value == key + 10));
        assert_eq!(survivors.len(), map.len());
    });
}
