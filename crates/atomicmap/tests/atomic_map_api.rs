//! The user-facing API of `AtomicMap` that a dashmap or papaya user reaches for first (issue
//! 15): values that are not `Clone`, conditional writes, the entry API, lazy iteration,
//! draining, `Equivalent` lookups, and the standard traits.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use atomicmap::{AtomicMap, Equivalent, GuardedRef};

const THREADS: u64 = 4;
const ROUNDS: u64 = 2_000;

#[test]
fn a_counter_table_of_atomics_needs_no_clone() {
    let hits: AtomicMap<u64, AtomicU64> = AtomicMap::new();
    assert!(hits.insert(0, AtomicU64::new(5)).is_none());
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for round in 0..ROUNDS {
                    hits.entry(round % 10)
                        .or_default()
                        .fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let total: u64 = hits
        .pin()
        .values()
        .map(|count| count.load(Ordering::Relaxed))
        .sum();
    assert_eq!(total, 5 + THREADS * ROUNDS);
    let replaced = hits.insert(0, AtomicU64::new(0)).expect("key 0 was there");
    assert_eq!(replaced.load(Ordering::Relaxed), 5 + THREADS * ROUNDS / 10);
    let removed = hits.remove(&1).expect("key 1 was there");
    assert_eq!(removed.load(Ordering::Relaxed), THREADS * ROUNDS / 10);
    assert!(hits.remove(&1).is_none());
}

#[test]
fn values_behind_a_mutex_are_inserted_and_removed() {
    let sessions: AtomicMap<String, Mutex<Vec<u32>>> = AtomicMap::new();
    sessions.insert("a".into(), Mutex::new(vec![1]));
    sessions
        .pin()
        .get("a")
        .expect("inserted")
        .lock()
        .unwrap()
        .push(2);
    let removed = sessions.remove("a").expect("inserted");
    assert_eq!(*removed.lock().unwrap(), [1, 2]);
}

#[test]
fn guarded_ref_reads_clones_and_compares_like_the_value() {
    let map: AtomicMap<u32, String> = AtomicMap::new();
    map.insert(1, "one".into());
    let previous: GuardedRef<'_, String> = map.insert(1, "uno".into()).unwrap();
    assert_eq!(previous, "one".to_string());
    assert_eq!(previous.len(), 3);
    assert_eq!(format!("{previous:?}"), "\"one\"");
    assert_eq!(previous.into_owned(), "one");
    assert_eq!(
        map.remove(&1).map(GuardedRef::into_owned),
        Some("uno".into())
    );
}

#[test]
fn try_insert_inserts_once_and_reports_the_holder() {
    let map: AtomicMap<u32, u64> = AtomicMap::new();
    assert!(map.try_insert(1, 10).is_ok());
    assert_eq!(map.try_insert(1, 20).map_err(|held| *held), Err(10));
    assert_eq!(map.get(&1), Some(10));

    let winners = AtomicUsize::new(0);
    thread::scope(|s| {
        for thread in 0..THREADS {
            let (map, winners) = (&map, &winners);
            s.spawn(move || {
                for key in 100..100 + ROUNDS as u32 {
                    match map.try_insert(key, thread) {
                        Ok(()) => {
                            winners.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(held) => assert!(*held < THREADS),
                    }
                }
            });
        }
    });
    assert_eq!(winners.into_inner(), ROUNDS as usize, "one winner per key");
}

#[test]
fn pinned_try_insert_lends_the_stored_value() {
    let map: AtomicMap<u32, String> = AtomicMap::new();
    let pinned = map.pin();
    assert_eq!(
        pinned.try_insert(1, "a".into()).as_deref().ok(),
        Some(&"a".to_string())
    );
    let held = pinned.try_insert(1, "b".into()).unwrap_err();
    assert_eq!(*held, "a");
}

#[test]
fn remove_if_removes_only_what_the_predicate_accepts() {
    let map: AtomicMap<u32, u32> = (0..10).map(|n| (n, n)).collect();
    assert!(map.remove_if(&3, |&value| value > 5).is_none());
    assert_eq!(map.get(&3), Some(3));
    assert_eq!(map.remove_if(&7, |&value| value > 5).map(|v| *v), Some(7));
    assert!(!map.contains_key(&7));
    assert!(map.remove_if(&70, |_| true).is_none());
    assert_eq!(map.len(), 9);
}

#[test]
fn compare_exchange_increments_are_never_lost() {
    let map: AtomicMap<&str, u64> = [("n", 0)].into_iter().collect();
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..ROUNDS {
                    let pinned = map.pin();
                    let mut seen = *pinned.get("n").unwrap();
                    while let Err(now) = pinned.compare_exchange("n", &seen, seen + 1) {
                        seen = *now.expect("never removed");
                    }
                }
            });
        }
    });
    assert_eq!(map.get("n"), Some(THREADS * ROUNDS));
    assert!(map.compare_exchange("absent", &0, 1).unwrap_err().is_none());
    assert!(
        !map.contains_key("absent"),
        "a failed exchange inserts nothing"
    );
}

