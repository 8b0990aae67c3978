//! When a table is resized and to what size. Pure decisions: nothing here changes a table.
//!
//! A writer that must probe [`probe_limit`] slots past a key's home to find a free one asks
//! [`crowded_verdict`], which samples the table (in a large table, at most one such writer's
//! check in eight per thread after a sample found nothing, see [`crowding_after_long_probe`]):
//! * under 11/16 of the sample claimed: nothing to do (a long probe by chance);
//! * live keys fill 3/8 of the table: grow to twice the size;
//! * a quarter of the sample is tombstones: compact to the live keys (the same size, or smaller
//!   after mass removal);
//! * otherwise the sample is crowded by *live* keys while the table as a whole is not: keys
//!   cluster because the hash is weak (a constant hasher at the extreme). A resize would
//!   rebuild the same clusters, so none starts: lookups get slower, tables do not thrash.
//!
//! Removes also shrink a table whose live count falls under 1/8 of its capacity (checked
//! every [`REMOVES_PER_SHRINK_CHECK`] removes of a thread: [`shrink_check_due`],
//! [`shrink_target`]), and a table that is completely full grows or compacts
//! ([`full_table_capacity`]) whatever its sample says. The map sizes no shrink or compaction
//! below the slots `with_capacity` or `reserve` asked for (`RawMap::reserved_slots`): a map
//! presized for a load it has not reached yet keeps its table while early removes empty it.

use std::cell::Cell;

use super::table::{Slot, Table, MIN_CAPACITY};
use super::word::{self, EMPTY};
use crate::sync::{thread_local, Ordering};

/// Probe distance after which an insert into a large table checks whether it is too crowded.
const PROBE_LIMIT: usize = 16;

/// Slots sampled to estimate how crowded a table is: enough that the estimate's standard
/// deviation (about 2% at half load) keeps a table at normal load from ever looking crowded.
const SAMPLE: usize = 512;

/// Checks of one table a thread skips after a sample of it gave no verdict.
const CHECKS_SKIPPED_AFTER_NO_VERDICT: u32 = 7;

/// Tables smaller than this are sampled on every long probe: a few skipped checks' keys
/// matter there, and a sample is a fraction of [`SAMPLE`] slots anyway.
const PACED_MIN_CAPACITY: usize = 4 * SAMPLE;

/// A thread checks for a shrink once every this many removes.
const REMOVES_PER_SHRINK_CHECK: u32 = 256;

/// Probe distance after which an insert into `table` checks whether it is too crowded; a
/// quarter of a small table, so small maps do not fill up before they grow.
#[inline]
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

/// [`crowded_verdict`] for a writer that just probed [`probe_limit`] slots, paced per thread:
/// after a sample of a large table finds no cause to resize it, the thread skips its next
/// [`CHECKS_SKIPPED_AFTER_NO_VERDICT`] checks of the same table. A table filling towards the
/// grow threshold sends many writers past the probe limit, and each sample reads 512 slots
/// (128 cache lines, most of them misses); the keys a skipped check lets in are a few per
/// thread in a table of thousands of slots.
pub(super) fn crowding_after_long_probe(
    table: &Table,
    live: impl FnOnce() -> usize,
) -> Option<usize> {
    let paced = table.capacity() >= PACED_MIN_CAPACITY;
    if paced && SKIPPED_CHECKS.with(|skipped| skipped.skip(table)) {
        return None;
    }
    let verdict = crowded_verdict(table, live);
    if paced && verdict.is_none() {
        SKIPPED_CHECKS.with(|skipped| skipped.start(table));
    }
    verdict
}

