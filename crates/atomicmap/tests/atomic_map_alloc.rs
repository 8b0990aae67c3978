//! `AtomicMap<u64, u64>` operations on a presized map do not allocate: keys and values below
//! 2^63 live inside the slot words, and a pin is a couple of stores into a per-thread record.
//!
//! A counting global allocator counts only on the thread that is measuring (a thread-local
//! flag), so the test harness and other test threads cannot disturb the counts. Each thread's
//! first operation on a map may allocate its reclamation record and thread index, so every
//! measurement follows a warm-up on the same thread and map.
//!
//! The boxed cases (`String` values, `u64` values at or above 2^63) must be counted, which
//! proves the counter sees the map's own allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use atomicmap::AtomicMap;

/// The system allocator, counting calls made by a thread while its `COUNTING` flag is set.
struct CountingAllocator;

thread_local! {
    /// Whether this thread's allocations are being counted. `const` initialised and without a
    /// destructor, so reading it from inside the allocator never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations (including reallocations) counted on this thread.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    /// Deallocations counted on this thread.
    static DEALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count(counter: &'static std::thread::LocalKey<Cell<usize>>) {
    // `try_with`: the allocator can be called while thread locals are being torn down.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = counter.try_with(|count| count.set(count.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only const thread
// locals, which neither allocate nor re-enter the allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(&ALLOCATIONS);
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(&ALLOCATIONS);
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(&ALLOCATIONS);
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(&DEALLOCATIONS);
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Allocator calls made by this thread while running `work`.
#[derive(Debug, PartialEq, Eq)]
struct Calls {
    allocations: usize,
    deallocations: usize,
}

/// Runs `work` and returns how many times this thread called the allocator meanwhile.
fn allocator_calls(work: impl FnOnce()) -> Calls {
    ALLOCATIONS.with(|count| count.set(0));
    DEALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    work();
    COUNTING.with(|counting| counting.set(false));
    Calls {
        allocations: ALLOCATIONS.with(Cell::get),
        deallocations: DEALLOCATIONS.with(Cell::get),
    }
}

const NO_CALLS: Calls = Calls {
    allocations: 0,
    deallocations: 0,
};

/// Keys the presized map is sized for; the first half is inserted before measuring.
const KEYS: u64 = 4_096;

/// A map presized for `KEYS` keys holding the first half of them, warmed up on this thread.
fn warmed_up_map() -> AtomicMap<u64, u64> {
    let map = AtomicMap::with_capacity(KEYS as usize);
    for key in 0..KEYS / 2 {
        map.insert(key, key);
    }
    // One of every operation, so that any lazily created per-thread state exists.
    map.get(&0);
    map.contains_key(&0);
    map.update(&0, |value| value + 1);
    map.upsert(0, || 0, |value| value + 1);
    map.get_or_insert_with(0, || 0);
    map.remove(&0);
    map.insert(0, 0);
    map.pin().get(&0);
    map
}

/// Every single-key operation on inline keys and values, including inserts of new keys into
/// the presized table and removes, without one call to the allocator.
#[test]
fn inline_operations_on_a_presized_map_do_not_allocate() {
    let map = warmed_up_map();
    let calls = allocator_calls(|| {
        for key in 0..KEYS / 2 {
            black_box(map.get(&key));
            black_box(map.contains_key(&key));
            black_box(map.insert(key, key + 1)); // overwrite
            black_box(map.update(&key, |value| value * 2));
            black_box(map.upsert(key, || 0, |value| value + 1));
            black_box(map.get_or_insert_with(key, || 0));
            black_box(map.remove(&key));
            black_box(map.insert(key, key)); // re-insert into its tombstone
        }
        for key in KEYS / 2..KEYS {
            black_box(map.insert(key, (1 << 63) - 1 - key)); // new key, largest inline values
        }
        let pinned = map.pin();
        for key in 0..KEYS {
            black_box(pinned.get(&key).map(|value| *value));
        }
    });
    assert_eq!(calls, NO_CALLS);
    assert_eq!(map.len(), KEYS as usize);
    assert_eq!(map.get(&(KEYS - 1)), Some((1 << 63) - KEYS));
    assert_eq!(map.get(&1), Some(1));
}

/// Misses do not allocate either: lookups, updates and removes of keys that are not there.
#[test]
fn misses_do_not_allocate() {
    let map = warmed_up_map();
    let calls = allocator_calls(|| {
        for key in KEYS..2 * KEYS {
            black_box(map.get(&key));
            black_box(map.contains_key(&key));
            black_box(map.update(&key, |value| value + 1));
            black_box(map.remove(&key));
        }
    });
    assert_eq!(calls, NO_CALLS);
    assert_eq!(map.len(), KEYS as usize / 2);
}

/// The counter sees allocations made inside the map: a `String` value and a `u64` value at
/// or above 2^63 are boxed, once per insert.
#[test]
fn boxed_values_are_counted() {
    let strings: AtomicMap<u64, String> = AtomicMap::with_capacity(16);
    strings.insert(0, String::from("warm-up"));
    let value = String::from("value");
    let calls = allocator_calls(|| {
        black_box(strings.insert(1, value));
    });
    assert_eq!(calls.allocations, 1, "one box for the String value");

    let wide = warmed_up_map();
    let calls = allocator_calls(|| {
        black_box(wide.insert(1, 1 << 63));
        black_box(wide.insert(2, u64::MAX));
    });
    assert_eq!(calls.allocations, 2, "one box per value at or above 2^63");
    assert_eq!(wide.get(&2), Some(u64::MAX));
}
