//! ReadMostlyMap: one test per rule of Go's `sync.Map` (src/sync/map.go, Go 1.9 to 1.23),
//! deleted keys that stay in the read map until promotion, drop counting, capacities, panic
//! injection and a short concurrent stress.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use atomicmap::{CapacityError, ReadMostlyMap, ReadMostlyStats};

/// Stores `keys` into a fresh map: they all sit in the dirty map, the read map is amended.
fn map_with_dirty_keys(keys: std::ops::Range<u32>) -> ReadMostlyMap<u32, u32> {
    let map = ReadMostlyMap::new();
    for key in keys {
        map.store(key, key * 10);
    }
    map
}

/// Promotes everything (Go's `Range` does) so the map is in its steady state.
fn promoted(map: ReadMostlyMap<u32, u32>) -> ReadMostlyMap<u32, u32> {
    map.range(|_, _| true);
    map
}

#[test]
fn a_fresh_store_goes_to_the_dirty_map_and_amends_the_read_map() {
    let map = map_with_dirty_keys(0..3);
    let stats = map.stats();
    assert_eq!(stats.read_len, 0);
    assert_eq!(stats.dirty_len, 3);
    assert!(stats.has_dirty);
    assert!(stats.amended);
    assert_eq!(stats.misses, 0, "Store never counts a miss");
}

#[test]
fn no_miss_is_counted_while_the_read_map_is_not_amended() {
    let map = promoted(map_with_dirty_keys(0..3));
    for _ in 0..10 {
        assert_eq!(map.load(&99), None);
        assert!(!map.delete(&99));
        assert!(!map.compare_and_swap(&99, &1, 2));
        assert!(!map.compare_and_delete(&99, &1));
    }
    let stats = map.stats();
    assert_eq!(stats.misses, 0);
    assert_eq!(stats.promotions, 1);
    assert!(!stats.has_dirty);
}

#[test]
fn load_of_a_key_in_the_read_map_counts_no_miss() {
    let map = promoted(map_with_dirty_keys(0..3));
    map.store(100, 0);
    for _ in 0..10 {
        assert_eq!(map.load(&1), Some(10));
    }
    assert_eq!(map.stats().misses, 0);
}

#[test]
fn load_on_an_amended_map_counts_a_miss_whether_or_not_the_key_exists() {
    let map = map_with_dirty_keys(0..4);
    assert_eq!(map.load(&0), Some(0));
    assert_eq!(map.load(&99), None);
    let stats = map.stats();
    assert_eq!(stats.misses, 2);
    assert_eq!(stats.promotions, 0);
}

#[test]
fn promotion_happens_exactly_when_misses_reach_the_dirty_len_and_resets_misses() {
    let map = map_with_dirty_keys(0..4);
    for expected_misses in 1..4 {
        map.load(&99);
        let stats = map.stats();
        assert_eq!(stats.misses, expected_misses);
        assert_eq!(stats.promotions, 0);
    }
    map.load(&99);
    assert_eq!(
        map.stats(),
        ReadMostlyStats {
            misses: 0,
            promotions: 1,
            dirty_len: 0,
            has_dirty: false,
            read_len: 4,
            amended: false,
        }
    );
    assert_eq!(map.load(&3), Some(30));
    assert_eq!(map.stats().misses, 0);
}

#[test]
fn remove_and_delete_reaching_the_dirty_map_count_a_miss() {
    let map = map_with_dirty_keys(0..10);
    assert_eq!(map.load_and_delete(&1), Some(10));
    assert!(map.delete(&2));
    assert!(!map.delete(&99));
    let stats = map.stats();
    assert_eq!(stats.misses, 3);
    assert_eq!(
        stats.dirty_len, 8,
        "remove (Go's LoadAndDelete) takes dirty-only keys out"
    );
}

#[test]
fn load_or_store_counts_a_miss_only_when_it_finds_the_key_in_the_dirty_map() {
    let map = map_with_dirty_keys(0..10);
    assert_eq!(map.load_or_store(50, 5), (5, false));
    assert_eq!(map.stats().misses, 0, "a new key is a store, not a miss");
    assert_eq!(map.load_or_store(3, 7), (30, true));
    assert_eq!(map.stats().misses, 1);
}