/// The successor capacity for a crowded `table` holding `live` keys (counted only if the
/// sample is crowded: the count reads every thread's record), or `None` if resizing it would
/// not help (see the module docs).
pub(super) fn crowded_verdict(table: &Table, live: impl FnOnce() -> usize) -> Option<usize> {
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
    let live = live();
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

/// Called after a remove committed: whether this thread's shrink check is due, once every
/// [`REMOVES_PER_SHRINK_CHECK`] of its removes. Counted before anything else is looked at, so
/// that the other removes load nothing shared.
pub(super) fn shrink_check_due() -> bool {
    REMOVES.with(|removes| {
        let count = removes.get() + 1;
        removes.set(count % REMOVES_PER_SHRINK_CHECK);
        count == REMOVES_PER_SHRINK_CHECK
    })
}

/// For a due shrink check: the capacity to shrink `table` to if its `live` keys fill under
/// 1/8 of it.
pub(super) fn shrink_target(table: &Table, live: impl FnOnce() -> usize) -> Option<usize> {
    if table.capacity() <= MIN_CAPACITY {
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
    #[allow(
        clippy::missing_const_for_thread_local,
        reason = "as above"
    )]
    static SKIPPED_CHECKS: SkippedChecks = SkippedChecks::default();
}

/// Which table a thread is skipping crowding checks of, and how many checks are left to skip.
/// The table is known by its address only: should a freed table's address come back for a new
/// one, the new table merely has a few checks skipped.
#[derive(Default)]
struct SkippedChecks {
    table: Cell<usize>,
    left: Cell<u32>,
}

impl SkippedChecks {
    /// Whether to skip this check of `table`.
    fn skip(&self, table: &Table) -> bool {
        let left = self.left.get();
        if left == 0 || self.table.get() != address(table) {
            return false;
        }
        self.left.set(left - 1);
        true
    }

    fn start(&self, table: &Table) {
        self.table.set(address(table));
        self.left.set(CHECKS_SKIPPED_AFTER_NO_VERDICT);
    }
}

fn address(table: &Table) -> usize {
    std::ptr::from_ref(table) as usize
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

#[cfg(all(test, not(loom)))]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::atomic_map::raw::word::Codec;

    /// A table of `capacity` slots, every one holding a live key: a sample finds it crowded.
    fn full_table(capacity: usize) -> Box<Table> {
        let table = Table::allocate(capacity, 0, 0, 0, None).expect("a small table");
        for (index, slot) in table.slots.iter().enumerate() {
            let word = Codec::<u64>::inline_word(&(index as u64)).expect("a small key");
            slot.key.store(word, Ordering::Relaxed);
            slot.value.store(word, Ordering::Relaxed);
        }
        table
    }

    /// Runs one paced check of `table` claiming `live` live keys; returns whether it sampled
    /// (a crowded sample is the only step that counts the live keys).
    fn samples(table: &Table, live: usize) -> bool {
        let counted = Cell::new(false);
        let verdict = crowding_after_long_probe(table, || {
            counted.set(true);
            live
        });
        assert_eq!(
            verdict, None,
            "crowded by live keys that fill little of it: no resize"
        );
        counted.get()
    }

    #[test]
    fn a_thread_skips_its_next_checks_of_a_large_table_after_a_sample_without_verdict() {
        let table = full_table(PACED_MIN_CAPACITY);
        let other = full_table(PACED_MIN_CAPACITY);
        assert!(samples(&table, 1));
        for _ in 0..CHECKS_SKIPPED_AFTER_NO_VERDICT {
            assert!(!samples(&table, 1));
        }
        assert!(samples(&table, 1), "the pause ends");
        assert!(samples(&other, 1), "another table is not paused");
    }

    #[test]
    fn a_small_table_is_sampled_on_every_check() {
        let table = full_table(PACED_MIN_CAPACITY / 2);
        for _ in 0..=CHECKS_SKIPPED_AFTER_NO_VERDICT {
            assert!(samples(&table, 1));
        }
    }

    #[test]
    fn a_verdict_the_map_asks_for_samples_during_a_pause() {
        let table = full_table(PACED_MIN_CAPACITY);
        assert!(samples(&table, 1));
        assert_eq!(
            crowded_verdict(&table, || PACED_MIN_CAPACITY),
            Some(2 * PACED_MIN_CAPACITY),
            "a table crowded by live keys grows even while long probes skip their checks"
        );
    }
}