#[test]
fn entry_and_modify_or_insert_counts_every_call() {
    let map: AtomicMap<u64, u64> = AtomicMap::new();
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for round in 0..ROUNDS {
                    map.entry(round % 7).and_modify(|n| n + 1).or_insert(1);
                }
            });
        }
    });
    let total: u64 = map.values().sum();
    assert_eq!(total, THREADS * ROUNDS);
}

#[test]
fn entry_insert_closures_run_at_most_once_and_not_for_a_present_key() {
    let map: AtomicMap<u32, u32> = AtomicMap::new();
    let makes = AtomicUsize::new(0);
    let make = || {
        makes.fetch_add(1, Ordering::Relaxed);
        9
    };
    assert_eq!(*map.entry(1).or_insert_with(make), 9);
    assert_eq!(*map.entry(1).or_insert_with(make), 9);
    assert_eq!(*map.entry(1).and_modify(|n| n + 1).or_insert_with(make), 10);
    assert_eq!(makes.load(Ordering::Relaxed), 1);
    assert_eq!(*map.entry(2).or_insert(4), 4);
    assert_eq!(*map.entry(2).or_insert(5), 4);
    assert!(map.entry(3).and_modify(|n| n + 1).apply().is_none());
    assert!(!map.contains_key(&3), "apply does not insert");
    assert_eq!(
        map.entry(2).and_modify(|n| n * 10).apply().map(|n| *n),
        Some(40)
    );
    assert_eq!(*map.entry(3).or_default(), 0);
    assert_eq!(map.entry(8).key(), &8);
}

#[test]
fn pinned_iteration_borrows_every_entry_once() {
    let map: AtomicMap<String, String> = (0..500)
        .map(|n| (format!("k{n}"), format!("v{n}")))
        .collect();
    let pinned = map.pin();
    let mut seen = BTreeMap::new();
    for (key, value) in &pinned {
        let value: &String = &value;
        assert!(
            seen.insert(key.clone(), value.clone()).is_none(),
            "{}",
            *key
        );
    }
    assert_eq!(seen.len(), 500);
    assert!(seen.iter().all(|(k, v)| k[1..] == v[1..]));
    assert_eq!(pinned.keys().count(), 500);
    assert_eq!(pinned.values().filter(|v| v.starts_with('v')).count(), 500);
    let iter = pinned.iter();
    assert_eq!(iter.size_hint().0, 0);
    assert!(iter.size_hint().1.unwrap() >= 500);
    assert!(format!("{iter:?}").starts_with("Iter"));
}

/// A walk that starts while the table is growing still sees every key present throughout.
#[test]
fn iteration_sees_every_key_present_throughout_while_writers_grow_the_table() {
    let map: AtomicMap<u64, u64> = (0..1_000).map(|n| (n, n)).collect();
    thread::scope(|s| {
        s.spawn(|| {
            for key in 1_000..20_000 {
                map.insert(key, key);
            }
        });
        for _ in 0..20 {
            let mut keys: Vec<u64> = map.pin().keys().map(|key| *key).collect();
            keys.sort_unstable();
            let before = keys.len();
            keys.dedup();
            assert_eq!(keys.len(), before, "a key was seen twice");
            assert!(keys.starts_with(&(0..1_000).collect::<Vec<_>>()));
        }
    });
}

#[test]
fn map_iteration_is_lazy_clones_and_into_iterator() {
    let map: AtomicMap<u32, u32> = (0..100).map(|n| (n, n + 1)).collect();
    let mut iter = map.iter();
    let (key, value) = iter.next().unwrap();
    assert_eq!(value, key + 1);
    assert!(format!("{iter:?}").starts_with("ClonedIter"));
    drop(iter);
    let mut pairs = Vec::new();
    for (key, value) in &map {
        pairs.push((key, value));
    }
    pairs.sort_unstable();
    assert_eq!(pairs, (0..100).map(|n| (n, n + 1)).collect::<Vec<_>>());
    let mut keys: Vec<u32> = map.keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, (0..100).collect::<Vec<_>>());
    assert_eq!(
        map.values().map(u64::from).sum::<u64>(),
        (1..=100).sum::<u64>()
    );
}