#[test]
fn compare_and_swap_and_compare_and_delete_reaching_the_dirty_map_count_a_miss() {
    let map = map_with_dirty_keys(0..10);
    assert!(map.compare_and_swap(&1, &10, 11));
    assert!(!map.compare_and_swap(&2, &0, 11));
    assert!(!map.compare_and_swap(&99, &0, 11), "absent: no miss");
    assert_eq!(map.stats().misses, 2);
    assert!(map.compare_and_delete(&3, &30));
    assert!(!map.compare_and_delete(&99, &30));
    let stats = map.stats();
    assert_eq!(stats.misses, 4);
    assert_eq!(
        stats.dirty_len, 10,
        "CompareAndDelete leaves the key in the dirty map"
    );
    assert_eq!(map.load(&1), Some(11));
    assert_eq!(map.load(&3), None);
}

#[test]
fn store_to_a_key_in_the_dirty_map_counts_no_miss() {
    let map = map_with_dirty_keys(0..3);
    for round in 0..10 {
        map.store(1, round);
        assert_eq!(
            map.swap(2, round),
            Some(if round == 0 { 20 } else { round - 1 })
        );
    }
    assert_eq!(map.stats().misses, 0);
}

#[test]
fn range_on_an_amended_map_promotes_at_once() {
    let map = map_with_dirty_keys(0..5);
    let mut seen = Vec::new();
    map.range(|key, value| {
        seen.push((*key, *value));
        true
    });
    seen.sort_unstable();
    assert_eq!(seen, (0..5).map(|key| (key, key * 10)).collect::<Vec<_>>());
    let stats = map.stats();
    assert_eq!(stats.promotions, 1);
    assert!(!stats.amended);
    assert!(!stats.has_dirty);
    assert_eq!(stats.read_len, 5);
}

#[test]
fn range_stops_when_the_visitor_returns_false() {
    let map = map_with_dirty_keys(0..5);
    let mut visits = 0;
    map.range(|_, _| {
        visits += 1;
        visits < 2
    });
    assert_eq!(visits, 2);
}

#[test]
fn rebuilding_the_dirty_map_expunges_deleted_entries() {
    let map = promoted(map_with_dirty_keys(0..3));
    assert!(map.delete(&0));
    assert_eq!(
        map.stats().read_len,
        3,
        "a deleted key stays in the read map"
    );
    map.store(7, 70);
    let stats = map.stats();
    assert!(stats.amended);
    assert_eq!(stats.dirty_len, 3, "keys 1, 2 and 7; key 0 was expunged");
    assert_eq!(stats.read_len, 3);
    assert_eq!(map.load(&0), None);
}

#[test]
fn storing_to_an_expunged_entry_puts_it_back_into_the_dirty_map() {
    let map = promoted(map_with_dirty_keys(0..3));
    assert!(map.delete(&0));
    map.store(7, 70);
    assert_eq!(map.stats().dirty_len, 3);
    map.store(0, 1);
    assert_eq!(
        map.stats().dirty_len,
        4,
        "the revived key joined the dirty map"
    );
    assert_eq!(map.load(&0), Some(1), "found in the read map: no miss");
    assert_eq!(map.stats().misses, 0);
    map.range(|_, _| true);
    assert_eq!(
        map.load(&0),
        Some(1),
        "the revived value survived promotion"
    );
    assert_eq!(map.stats().read_len, 4);
}

#[test]
fn load_or_store_to_an_expunged_entry_puts_it_back_into_the_dirty_map() {
    let map = promoted(map_with_dirty_keys(0..3));
    assert!(map.delete(&0));
    map.store(7, 70);
    assert_eq!(map.load_or_store(0, 5), (5, false));
    assert_eq!(map.stats().dirty_len, 4);
    map.range(|_, _| true);
    assert_eq!(map.load(&0), Some(5));
}

