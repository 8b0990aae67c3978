//! Deterministic single-threaded tests of an `AtomicMap` whose resize is half done: the state
//! every concurrent operation must cope with, built here without any thread.
//!
//! A resize is cooperative: the insert that finds a table too crowded installs a successor and
//! migrates one chunk of slots, and each later *write* migrates one more; reads never help. So
//! after the insert that starts the resize of a table of several chunks, and until enough
//! writes follow, the old table is still the root, its first chunk is forwarded (`MOVED` /
//! `SEALED`), the rest is not, and new keys live only in the successor.
//!
//! An identity hasher places key `k` in slot `k % capacity`, which makes that state exact: a
//! table of [`SLOTS`] slots holding every key `0..SLOTS - 1` has one free slot, the last, in
//! its last chunk; a new key whose home is a few slots before it probes into that free slot
//! and finds the table crowded, whatever the crowding threshold and probe limit are.

mod common;

use std::hash::BuildHasherDefault;

use atomicmap::AtomicMap;
use common::IdentityHasher;

type IdentityMap = AtomicMap<u64, u64, BuildHasherDefault<IdentityHasher>>;

/// Slots of the table that is resized: many migration chunks, so one write leaves most of the
/// table unmigrated.
const SLOTS: u64 = 1 << 14;

/// The free slot of the full table: the last one, in the last chunk to be migrated.
const FREE_SLOT: u64 = SLOTS - 1;

/// A new key whose home is 20 slots before the free slot: its insert probes 20 claimed slots,
/// finds the free one, samples a table that is all but full, and starts the resize.
const TRIGGER: u64 = SLOTS + FREE_SLOT - 20;

fn value_of(key: u64) -> u64 {
    key * 10 + 1
}

/// A map whose table of `SLOTS` slots holds every key but one slot's worth, and whose resize
/// was just started by inserting [`TRIGGER`].
fn map_with_resize_in_flight() -> IdentityMap {
    let map = IdentityMap::with_capacity_and_hasher(SLOTS as usize / 2, Default::default());
    for key in 0..FREE_SLOT {
        assert_eq!(map.insert(key, value_of(key)), None);
    }
    assert_eq!(map.insert(TRIGGER, value_of(TRIGGER)), None);
    assert_eq!(map.len(), SLOTS as usize);
    map
}

/// Every key that was in the table before the resize is found, through forwarded and
/// unforwarded chunks alike, and writes to either kind land where reads find them.
#[test]
fn old_keys_stay_readable_and_writable_while_a_resize_is_in_flight() {
    let map = map_with_resize_in_flight();
    for key in 0..FREE_SLOT {
        assert_eq!(map.get(&key), Some(value_of(key)), "key {key}");
    }
    // Key 3 is in the first, already forwarded chunk; the other keys are in later chunks.
    assert_eq!(map.update(&3, |value| value + 1), Some(value_of(3) + 1));
    assert_eq!(map.get(&3), Some(value_of(3) + 1));
    assert_eq!(
        map.remove(&(SLOTS / 2))
            .map(atomicmap::GuardedRef::into_owned),
        Some(value_of(SLOTS / 2))
    );
    assert_eq!(map.get(&(SLOTS / 2)), None);
    assert_eq!(
        map.insert(FREE_SLOT - 1, 7)
            .map(atomicmap::GuardedRef::into_owned),
        Some(value_of(FREE_SLOT - 1))
    );
    assert_eq!(map.get(&(FREE_SLOT - 1)), Some(7));
    assert_eq!(map.len(), SLOTS as usize - 1);
}

/// The insert that starts a resize goes on into the successor; the free slot it found in the
/// old table must be sealed first, or a lookup of that key would stop at it and miss the key
/// until the chunk holding that slot is migrated (a bug this test caught).
#[test]
fn the_key_whose_insert_started_a_resize_is_found() {
    let map = map_with_resize_in_flight();
    assert_eq!(map.get(&TRIGGER), Some(value_of(TRIGGER)));
    assert!(map.contains_key(&TRIGGER));
}

/// A map with a resize in flight and two keys that live only in the successor, both of which
/// `get` finds: the trigger, and a second new key whose insert probed the whole old table on
/// its way to the successor.
fn map_with_two_keys_only_in_the_successor() -> (IdentityMap, [u64; 2]) {
    let map = map_with_resize_in_flight();
    let second = 2 * SLOTS + 5;
    assert_eq!(map.insert(second, value_of(second)), None);
    for key in [TRIGGER, second] {
        assert_eq!(map.get(&key), Some(value_of(key)), "key {key}");
    }
    (map, [TRIGGER, second])
}

/// Keys inserted after a resize began live only in the successor; iteration (and `retain`,
/// `Debug`) must visit them although the old table is still the root (a bug this test caught:
/// the walk followed only `MOVED` entries).
#[test]
fn iteration_visits_keys_inserted_while_a_resize_is_in_flight() {
    let (map, new_keys) = map_with_two_keys_only_in_the_successor();
    let visited: std::collections::HashSet<u64> = map.iter().map(|(key, _)| key).collect();
    for key in new_keys {
        assert!(visited.contains(&key), "iter skipped key {key}");
    }
    assert_eq!(visited.len(), map.len());
}

/// `clear` removes what `retain` visits, so it must also reach keys that live only in the
/// successor of a resize in flight.
#[test]
fn clear_empties_a_map_with_a_resize_in_flight() {
    let (map, new_keys) = map_with_two_keys_only_in_the_successor();
    map.clear();
    for key in new_keys {
        assert_eq!(map.get(&key), None, "clear left key {key}");
    }
    assert!(map.is_empty(), "{} entries left after clear", map.len());
}

/// A batched lookup takes the root once per group of keys and looks the whole group up in it,
/// so a group can outlive the root it started in. Here the visit of the group's first answer
/// drives the resize to its end (every write copies a chunk), so the rest of the group is
/// looked up in a table whose every slot was forwarded: each must still get the answer `get`
/// gives, for keys in the old table, keys only in the successor, and absent keys.
#[test]
fn a_batched_lookup_answers_after_the_resize_under_it_ends() {
    let (map, new_keys) = map_with_two_keys_only_in_the_successor();
    let capacity_before = map.capacity();
    let mut keys: Vec<u64> = (0..28).map(|i| i * (SLOTS / 28)).collect();
    keys.extend(new_keys);
    keys.extend([3 * SLOTS + 1, FREE_SLOT]);
    let asked: Vec<&u64> = keys.iter().collect();
    let mut answers = Vec::new();
    map.pin().get_each(&asked, |index, value| {
        if index == 0 {
            for key in 0..SLOTS {
                map.update(&key, |value| *value);
            }
        }
        answers.push(value.copied());
    });
    assert!(
        map.capacity() > capacity_before,
        "the writes during the batch did not finish the resize"
    );
    let expected: Vec<Option<u64>> = keys.iter().map(|key| map.get(key)).collect();
    assert_eq!(answers, expected);
    assert_eq!(answers.iter().filter(|answer| answer.is_none()).count(), 2);
}