#[test]
fn drain_and_extract_if_return_what_they_remove() {
    let map: AtomicMap<u32, String> = (0..50).map(|n| (n, n.to_string())).collect();
    let mut even = map.extract_if(|key, _| key % 2 == 0);
    even.sort();
    assert_eq!(even.len(), 25);
    assert!(even
        .iter()
        .all(|(key, value)| key % 2 == 0 && *value == key.to_string()));
    assert_eq!(map.len(), 25);
    let mut rest = map.drain();
    rest.sort();
    assert_eq!(rest.len(), 25);
    assert!(map.is_empty());
}

#[test]
fn a_pinned_drain_removes_only_what_it_is_advanced_over() {
    let map: AtomicMap<u32, AtomicU64> = (0..10).map(|n| (n, AtomicU64::new(n.into()))).collect();
    let pinned = map.pin();
    let (key, value) = pinned.drain().next().expect("ten entries");
    assert_eq!(value.load(Ordering::Relaxed), u64::from(*key));
    assert_eq!(map.len(), 9);
    assert!(!pinned.contains_key(&*key));
    let taken = pinned.drain().count();
    assert_eq!(taken, 9);
    assert!(map.is_empty());
}

#[test]
fn capacity_is_what_the_table_is_sized_for() {
    let map: AtomicMap<u64, u64> = AtomicMap::with_capacity(1_000);
    let sized = map.capacity();
    assert!(sized >= 1_000);
    for key in 0..1_000 {
        map.insert(key, key);
    }
    assert_eq!(
        map.capacity(),
        sized,
        "holds what it was sized for without growing"
    );
    let small: AtomicMap<u64, u64> = AtomicMap::new();
    let initial = small.capacity();
    for key in 0..5_000 {
        small.insert(key, key);
    }
    assert!(small.capacity() > initial);
    assert!(
        small.capacity() * 2 >= small.len(),
        "no table holds more keys than slots"
    );
}

/// Inserts `keys` keys into `map` and removes them all: far more than the removes after which
/// a thread checks whether a table has emptied out enough to shrink.
fn fill_and_empty(map: &AtomicMap<u64, u64>, keys: u64) {
    for key in 0..keys {
        map.insert(key, key);
    }
    for key in 0..keys {
        map.remove(&key);
    }
    assert!(map.is_empty());
}

#[test]
fn removes_and_clear_keep_the_capacity_asked_for() {
    let presized: AtomicMap<u64, u64> = AtomicMap::with_capacity(100_000);
    let sized = presized.capacity();
    fill_and_empty(&presized, 5_000);
    assert_eq!(presized.capacity(), sized, "with_capacity, then removes");
    assert_eq!(presized.stats().resizes, 0);
    assert_eq!(presized.stats().tombstones, 5_000);
    presized.clear();
    assert_eq!(presized.capacity(), sized, "with_capacity, then clear");
    assert_eq!(
        presized.stats().tombstones,
        0,
        "clear compacts a table of the size it keeps"
    );

    let reserved: AtomicMap<u64, u64> = AtomicMap::new();
    reserved.reserve(100_000);
    let sized = reserved.capacity();
    assert!(sized >= 100_000);
    fill_and_empty(&reserved, 5_000);
    assert_eq!(reserved.capacity(), sized, "reserve, then removes");

    let grown: AtomicMap<u64, u64> = AtomicMap::new();
    fill_and_empty(&grown, 100_000);
    assert!(
        grown.capacity() < 1_000,
        "removes alone shrink a map nobody sized: {}",
        grown.capacity()
    );
    grown.clear();
    assert!(
        grown.capacity() < 1_000,
        "a map nobody sized shrinks as it empties: {}",
        grown.capacity()
    );
}

#[test]
fn shrink_to_lowers_the_capacity_removes_keep() {
    let map: AtomicMap<u64, u64> = AtomicMap::with_capacity(100_000);
    for key in 0..100 {
        map.insert(key, key);
    }
    map.shrink_to(1_000);
    let shrunk = map.capacity();
    assert!((1_000..100_000).contains(&shrunk), "{shrunk}");
    assert!((0..100).all(|key| map.get(&key) == Some(key)));
    fill_and_empty(&map, 500);
    assert_eq!(
        map.capacity(),
        shrunk,
        "removes keep what shrink_to asked for"
    );

    map.shrink_to(1_000_000);
    assert_eq!(map.capacity(), shrunk, "a larger minimum changes nothing");

    map.shrink_to_fit();
    assert!(map.capacity() < shrunk, "{}", map.capacity());
    map.insert(7, 7);
    assert_eq!(map.get(&7), Some(7));
}