#[test]
fn len_counts_keys_with_a_value_without_promoting_or_counting_misses() {
    let map = promoted(map_with_dirty_keys(0..4));
    assert!(
        map.delete(&0),
        "a deleted key stays in the read map, without a value"
    );
    map.store(10, 100);
    map.store(11, 110);
    let before = map.stats();
    assert!(before.amended);
    assert_eq!(
        map.len(),
        5,
        "keys 1, 2, 3 of the read map and 10, 11 of the dirty map"
    );
    assert_eq!(
        map.stats(),
        before,
        "len neither promotes nor counts a miss"
    );
    map.range(|_, _| true);
    assert_eq!(map.len(), 5, "the same keys once promoted");
    map.clear();
    assert_eq!(map.len(), 0);
    assert!(map.is_empty());
    map.store(1, 1);
    assert!(!map.is_empty());
}

#[test]
fn an_impossible_capacity_is_refused_at_construction() {
    assert_eq!(
        ReadMostlyMap::<u64, u64>::try_with_capacity(usize::MAX).err(),
        Some(CapacityError::Overflow)
    );
    let map = ReadMostlyMap::<u64, u64>::try_with_capacity(1_000).expect("a modest capacity");
    for key in 0..10 {
        map.store(key, key);
    }
    assert_eq!(map.len(), 10);
}

#[test]
#[should_panic(expected = "ReadMostlyMap::with_capacity(18446744073709551615)")]
fn with_capacity_panics_at_construction_when_the_capacity_overflows() {
    let _ = ReadMostlyMap::<u64, u64>::with_capacity(usize::MAX);
}

/// A key that counts its live copies (the read and dirty maps clone keys).
#[derive(Debug)]
struct CountedKey {
    id: u32,
    live: Arc<AtomicUsize>,
}

impl CountedKey {
    fn new(id: u32, live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        CountedKey {
            id,
            live: Arc::clone(live),
        }
    }
}

impl Clone for CountedKey {
    fn clone(&self) -> Self {
        CountedKey::new(self.id, &self.live)
    }
}

