//! The `rayon` feature: parallel iteration over snapshots, and parallel collection into every
//! map that offers it.
#![cfg(feature = "rayon")]

use std::collections::HashMap;

use atomicmap::{AtomicMap, AtomicSet, MapSnapshot, RcuMap, ReadMostlyMap, ShardedMap};
use rayon::prelude::*;

const ENTRIES: u64 = 20_000;

fn squares() -> impl ParallelIterator<Item = (u64, u64)> {
    (0..ENTRIES).into_par_iter().map(|n| (n, n * n))
}

fn assert_squares<S>(snapshot: &MapSnapshot<u64, u64, S>)
where
    S: std::hash::BuildHasher + Clone,
{
    assert_eq!(snapshot.len(), ENTRIES as usize);
    for n in 0..ENTRIES {
        assert_eq!(snapshot.get(&n), Some(&(n * n)), "key {n}");
    }
}

fn expected_sum() -> u64 {
    (0..ENTRIES).map(|n| n * n).sum()
}

#[test]
fn a_snapshot_is_iterated_in_parallel_once_per_entry_whatever_its_storage() {
    let atomic: AtomicMap<u64, u64> = squares().collect();
    let sharded: ShardedMap<u64, u64> = squares().collect();
    let rcu: RcuMap<u64, u64> = RcuMap::new();
    rcu.update_map(|map| {
        for n in 0..ENTRIES {
            map.insert(n, n * n);
        }
    });
    for snapshot in [atomic.snapshot(), sharded.snapshot(), rcu.snapshot()] {
        let visited: Vec<u64> = snapshot.par_iter().map(|(key, _)| *key).collect();
        assert_eq!(visited.len(), ENTRIES as usize);
        let sum: u64 = snapshot.par_iter().map(|(_, square)| *square).sum();
        assert_eq!(sum, expected_sum());
        let distinct: HashMap<u64, u64> = (&snapshot)
            .into_par_iter()
            .map(|(key, value)| (*key, *value))
            .collect();
        assert_eq!(distinct.len(), ENTRIES as usize);
    }
}

#[test]
fn a_parallel_iterator_collects_into_each_map() {
    let atomic: AtomicMap<u64, u64> = squares().collect();
    assert_squares(&atomic.snapshot());
    let sharded: ShardedMap<u64, u64> = squares().collect();
    assert_squares(&sharded.snapshot());
    let read_mostly: ReadMostlyMap<u64, u64> = squares().collect();
    assert_squares(&read_mostly.snapshot());
}

#[test]
fn par_extend_adds_to_what_is_there_through_a_shared_reference_too() {
    let low = (0..ENTRIES / 2).into_par_iter().map(|n| (n, n * n));
    let high = || (ENTRIES / 2..ENTRIES).into_par_iter().map(|n| (n, n * n));

    let mut atomic: AtomicMap<u64, u64> = low.clone().collect();
    atomic.par_extend(high());
    assert_squares(&atomic.snapshot());
    let atomic_shared: AtomicMap<u64, u64> = low.clone().collect();
    (&atomic_shared).par_extend(high());
    assert_squares(&atomic_shared.snapshot());

    let mut sharded: ShardedMap<u64, u64> = low.clone().collect();
    sharded.par_extend(high());
    assert_squares(&sharded.snapshot());
    let sharded_shared: ShardedMap<u64, u64> = low.clone().collect();
    (&sharded_shared).par_extend(high());
    assert_squares(&sharded_shared.snapshot());

    let mut read_mostly: ReadMostlyMap<u64, u64> = low.clone().collect();
    read_mostly.par_extend(high());
    assert_squares(&read_mostly.snapshot());
    let read_mostly_shared: ReadMostlyMap<u64, u64> = low.collect();
    (&read_mostly_shared).par_extend(high());
    assert_squares(&read_mostly_shared.snapshot());
}

#[test]
fn par_extend_runs_while_other_threads_read_and_write_the_map() {
    let map: AtomicMap<u64, u64> = AtomicMap::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for round in 0..200 {
                map.insert(ENTRIES + round % 10, round);
                if let Some(square) = map.get(&(round * 7 % ENTRIES)) {
                    let key = round * 7 % ENTRIES;
                    assert_eq!(square, key * key);
                }
            }
        });
        (&map).par_extend(squares());
    });
    for n in 0..ENTRIES {
        assert_eq!(map.get(&n), Some(n * n));
    }
    assert_eq!(map.len(), ENTRIES as usize + 10);
}

#[test]
fn values_that_are_not_clone_are_collected_into_an_atomic_map() {
    use std::sync::atomic::{AtomicU64, Ordering};

    let counters: AtomicMap<u64, AtomicU64> = (0..1_000u64)
        .into_par_iter()
        .map(|n| (n, AtomicU64::new(n)))
        .collect();
    let pinned = counters.pin();
    for n in 0..1_000u64 {
        let counter = pinned.get(&n).expect("every key was collected");
        assert_eq!(counter.load(Ordering::Relaxed), n);
    }
}

#[test]
fn a_parallel_iterator_collects_into_an_atomic_set_once_per_element() {
    let evens: AtomicSet<u64> = (0..ENTRIES).into_par_iter().map(|n| n / 2 * 2).collect();
    assert_eq!(evens.len(), (ENTRIES / 2) as usize);
    let mut more = AtomicSet::new();
    more.par_extend((0..ENTRIES).into_par_iter());
    (&evens).par_extend((0..ENTRIES).into_par_iter());
    for n in 0..ENTRIES {
        assert!(evens.contains(&n) && more.contains(&n), "element {n}");
    }
    let sum: u64 = evens
        .snapshot()
        .par_iter()
        .map(|(element, ())| *element)
        .sum();
    assert_eq!(sum, (0..ENTRIES).sum());
}