/// A borrowed form of a `(String, String)` key that no `Borrow` impl could produce.
#[derive(Hash)]
struct Route<'a>(&'a str, &'a str);

impl Equivalent<(String, String)> for Route<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

#[test]
fn lookups_take_an_equivalent_borrowed_form() {
    // `Route` hashes as the tuple does: field after field, each as a `str`.
    let mut tuple = std::collections::hash_map::DefaultHasher::new();
    ("GET".to_string(), "/".to_string()).hash(&mut tuple);
    let mut route = std::collections::hash_map::DefaultHasher::new();
    Route("GET", "/").hash(&mut route);
    assert_eq!(tuple.finish(), route.finish());

    let routes: AtomicMap<(String, String), u32> = AtomicMap::new();
    routes.insert(("GET".into(), "/".into()), 1);
    routes.insert(("POST".into(), "/login".into()), 2);
    assert_eq!(routes.get(&Route("POST", "/login")), Some(2));
    assert!(routes.contains_key(&Route("GET", "/")));
    assert!(!routes.contains_key(&Route("GET", "/login")));
    assert_eq!(routes.pin().get(&Route("GET", "/")).map(|v| *v), Some(1));
    assert_eq!(
        routes.remove_if(&Route("GET", "/"), |_| true).map(|v| *v),
        Some(1)
    );
    assert_eq!(routes.remove(&Route("POST", "/login")).map(|v| *v), Some(2));
    assert!(routes.is_empty());
}

#[test]
fn clone_copies_the_contents_and_equality_compares_them() {
    let map: AtomicMap<u32, String> = (0..100).map(|n| (n, n.to_string())).collect();
    let copy = map.clone();
    assert_eq!(copy, map);
    copy.insert(0, "changed".into());
    assert_eq!(map.get(&0).as_deref(), Some("0"), "the copy is independent");
    assert_ne!(copy, map);
    copy.insert(0, "0".into());
    assert_eq!(copy, map);
    copy.insert(100, "100".into());
    assert_ne!(copy, map, "an extra key differs");
    assert_ne!(map, copy);
}

#[test]
fn entries_and_iterators_debug_print() {
    let map: AtomicMap<u32, u32> = AtomicMap::new();
    assert_eq!(format!("{:?}", map.entry(3)), "Entry { key: 3, .. }");
    assert_eq!(
        format!("{:?}", map.entry(3).and_modify(|n| *n)),
        "ModifyEntry { key: 3, .. }"
    );
    let pinned = map.pin();
    assert!(format!("{:?}", pinned.drain()).starts_with("ExtractIf"));
}

#[test]
fn stats_report_the_table_and_count_resizes_apart_from_snapshots() {
    let map: AtomicMap<u64, u64> = AtomicMap::new();
    let empty = map.stats();
    assert_eq!((empty.len, empty.resizes, empty.snapshots_taken), (0, 0, 0));
    for key in 0..1_000 {
        map.insert(key, key);
    }
    for key in 0..10 {
        map.remove(&key);
    }
    let grown = map.stats();
    assert_eq!(grown.len, 990);
    assert_eq!(grown.capacity, map.capacity());
    assert!(grown.resizes > 0);
    assert_eq!(grown.tombstones, 10);
    assert_eq!(grown.migrations_in_flight, 0);
    assert_eq!(grown.garbage_bytes, 0, "inline values leave no garbage");

    let _ = map.snapshot();
    let _ = map.snapshot();
    let after = map.stats();
    assert_eq!(after.snapshots_taken, 2);
    assert_eq!(after.resizes, grown.resizes, "a snapshot is not a resize");
}

/// Every key hashes to the same home slot, so the n-th key lies n slots from it.
#[derive(Clone, Default)]
struct SameHome;

impl std::hash::BuildHasher for SameHome {
    type Hasher = SameHomeHasher;
    fn build_hasher(&self) -> SameHomeHasher {
        SameHomeHasher
    }
}

struct SameHomeHasher;

impl Hasher for SameHomeHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, _: &[u8]) {}
}