impl Drop for CountedKey {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PartialEq for CountedKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for CountedKey {}

impl std::hash::Hash for CountedKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

#[test]
fn deleted_keys_stay_in_the_read_map_until_promotion_and_are_freed_after_it() {
    const KEYS: u32 = 100;
    let live = Arc::new(AtomicUsize::new(0));
    let map: ReadMostlyMap<CountedKey, u32> = ReadMostlyMap::new();
    for id in 0..KEYS {
        map.store(CountedKey::new(id, &live), id);
    }
    map.range(|_, _| true);
    for id in 0..KEYS {
        assert!(map.delete(&CountedKey::new(id, &live)));
    }
    let stats = map.stats();
    assert_eq!(
        stats.read_len, KEYS as usize,
        "deleted entries are stale, not gone"
    );
    assert_eq!(live.load(Ordering::Relaxed), KEYS as usize);

    // A new key rebuilds the dirty map; every stale entry is expunged, none is copied.
    map.store(CountedKey::new(KEYS, &live), 0);
    assert_eq!(map.stats().dirty_len, 1);
    assert_eq!(map.stats().read_len, KEYS as usize);
    assert_eq!(live.load(Ordering::Relaxed), KEYS as usize + 1);

    // One miss reaches len(dirty) = 1: the dirty map becomes the read map.
    assert_eq!(map.load(&CountedKey::new(KEYS, &live)), Some(0));
    assert_eq!(map.stats().read_len, 1);

    // The old read map is retired; churn drives the collector's passes until it is freed.
    let churn = CountedKey::new(KEYS, &live);
    for round in 0..2_000 {
        map.store(churn.clone(), round);
    }
    drop(churn);
    assert_eq!(
        live.load(Ordering::Relaxed),
        1,
        "only the surviving key is still allocated"
    );
    drop(map);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

#[test]
fn clear_empties_both_maps_and_restarts_misses() {
    let map = promoted(map_with_dirty_keys(0..3));
    map.store(10, 100);
    map.load(&99);
    assert_eq!(map.stats().misses, 1);
    map.clear();
    let stats = map.stats();
    assert_eq!(stats.read_len, 0);
    assert_eq!(stats.dirty_len, 0);
    assert_eq!(stats.misses, 0);
    assert!(!stats.amended);
    assert_eq!(map.load(&1), None);
    assert_eq!(map.load(&10), None);
    map.store(1, 1);
    assert_eq!(map.load(&1), Some(1));
}

#[test]
fn swap_and_compare_and_swap_follow_go_semantics() {
    let map: ReadMostlyMap<&str, i32> = ReadMostlyMap::new();
    assert_eq!(map.swap("a", 1), None);
    assert_eq!(map.swap("a", 2), Some(1));
    assert!(!map.compare_and_swap("a", &1, 3));
    assert!(map.compare_and_swap("a", &2, 3));
    assert!(!map.compare_and_delete("a", &2));
    assert!(map.compare_and_delete("a", &3));
    assert_eq!(map.load("a"), None);
    assert!(
        !map.compare_and_swap("a", &3, 4),
        "a deleted key has no value to compare"
    );
    assert_eq!(map.swap("b", 1), None);
    assert!(map.contains_key("b"));
    assert_eq!(map.load_and_delete("b"), Some(1));
    assert!(!map.contains_key("b"));
}

#[test]
fn borrowed_lookups_get_with_and_get_or_insert_with() {
    let map: ReadMostlyMap<String, Vec<u8>> = ReadMostlyMap::new();
    map.store("alpha".to_owned(), vec![1, 2, 3]);
    assert_eq!(map.get_with("alpha", Vec::len), Some(3));
    assert_eq!(
        map.get_or_insert_with("alpha".to_owned(), || unreachable!()),
        vec![1, 2, 3]
    );
    assert_eq!(
        map.get_or_insert_with("beta".to_owned(), || vec![9]),
        vec![9]
    );
    assert_eq!(map.load("beta"), Some(vec![9]));
}

#[test]
fn retain_from_iter_extend_and_debug() {
    let mut map: ReadMostlyMap<u32, u32> = (0..10).map(|key| (key, key)).collect();
    map.extend([(10, 10), (11, 11)]);
    map.retain(|key, _| key % 2 == 0);
    let mut kept = Vec::new();
    map.range(|key, _| {
        kept.push(*key);
        true
    });
    kept.sort_unstable();
    assert_eq!(kept, vec![0, 2, 4, 6, 8, 10]);
    assert!(format!("{map:?}").starts_with("ReadMostlyMap"));
}

/// A value that counts how many times values were created and dropped.
struct CountedValue {
    drops: Arc<AtomicUsize>,
}

impl Drop for CountedValue {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn every_value_is_dropped_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let created = AtomicUsize::new(0);
    let make = || {
        created.fetch_add(1, Ordering::Relaxed);
        CountedValue {
            drops: Arc::clone(&drops),
        }
    };
    let map: ReadMostlyMap<u32, CountedValue> = ReadMostlyMap::new();
    thread::scope(|scope| {
        for thread_id in 0..3u32 {
            let map = &map;
            let make = &make;
            scope.spawn(move || {
                for round in 0..300u32 {
                    let key = (round + thread_id) % 17;
                    match round % 5 {
                        0 => map.store(key, make()),
                        1 => {
                            map.delete(&key);
                        }
                        2 => map.range(|_, _| true),
                        3 => {
                            map.contains_key(&key);
                        }
                        _ => map.store(key + 100, make()),
                    }
                }
            });
        }
    });
    let stats = map.stats();
    assert!(stats.misses <= stats.dirty_len);
    drop(map);
    assert_eq!(
        drops.load(Ordering::Relaxed),
        created.load(Ordering::Relaxed)
    );
}

#[test]
fn concurrent_compare_and_swap_increments_are_never_lost() {
    const THREADS: u32 = 4;
    const INCREMENTS: u32 = 300;
    const KEYS: u32 = 8;
    let map: ReadMostlyMap<u32, u32> = ReadMostlyMap::new();
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for round in 0..INCREMENTS {
                    let key = round % KEYS;
                    loop {
                        let (current, _) = map.load_or_store(key, 0);
                        if map.compare_and_swap(&key, &current, current + 1) {
                            break;
                        }
                    }
                }
            });
        }
    });
    let total: u32 = (0..KEYS).map(|key| map.load(&key).unwrap_or(0)).sum();
    assert_eq!(total, THREADS * INCREMENTS);
}

#[test]
fn read_mostly_map_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ReadMostlyMap<String, Vec<u8>>>();
}

