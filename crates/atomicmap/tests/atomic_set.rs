//! `AtomicSet`: a set over `AtomicMap<T, ()>` with the map's guarantees.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::thread;

use atomicmap::AtomicSet;

#[test]
fn insert_reports_novelty_and_contains_and_remove_agree() {
    let set: AtomicSet<String> = AtomicSet::new();
    assert!(set.is_empty());
    assert!(set.insert("a".into()));
    assert!(!set.insert("a".into()));
    assert!(set.contains("a"));
    assert!(!set.contains("b"));
    assert_eq!(set.len(), 1);
    assert!(set.remove("a"));
    assert!(!set.remove("a"));
    assert!(set.is_empty());
}

#[test]
fn concurrent_inserts_of_one_element_have_one_winner() {
    let set: AtomicSet<u64> = AtomicSet::new();
    let winners: usize = thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..1_000).filter(|&n| set.insert(n)).count()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1_000);
    assert_eq!(set.len(), 1_000);
}

#[test]
fn iteration_snapshot_and_traits() {
    let mut set: AtomicSet<u32> = (0..100).collect();
    set.extend(100..110);
    let walked: BTreeSet<u32> = set.iter().collect();
    assert_eq!(walked, (0..110).collect());
    let looped: BTreeSet<u32> = (&set).into_iter().collect();
    assert_eq!(looped, walked);

    let snapshot = set.snapshot();
    set.remove(&0);
    assert!(snapshot.contains_key(&0));
    assert_eq!(snapshot.len(), 110);

    let copy = set.clone();
    assert_eq!(copy, set);
    copy.insert(0);
    assert_ne!(copy, set);

    let small: AtomicSet<u8> = [1].into_iter().collect();
    assert_eq!(format!("{small:?}"), "{1}");
    assert!(format!("{:?}", small.iter()).starts_with("SetIter"));
    assert!(set.capacity() >= set.len());
    set.retain(|n| n % 2 == 0);
    assert_eq!(set.len(), 54);
    set.clear();
    assert!(set.is_empty());
}

/// `()` is stored inside the slot: replacing or removing it leaves no boxed value to reclaim.
#[test]
fn a_set_of_inline_elements_leaves_no_garbage() {
    let set: AtomicSet<u64> = AtomicSet::new();
    for n in 0..100 {
        set.insert(n);
        set.remove(&n);
    }
    assert_eq!(set.stats().garbage_bytes, 0);
}

/// The set sizes its table as the map does: reserved room survives removes, `shrink_to`
/// gives it back, and an impossible size is an error, not a panic.
#[test]
fn reserve_and_shrink_to_size_the_table() {
    let set: AtomicSet<u64> = AtomicSet::new();
    set.reserve(50_000);
    let reserved = set.capacity();
    assert!(reserved >= 50_000);
    for n in 0..2_000 {
        set.insert(n);
    }
    for n in 0..2_000 {
        set.remove(&n);
    }
    assert_eq!(set.capacity(), reserved, "removes keep the reserved room");
    set.shrink_to(100);
    assert!(set.capacity() >= 100 && set.capacity() < reserved);
    set.insert(1);
    set.shrink_to_fit();
    assert!(set.contains(&1));
    assert!(set.try_reserve(usize::MAX).is_err());

    let hasher = foldhash::fast::FixedState::with_seed(3);
    let sized = AtomicSet::<u64, _>::with_capacity_and_hasher(1_000, hasher.clone());
    assert!(sized.capacity() >= 1_000);
    assert!(sized.insert(5) && sized.contains(&5));
    assert_eq!(sized.hasher().hash_one(5u64), hasher.hash_one(5u64));
    assert!(AtomicSet::<u64, _>::try_with_capacity_and_hasher(usize::MAX, hasher).is_err());
}