#[test]
fn stats_report_the_longest_probe() {
    let map: AtomicMap<u64, u64, SameHome> = AtomicMap::with_capacity_and_hasher(64, SameHome);
    for key in 0..20 {
        map.insert(key, key);
    }
    assert_eq!(map.stats().longest_probe, 19);
}

#[test]
fn stats_count_garbage_a_pin_holds_back_until_it_is_freed() {
    let map: AtomicMap<u64, String> = AtomicMap::new();
    map.insert(0, String::new());
    let pinned = map.pin();
    for round in 0..100 {
        map.insert(0, round.to_string());
    }
    let held = map.stats().garbage_bytes;
    assert!(held >= 100 * std::mem::size_of::<String>(), "{held} bytes");
    drop(pinned);
    // Unheld garbage is freed by the passes that later retirements run.
    for round in 0..10_000 {
        map.insert(0, round.to_string());
    }
    let later = map.stats().garbage_bytes;
    assert!(
        later < 10_000 * std::mem::size_of::<String>(),
        "{later} bytes: garbage is freed, not only counted"
    );
}

/// Racing `and_modify(..).or_insert_with(..)` on the same keys: each key is inserted once and
/// modified by every other call, none lost and none applied twice, whichever closure reruns
/// (a made value that lost the race to insert is dropped, and the call modifies instead).
#[test]
fn racing_entries_insert_once_and_modify_exactly_once_per_other_call() {
    let map: AtomicMap<u64, String> = AtomicMap::new();
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for key in 0..500 {
                    map.entry(key)
                        .and_modify(|value| format!("{value}+"))
                        .or_insert_with(|| "x".into());
                }
            });
        }
    });
    for key in 0..500 {
        assert_eq!(
            map.get(&key).map(|value| value.len()),
            Some(THREADS as usize)
        );
    }
}

#[test]
fn a_pinned_handle_and_its_iterator_clone() {
    let map: AtomicMap<u64, u64> = (0..10).map(|key| (key, key * 10)).collect();
    let pinned = map.pin();
    let mut copy = pinned.clone();
    drop(pinned);
    copy.refresh();
    assert_eq!(copy.get(&3).as_deref(), Some(&30));

    let mut walk = copy.iter();
    walk.next();
    let rest: BTreeSet<u64> = walk.clone().map(|(key, _)| *key).collect();
    let again: BTreeSet<u64> = walk.map(|(key, _)| *key).collect();
    assert_eq!(rest, again);
    assert_eq!(rest.len(), 9);
}

#[test]
fn extend_inserts_in_order_so_a_repeated_key_keeps_its_last_value() {
    // More entries than one prefetched group, keys repeated within and across groups, into an
    // empty map that resizes on the way; inline keys and boxed ones.
    let entries = || {
        (0..5_000u64)
            .map(|index| (index * 7 % 1_013, index))
            .chain((0..100).map(|index| (index % 5, index)))
    };
    let mut expected = BTreeMap::new();
    for (key, value) in entries() {
        expected.insert(key, value);
    }

    let inline: AtomicMap<u64, u64> = entries().collect();
    assert_eq!(inline.iter().collect::<BTreeMap<_, _>>(), expected);

    let boxed: AtomicMap<String, u64> = AtomicMap::new();
    (&boxed).extend(entries().map(|(key, value)| (key.to_string(), value)));
    let boxed_entries: BTreeMap<u64, u64> = boxed
        .iter()
        .map(|(key, value)| (key.parse().expect("a number"), value))
        .collect();
    assert_eq!(boxed_entries, expected);

    let pinned: AtomicMap<u64, u64> = AtomicMap::new();
    pinned.pin().insert_all(entries());
    pinned.pin().insert_all(std::iter::empty());
    assert_eq!(pinned.iter().collect::<BTreeMap<_, _>>(), expected);
}

#[test]
fn threads_extending_one_map_leave_every_key_once() {
    const KEYS: u64 = 20_000;
    let map: AtomicMap<u64, u64> = AtomicMap::new();
    thread::scope(|s| {
        for thread in 0..THREADS {
            let map = &map;
            // Every thread inserts every key, each with its own value.
            s.spawn(move || {
                let mut map = map;
                map.extend((0..KEYS).map(|key| (key, key * THREADS + thread)));
            });
        }
    });
    assert_eq!(map.len(), KEYS as usize);
    for (key, value) in map.iter() {
        assert_eq!(value / THREADS, key, "a value some thread gave key {key}");
    }
}