/// Panic injection: a key whose `Hash`, `Eq` or `Clone`, or a value whose `Clone` or
/// `PartialEq`, panics on the N-th call, swept over every N that a fixed script of operations
/// reaches. After each caught panic the map must hold, for every key, either the state before
/// the operation that panicked or the state after it, stay usable, and in the end have dropped
/// every value exactly once.
mod panic_injection {
    use std::cell::Cell;
    use std::collections::hash_map::DefaultHasher;
    use std::collections::{BTreeMap, HashSet};
    use std::hash::{BuildHasherDefault, Hash, Hasher};
    use std::ops::Range;
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread;

    use atomicmap::ReadMostlyMap;

    /// The user code that panics.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Fault {
        Hash,
        Eq,
        Clone,
    }

    /// The payload of an injected panic.
    struct InjectedPanic;

    thread_local! {
        /// The armed fault and how many more calls of it run before one panics.
        static ARMED: Cell<Option<(Fault, usize)>> = const { Cell::new(None) };
        /// Calls of the armed fault's user code so far (a run that never panics counts the
        /// calls that a sweep has to cover).
        static ARMED_CALLS: Cell<usize> = const { Cell::new(0) };
    }

    /// Called by every piece of injectable user code.
    fn user_code(fault: Fault) {
        let Some((armed, remaining)) = ARMED.get() else {
            return;
        };
        if armed != fault {
            return;
        }
        ARMED_CALLS.set(ARMED_CALLS.get() + 1);
        if remaining <= 1 {
            ARMED.set(None);
            // Unwinds without running the panic hook: no message per injected panic.
            panic::resume_unwind(Box::new(InjectedPanic));
        }
        ARMED.set(Some((armed, remaining - 1)));
    }

    #[derive(Debug)]
    struct Key(u64);

    impl Hash for Key {
        fn hash<H: Hasher>(&self, state: &mut H) {
            user_code(Fault::Hash);
            self.0.hash(state);
        }
    }

    impl PartialEq for Key {
        fn eq(&self, other: &Self) -> bool {
            user_code(Fault::Eq);
            self.0 == other.0
        }
    }

    impl Eq for Key {}

    impl Clone for Key {
        fn clone(&self) -> Self {
            user_code(Fault::Clone);
            Key(self.0)
        }
    }

    /// Every value alive, by id, and the drops of values that were not alive.
    #[derive(Default)]
    struct Ledger {
        live: Mutex<HashSet<u64>>,
        next_id: AtomicU64,
        double_drops: AtomicUsize,
    }

    /// A value: `payload` is what the model tracks, `id` tells copies apart in the ledger.
    struct Value {
        payload: u64,
        id: u64,
        ledger: Arc<Ledger>,
    }

    impl Value {
        fn new(payload: u64, ledger: &Arc<Ledger>) -> Self {
            let id = ledger.next_id.fetch_add(1, Ordering::Relaxed);
            ledger.live.lock().unwrap().insert(id);
            Value {
                payload,
                id,
                ledger: Arc::clone(ledger),
            }
        }
    }

    impl Clone for Value {
        fn clone(&self) -> Self {
            user_code(Fault::Clone);
            Value::new(self.payload, &self.ledger)
        }
    }

    impl PartialEq for Value {
        fn eq(&self, other: &Self) -> bool {
            user_code(Fault::Eq);
            self.payload == other.payload
        }
    }

    impl Drop for Value {
        fn drop(&mut self) {
            if !self.ledger.live.lock().unwrap().remove(&self.id) {
                self.ledger.double_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One step of the script; keys and payloads are small integers.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Store(u64, u64),
        Insert(u64, u64),
        LoadOrStore(u64, u64),
        GetOrInsertWith(u64, u64),
        Get(u64),
        Remove(u64),
        Delete(u64),
        CompareAndSwap(u64, u64, u64),
        CompareAndDelete(u64, u64),
        Range,
        Snapshot,
        RetainEven,
        Clear,
    }

    const KEYS: u64 = 12;

    /// Visits every state the protocol distinguishes: dirty-only keys, promotion by misses
    /// and by `range`, deleted (nil) read-map keys that a dirty rebuild expunges, stores and
    /// `load_or_store` to expunged keys (and later stores to them, which a promotion must
    /// keep), dirty-only `load_or_store` hits, and growth of the dirty map.
    fn script() -> Vec<Op> {
        use Op::*;
        let mut ops: Vec<Op> = (0..6).map(|key| Store(key, key)).collect();
        ops.extend([
            Get(0),
            Get(9),
            LoadOrStore(2, 50),
            Range,
            Delete(1),
            Remove(3),
            Store(6, 6),
            Store(1, 11),
            LoadOrStore(3, 13),
            LoadOrStore(6, 60),
            LoadOrStore(7, 7),
            Insert(0, 10),
            Insert(8, 8),
            CompareAndSwap(2, 2, 12),
            CompareAndSwap(6, 6, 16),
            CompareAndSwap(4, 99, 14),
            CompareAndDelete(5, 5),
            CompareAndDelete(7, 7),
            GetOrInsertWith(9, 9),
            GetOrInsertWith(2, 99),
            Insert(3, 33),
            Store(1, 31),
            Remove(8),
            Snapshot,
            Get(6),
            Get(10),
            Get(11),
            Range,
            RetainEven,
            Delete(0),
            Store(10, 10),
            Store(0, 20),
            Snapshot,
            Clear,
            Store(11, 11),
            LoadOrStore(11, 21),
            Get(11),
        ]);
        ops
    }

    type Model = BTreeMap<u64, u64>;

    /// A fixed hasher, so that every run of the script makes the same calls of `Eq`.
    type Map = ReadMostlyMap<Key, Value, BuildHasherDefault<DefaultHasher>>;

    /// What `op` leaves in `model`, and the keys it may change (`None`: every key).
    fn apply(op: Op, model: &mut Model) -> Option<Vec<u64>> {
        let compare = |model: &Model, key, expected| model.get(&key) == Some(&expected);
        match op {
            Op::Store(key, payload) | Op::Insert(key, payload) => {
                model.insert(key, payload);
            }
            Op::LoadOrStore(key, payload) | Op::GetOrInsertWith(key, payload) => {
                model.entry(key).or_insert(payload);
            }
            Op::Remove(key) | Op::Delete(key) => {
                model.remove(&key);
            }
            Op::CompareAndSwap(key, expected, payload) => {
                if compare(model, key, expected) {
                    model.insert(key, payload);
                }
            }
            Op::CompareAndDelete(key, expected) => {
                if compare(model, key, expected) {
                    model.remove(&key);
                }
            }
            Op::Get(_) | Op::Range | Op::Snapshot => return Some(Vec::new()),
            Op::RetainEven => {
                model.retain(|_, payload| *payload % 2 == 0);
                return None;
            }
            Op::Clear => {
                model.clear();
                return None;
            }
        }
        Some(vec![op_key(op)])
    }

    fn op_key(op: Op) -> u64 {
        match op {
            Op::Store(key, _)
            | Op::Insert(key, _)
            | Op::LoadOrStore(key, _)
            | Op::GetOrInsertWith(key, _)
            | Op::Get(key)
            | Op::Remove(key)
            | Op::Delete(key)
            | Op::CompareAndSwap(key, _, _)
            | Op::CompareAndDelete(key, _) => key,
            Op::Range | Op::Snapshot | Op::RetainEven | Op::Clear => u64::MAX,
        }
    }

    /// Runs `op` and checks what it returned against the model it started from.
    fn run(map: &Map, op: Op, before: &Model, ledger: &Arc<Ledger>) {
        let value = |payload| Value::new(payload, ledger);
        let payload_of = |value: Option<Value>| value.map(|value| value.payload);
        match op {
            Op::Store(key, payload) => map.store(Key(key), value(payload)),
            Op::Insert(key, payload) => assert_eq!(
                payload_of(map.swap(Key(key), value(payload))),
                before.get(&key).copied()
            ),
            Op::LoadOrStore(key, payload) => {
                let (found, loaded) = map.load_or_store(Key(key), value(payload));
                assert_eq!(loaded, before.contains_key(&key));
                assert_eq!(found.payload, *before.get(&key).unwrap_or(&payload));
            }
            Op::GetOrInsertWith(key, payload) => {
                let found = map.get_or_insert_with(Key(key), || value(payload));
                assert_eq!(found.payload, *before.get(&key).unwrap_or(&payload));
            }
            Op::Get(key) => assert_eq!(payload_of(map.load(&Key(key))), before.get(&key).copied()),
            Op::Remove(key) => {
                assert_eq!(
                    payload_of(map.load_and_delete(&Key(key))),
                    before.get(&key).copied()
                );
            }
            Op::Delete(key) => assert_eq!(map.delete(&Key(key)), before.contains_key(&key)),
            Op::CompareAndSwap(key, expected, payload) => assert_eq!(
                map.compare_and_swap(&Key(key), &value(expected), value(payload)),
                before.get(&key) == Some(&expected)
            ),
            Op::CompareAndDelete(key, expected) => assert_eq!(
                map.compare_and_delete(&Key(key), &value(expected)),
                before.get(&key) == Some(&expected)
            ),
            Op::Range => {
                let mut seen = Model::new();
                map.range(|key, value| {
                    seen.insert(key.0, value.payload);
                    true
                });
                assert_eq!(&seen, before);
            }
            Op::Snapshot => {
                let snapshot = map.snapshot();
                let seen: Model = snapshot
                    .iter()
                    .map(|(key, value)| (key.0, value.payload))
                    .collect();
                assert_eq!(&seen, before);
            }
            Op::RetainEven => map.retain(|_, value| value.payload % 2 == 0),
            Op::Clear => map.clear(),
        }
    }

    /// What the map holds for `keys`; no user code is armed meanwhile.
    fn contents(map: &Map, keys: Range<u64>) -> Model {
        let armed = ARMED.take();
        let contents = keys
            .filter_map(|key| map.get_with(&Key(key), |value| (key, value.payload)))
            .collect();
        ARMED.set(armed);
        contents
    }

    /// Runs `ops`, which touch only `keys`, starting from `model` (what the map holds for
    /// them), with `fault` armed to panic on its `nth` call. Checks every step against the
    /// model; returns the step that panicked, if one did.
    fn check_ops(
        map: &Map,
        ops: &[Op],
        keys: Range<u64>,
        (fault, nth): (Fault, usize),
        ledger: &Arc<Ledger>,
    ) -> Option<usize> {
        let mut model = contents(map, keys.clone());
        ARMED.set(Some((fault, nth)));
        let mut panicked_at = None;
        for (step, &op) in ops.iter().enumerate() {
            let before = model.clone();
            let changed = apply(op, &mut model);
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| run(map, op, &before, ledger)));
            let actual = contents(map, keys.clone());
            match outcome {
                Ok(()) => assert_eq!(actual, model, "{fault:?} #{nth}: after step {step} {op:?}"),
                Err(payload) => {
                    if !payload.is::<InjectedPanic>() {
                        panic::resume_unwind(payload);
                    }
                    panicked_at = Some(step);
                    // Every key holds its state from before or after the operation; with
                    // several keys changed (retain, clear), each key independently.
                    for key in keys.clone() {
                        let may_change = changed.as_ref().is_none_or(|keys| keys.contains(&key));
                        let now = actual.get(&key);
                        let allowed = if may_change {
                            now == before.get(&key) || now == model.get(&key)
                        } else {
                            now == before.get(&key)
                        };
                        assert!(
                            allowed,
                            "{fault:?} #{nth}: step {step} {op:?} panicked and left key {key} = \
                             {now:?} (before {:?}, after {:?})",
                            before.get(&key),
                            model.get(&key)
                        );
                    }
                    model = actual;
                }
            }
        }
        ARMED.set(None);
        panicked_at
    }

    /// Checks that dropping `map` drops every value exactly once.
    fn check_drops(map: Map, ledger: &Ledger, context: &str) {
        drop(map);
        let leaked = ledger.live.lock().unwrap().len();
        let double_drops = ledger.double_drops.load(Ordering::Relaxed);
        assert_eq!(
            (leaked, double_drops),
            (0, 0),
            "{context}: values leaked and dropped twice"
        );
    }

    /// Runs the script on a new map with `fault` armed to panic on its `nth` call; returns
    /// whether it did.
    fn run_script(fault: Fault, nth: usize) -> bool {
        let ledger = Arc::new(Ledger::default());
        let map = Map::default();
        let panicked_at = check_ops(&map, &script(), 0..KEYS, (fault, nth), &ledger);
        // Still usable: a new key can be stored and read back.
        map.store(Key(KEYS), Value::new(1, &ledger));
        assert_eq!(map.get_with(&Key(KEYS), |value| value.payload), Some(1));
        check_drops(
            map,
            &ledger,
            &format!("{fault:?} #{nth}, panic at step {panicked_at:?}"),
        );
        panicked_at.is_some()
    }

    /// The number of calls of `fault`'s user code in a run that injects nothing.
    fn calls_in_a_clean_run(fault: Fault) -> usize {
        ARMED_CALLS.set(0);
        assert!(!run_script(fault, usize::MAX));
        ARMED_CALLS.get()
    }

    fn sweep(fault: Fault) {
        let calls = calls_in_a_clean_run(fault);
        assert!(calls > 0, "the script never calls {fault:?}");
        for nth in 1..=calls {
            assert!(run_script(fault, nth), "{fault:?} #{nth} never panicked");
        }
    }

    #[test]
    fn a_panicking_hash_loses_and_leaks_nothing() {
        sweep(Fault::Hash);
    }

    #[test]
    fn a_panicking_eq_loses_and_leaks_nothing() {
        sweep(Fault::Eq);
    }

    #[test]
    fn a_panicking_clone_loses_and_leaks_nothing() {
        sweep(Fault::Clone);
    }

    /// The script's single-key steps, moved to keys `offset..offset + KEYS`.
    fn keyed_script(offset: u64) -> Vec<Op> {
        script()
            .into_iter()
            .filter_map(|op| {
                Some(match op {
                    Op::Store(key, payload) => Op::Store(key + offset, payload),
                    Op::Insert(key, payload) => Op::Insert(key + offset, payload),
                    Op::LoadOrStore(key, payload) => Op::LoadOrStore(key + offset, payload),
                    Op::GetOrInsertWith(key, payload) => Op::GetOrInsertWith(key + offset, payload),
                    Op::Get(key) => Op::Get(key + offset),
                    Op::Remove(key) => Op::Remove(key + offset),
                    Op::Delete(key) => Op::Delete(key + offset),
                    Op::CompareAndSwap(key, expected, payload) => {
                        Op::CompareAndSwap(key + offset, expected, payload)
                    }
                    Op::CompareAndDelete(key, expected) => {
                        Op::CompareAndDelete(key + offset, expected)
                    }
                    Op::Range | Op::Snapshot | Op::RetainEven | Op::Clear => return None,
                })
            })
            .collect()
    }

    /// Threads run the single-key steps on disjoint keys of one map, each with its own fault
    /// armed, so that one thread's panic strikes while others promote, rebuild and grow the
    /// maps (a rebuild clones every thread's keys). Each thread checks its own keys after
    /// every step; in the end every value is dropped exactly once.
    fn concurrent_sweep(fault: Fault) {
        const THREADS: u64 = 3;
        let ledger = Arc::new(Ledger::default());
        let map = Map::default();
        let calls = calls_in_a_clean_run(fault);
        let panics: usize = thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let (map, ledger) = (&map, &ledger);
                    scope.spawn(move || {
                        let keys = thread * KEYS..(thread + 1) * KEYS;
                        let ops = keyed_script(keys.start);
                        let mut panics = 0;
                        for nth in (1..=calls).skip(thread as usize).step_by(THREADS as usize) {
                            let fault = (fault, nth);
                            panics += usize::from(
                                check_ops(map, &ops, keys.clone(), fault, ledger).is_some(),
                            );
                            for key in keys.clone() {
                                map.delete(&Key(key));
                            }
                        }
                        panics
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().unwrap())
                .sum()
        });
        assert!(panics > 0, "no {fault:?} panicked");
        check_drops(map, &ledger, &format!("{fault:?}, {THREADS} threads"));
    }

    #[test]
    fn concurrent_panicking_hash_eq_and_clone_lose_and_leak_nothing() {
        for fault in [Fault::Hash, Fault::Eq, Fault::Clone] {
            concurrent_sweep(fault);
        }
    }
}
