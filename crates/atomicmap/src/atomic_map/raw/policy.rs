//! When a table is resized and to what size. Pure decisions: nothing here changes a table.
//!
//! A writer that must probe [`probe_limit`] slots past a key's home to find a free one asks
//! [`crowded_verdict`], which samples the table:
//! * under 11/16 of the sample claimed: nothing to do (a long probe by chance);
//! * live keys fill 3/8 of the table: grow to twice the size;
//! * a quarter of the sample is tombstones: compact to the live keys (the same size, or smaller
//!   after mass removal);
//! * otherwise the sample is crowded by *live* keys while the table as a whole is not: keys
//!   cluster because the hash is weak (a constant hasher at the extreme). A resize would
//!   rebuild the same clusters, so none starts: lookups get slower, tables do not thrash.
//!
//! Removes also shrink a table whose live count falls under 1/8 of its capacity
//! ([`shrink_due`]), and a table that is completely full grows or compacts
//! ([`full_table_capacity`]) whatever its sample says.

use std::cell::Cell;

use super::table::{Slot, Table, MIN_CAPACITY};
use super::word::{self, EMPTY};
use crate::sync::{thread_local, Ordering};

/// Probe distance after which an insert into a large table checks whether it is too crowded.
const PROBE_LIMIT: usize = 16;

/// Slots sampled to estimate how crowded a table is: enough that the estimate's standard
/// deviation (about 2% at half load) keeps a table at normal load from ever looking crowded.
const SAMPLE: usize = 512;

/// A thread checks for a shrink once every this many removes.
const REMOVES_PER_SHRINK_CHECK: u32 = 256;

/// Probe distance after which an insert into `table` checks whether it is too crowded; a
/// quarter of a small table, so small maps do not fill up before they grow.
pub(super) fn probe_limit(table: &Table) -> usize {
    PROBE_LIMIT.min(table.capacity() / 4)
}

/// The capacity for `len` live keys: at most half full. `None` when its slot array would be
/// larger than an allocation can be (`isize::MAX` bytes), which no allocator could provide.
pub(in crate::atomic_map) fn capacity_for(len: usize) -> Option<usize> {
    let capacity = len
        .max(1)
        .checked_mul(2)?
        .checked_next_power_of_two()?
        .max(MIN_CAPACITY);
    std::alloc::Layout::array::<Slot>(capacity)
        .is_ok()
        .then_some(capacity)
}

/// How many new keys writers may claim in a successor of `capacity` slots before it becomes the
/// root, when it replaces a table of `replaced` slots: the carried keys (at most one per
/// replaced slot) plus these fill at most 3/4 of it, so carrying always finds a free slot.
pub(super) fn claim_budget(replaced: usize, capacity: usize) -> usize {
    capacity
        .saturating_sub(replaced)
        .saturating_sub(capacity / 4)
}

/// Like the standard collections, a map that cannot grow aborts; `try_reserve` is the
/// fallible way to make room ahead of time.
#[cold]
pub(super) fn out_of_memory(capacity: usize) -> ! {
    match std::alloc::Layout::array::<Slot>(capacity) {
        Ok(layout) => std::alloc::handle_alloc_error(layout),
        Err(_) => panic!("AtomicMap capacity overflow: {capacity} slots"),
    }
}

/// The successor capacity for a crowded `table` holding `live` keys, or `None` if resizing it
/// would not help (see the module docs).
pub(super) fn crowded_verdict(table: &Table, live: usize) -> Option<usize> {
    let window = SAMPLE.min(table.capacity());
    let start = next_sample_start() as usize;
    let (mut claimed, mut valued) = (0, 0);
    for offset in 0..window {
        let slot = table.slot(start.wrapping_add(offset));
        if slot.key.load(Ordering::Relaxed) != EMPTY {
            claimed += 1;
            valued += usize::from(word::is_value(slot.value.load(Ordering::Relaxed)));
        }
    }
    if claimed * 16 < window * 11 {
        return None;
    }
    let capacity = table.capacity();
    if live.saturating_mul(8) >= capacity.saturating_mul(3) {
        return Some(capacity.checked_mul(2).unwrap_or(capacity));
    }
    let tombstones = claimed - valued;
    (tombstones * 4 >= window).then(|| capacity_for(live).unwrap_or(capacity))
}

/// The successor capacity for a `table` with no free slot left: double when live keys fill at
/// least 3/8 of it, otherwise sized to the live keys (the rest are tombstones).
pub(super) fn full_table_capacity(table: &Table, live: usize) -> usize {
    let capacity = table.capacity();
    if live.saturating_mul(8) >= capacity.saturating_mul(3) {
        capacity.checked_mul(2).unwrap_or(capacity)
    } else {
        capacity_for(live).unwrap_or(capacity)
    }
}

/// Called after a remove committed: once every [`REMOVES_PER_SHRINK_CHECK`] removes of this
/// thread, the capacity to shrink `table` to if its `live` keys fill under 1/8 of it.
pub(super) fn shrink_due(table: &Table, live: impl FnOnce() -> usize) -> Option<usize> {
    let due = REMOVES.with(|removes| {
        let count = removes.get() + 1;
        removes.set(count % REMOVES_PER_SHRINK_CHECK);
        count == REMOVES_PER_SHRINK_CHECK
    });
    if !due || table.capacity() <= MIN_CAPACITY {
        return None;
    }
    let live = live();
    if live.saturating_mul(8) < table.capacity() {
        capacity_for(live)
    } else {
        None
    }
}

thread_local! {
    /// Per-thread state for sampling and shrink checks. Contention-free and not part of any
    /// protocol, but it steers which paths run, so under loom it must be loom's thread local:
    /// a std one would carry state from one explored execution into the next.
    #[allow(
        clippy::missing_const_for_thread_local,
        reason = "loom's thread_local!, which this also compiles with, takes no const initialiser"
    )]
    static SAMPLE_SEED: Cell<u64> = Cell::new(0x9E37_79B9_7F4A_7C15);
    #[allow(
        clippy::missing_const_for_thread_local,
        reason = "as above"
    )]
    static REMOVES: Cell<u32> = Cell::new(0);
}

fn next_sample_start() -> u64 {
    SAMPLE_SEED.with(|seed| {
        // xorshift64: cheap and good enough to spread sample windows.
        let mut x = seed.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seed.set(x);
        x
    })
}
