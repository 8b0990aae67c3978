//! Incremental, cooperative resizing: how entries move to a new table while every operation
//! keeps running.
//!
//! # When
//! A writer that must probe [`probe_limit`] slots past a key's home to find a free one samples
//! the table; if at least 11/16 of the sampled slots are claimed (live keys *or* tombstones),
//! the table is resized (see `grown_capacity`): larger when it is full of live keys,
//! the same size when tombstones crowd it (compaction), smaller after mass removal (removes also
//! trigger a shrink when the live count falls under 1/8 of the capacity). A constant hasher
//! makes probes long but the sample low, so it degrades lookups without resizing forever.
//!
//! # Protocol
//! 1. **Start.** The writer that first sets the table's `allocating` flag allocates the
//!    successor and CASes it into `migration.next` (null → table). Writers that find the flag
//!    set do not allocate a second table: they go on claiming in the crowded table, or, if they
//!    cannot (it is full, or `reserve` must wait for the resize), yield until the successor
//!    appears. A snapshot's freezing migration installs its successor without the flag, so the
//!    CAS can still lose; the loser frees its own. Only the root table is ever resized, and a
//!    successor is not resized before it becomes the root.
//! 2. **Copy.** Each writer that meets a resizing table claims one chunk of [`CHUNK`] slots
//!    (`fetch_add` on `claimed_chunks`) and migrates every slot in it; so no operation does more
//!    than one chunk of work, and readers do none. A slot is migrated by its chunk's owner only:
//!    * `EMPTY` key → CAS to `SEALED`: no key can be claimed here any more.
//!    * a key with a value → claim the same key word in the successor (*carry*), store the value
//!      there, then CAS the old value word to `MOVED`. If that CAS fails a writer changed the
//!      value meanwhile: store the newer one and try again. Until `MOVED` lands, writers still
//!      commit in the old slot and the successor's copy is invisible (nobody looks for this key
//!      in the successor before `MOVED`), so storing over it is safe.
//!    * a key without a value (tombstone) → CAS `ABSENT` to `DROPPED`: the key is not carried,
//!      and the old table keeps owning its box until it is freed.
//! 3. **Finish.** The writer whose chunk brings `finished_chunks` to the chunk count CASes the
//!    root from the old table to the successor and retires the old table.
//!
//! # Why no update is lost and no key is duplicated
//! * Writers diverted to the successor by `SEALED` / `MOVED` / `DROPPED` look the key up there
//!   and commit there. A `MOVED` value's successor copy was stored before the `MOVED` CAS
//!   (release), so a writer that sees `MOVED` (acquire) sees the copy.
//! * A writer that finds `EMPTY` in a resizing table seals that slot before going to the
//!   successor, so the key cannot be claimed in the old table afterwards by a writer that
//!   started earlier: a key lives in the old table or the successor, never both.
//! * Carrying claims a key the successor cannot already hold: the key's probe sequence in the
//!   old table has no `EMPTY` before its slot, so no writer was diverted for it.
//! * `DROPPED` keys are not carried; a writer that claimed the slot just before (its key box is
//!   now the old table's) takes the box back with `DROPPED` → `MOVED` and claims with it in the
//!   successor ("re-homing"); any other writer inserts its own key there.
//!
//! # Room to carry
//! Carrying a key needs a free slot in the successor, and nothing there can be freed before the
//! resize ends, so a successor filled by writers' new keys would stall its resize for good. So
//! writers may claim only a budget of new keys in a successor that is not yet the root:
//! `capacity - replaced capacity - capacity / 4`, which leaves room for one key per slot of the
//! replaced table (more than can ever be carried) plus a quarter of the successor. A grow leaves
//! writers half the replaced table's size; a compaction, a shrink or a freezing migration leaves
//! nothing, so there an insert of a new key helps the resize to its end first. Keys of the
//! replaced table that writers revive (a value stored over a tombstone) are carried like any
//! other, and a shrink successor (at least half the replaced table, sized at twice the live
//! keys) has room for them unless more than half the replaced table's slots are revived during
//! one shrink, a corner this does not close.
//!
//! # Progress
//! Readers never wait. A writer waits only in three corners: when the successor itself needs to
//! grow while chunks of the current resize are still being copied by other threads, when a
//! snapshot's freezing migration diverts it (see `freeze`), and when its table is completely
//! full while another writer allocates the successor. In the first two it helps with every
//! unclaimed chunk and then yields until the chunks other threads own finish. Successors are
//! sized at twice the live count, so the first needs a burst of new keys larger than the map
//! while a chunk owner is descheduled; the third needs every slot claimed, while resizes start
//! when a sample of the table is 11/16 claimed.

use std::cell::Cell;
use std::hash::{BuildHasher, Hash};
use std::ptr;

use super::raw::{Located, RawMap};
use super::table::{free_table, AllocFailed, Image, Slot, Table, CHUNK, MIN_CAPACITY};
use super::word::{self, ABSENT, DROPPED, EMPTY, MOVED, SEALED};
use crate::reclaim::Guard;
use crate::sync::{thread_local, yield_now, Ordering};

/// What [`RawMap::start_resize`] did.
pub(super) enum Start {
    /// The table has a successor (ours, or one another thread installed).
    Installed,
    /// Another writer is allocating the successor right now; it appears shortly.
    Allocating,
    /// The successor could not be allocated; the map keeps working in the table.
    Failed,
}

/// Probe distance after which an insert into a large table checks whether it is too crowded.
const PROBE_LIMIT: usize = 16;

/// Probe distance after which an insert into `table` checks whether it is too crowded; a
/// quarter of a small table, so small maps do not fill up before they grow.
pub(super) fn probe_limit(table: &Table) -> usize {
    PROBE_LIMIT.min(table.capacity() / 4)
}

/// Slots sampled to estimate how crowded a table is: enough that the estimate's standard
/// deviation (about 2% at half load) keeps a table at normal load from ever looking crowded.
const SAMPLE: usize = 512;

/// A thread checks for a shrink once every this many removes.
const REMOVES_PER_SHRINK_CHECK: u32 = 256;

/// Like the standard collections, a map that cannot grow aborts; `try_reserve` is the
/// fallible way to make room ahead of time.
#[cold]
pub(super) fn out_of_memory(capacity: usize) -> ! {
    match std::alloc::Layout::array::<Slot>(capacity) {
        Ok(layout) => std::alloc::handle_alloc_error(layout),
        Err(_) => panic!("AtomicMap capacity overflow: {capacity} slots"),
    }
}

/// How many new keys writers may claim in a successor of `capacity` slots before it becomes the
/// root, when it replaces a table of `replaced` slots: the carried keys (at most one per
/// replaced slot) plus these fill at most 3/4 of it, so carrying always finds a free slot.
fn claim_budget(replaced: usize, capacity: usize) -> usize {
    capacity
        .saturating_sub(replaced)
        .saturating_sub(capacity / 4)
}

/// The capacity for `len` live keys: at most half full.
pub(super) fn capacity_for(len: usize) -> Option<usize> {
    len.max(1)
        .checked_mul(2)?
        .checked_next_power_of_two()
        .map(|capacity| capacity.max(MIN_CAPACITY))
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

impl<K, V, S> RawMap<K, V, S>
where
    K: Hash + Eq + 'static,
    V: 'static,
    S: BuildHasher,
{
    /// Whether a sample of `table` is at least 11/16 claimed. Linear probing stays fast below
    /// that load (about 4.7 slots per miss, 2 per hit), and successors are sized to be at most
    /// half full, so a table is resized at a load between 0.34 and 0.69.
    pub(super) fn is_crowded(&self, _guard: &Guard<'_>, table: &Table) -> bool {
        let window = SAMPLE.min(table.capacity());
        let start = next_sample_start() as usize;
        let claimed = (0..window)
            .filter(|offset| {
                let slot = table.slot(start + offset);
                slot.key.load(Ordering::Relaxed) != EMPTY
            })
            .count();
        claimed * 16 >= window * 11
    }

    /// Capacity of the successor of a crowded `table`: double when live keys fill at least 3/8 of
    /// it (so a sampling fluke at normal load never causes a same-size copy), otherwise sized to
    /// the live keys, which compacts tombstones or shrinks.
    pub(super) fn grown_capacity(&self, table: &Table) -> usize {
        let live = self.len();
        let capacity = table.capacity();
        if live.saturating_mul(8) >= capacity.saturating_mul(3) {
            capacity.checked_mul(2).unwrap_or(capacity)
        } else {
            capacity_for(live).unwrap_or(capacity)
        }
    }

    /// Installs a successor of `capacity` slots for `table` unless one exists or another writer
    /// is allocating one.
    pub(super) fn start_resize(&self, guard: &Guard<'_>, table: &Table, capacity: usize) -> Start {
        if !table.next().is_null() {
            return Start::Installed;
        }
        if table.migration.allocating.swap(1, Ordering::Acquire) != 0 {
            return Start::Allocating;
        }
        // A successor shrinks to at most half: the live count it was sized by can be stale, and
        // carrying a key needs a free slot, so a successor too small for what is still carried
        // into it plus what writers add meanwhile would stall the resize for good.
        let capacity = capacity.max(table.capacity() / 2);
        match self.install_successor(guard, table, capacity, None) {
            Ok(_) => Start::Installed,
            Err(AllocFailed) => {
                // Let a later writer try again (memory may be back by then).
                table.migration.allocating.store(0, Ordering::Release);
                Start::Failed
            }
        }
    }

    /// Allocates a successor of `capacity` slots for `table` (with the image of a freezing
    /// migration, if given) and CASes it in. Returns the successor if ours was installed, `None`
    /// if another one was already there (ours is freed).
    pub(super) fn install_successor<'g>(
        &self,
        guard: &'g Guard<'_>,
        table: &Table,
        capacity: usize,
        image: Option<Box<Image>>,
    ) -> Result<Option<&'g Table>, AllocFailed> {
        let birth = self.collector.birth_epoch(guard);
        let successor = Box::into_raw(Table::allocate(
            capacity,
            birth,
            table.generation + 1,
            claim_budget(table.capacity(), capacity),
            image,
        )?);
        match table.migration.next.compare_exchange(
            ptr::null_mut(),
            successor,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: installed, so it is retired only after the root moves past it, which
            // happens after this call; `birth_epoch` made our reservation cover its birth, so
            // the guard keeps it allocated from then on.
            Ok(_) => Ok(Some(unsafe { &*successor })),
            Err(_) => {
                // SAFETY: our successor lost the race and was never visible to anyone.
                drop(unsafe { Box::from_raw(successor) });
                Ok(None)
            }
        }
    }

    /// Migrates one unclaimed chunk of `table`, if any is left. Returns whether it did.
    pub(super) fn help_resize(&self, guard: &Guard<'_>, table: &Table) -> bool {
        if table.next().is_null() {
            return false;
        }
        let chunks = table.chunks();
        let chunk = table
            .migration
            .claimed_chunks
            .fetch_add(1, Ordering::AcqRel);
        if chunk >= chunks {
            return false;
        }
        // We own an unfinished chunk, so `table` is still the root and its successor is live.
        let successor = self.successor(guard, table);
        let image = successor.image();
        let end = ((chunk + 1) * CHUNK).min(table.capacity());
        for index in chunk * CHUNK..end {
            let frozen = image.map(|image| &image.slots[index]);
            self.migrate_slot(guard, &table.slots[index], successor, frozen);
        }
        let finished = table
            .migration
            .finished_chunks
            .fetch_add(1, Ordering::AcqRel)
            + 1;
        if finished == chunks {
            self.finish_resize(guard, table);
        }
        true
    }

    /// Drives the resize of `table` to completion: helps with every unclaimed chunk, then waits
    /// for chunks other threads are still copying and for the root to move on.
    pub(super) fn complete_resize(&self, guard: &Guard<'_>, table: &Table) {
        while self.help_resize(guard, table) {}
        let chunks = table.chunks();
        while !table.next().is_null()
            && (table.migration.finished_chunks.load(Ordering::Acquire) < chunks
                || ptr::eq(self.root(guard), table))
        {
            yield_now();
        }
    }

    fn finish_resize(&self, guard: &Guard<'_>, table: &Table) {
        let Some(retired) = self.replace_root(table) else {
            debug_assert!(false, "only the root table is ever resized");
            return;
        };
        // SAFETY: the root no longer points to the table; readers still holding it are pinned,
        // and the reclaimer waits for them. Its slots are now all SEALED, MOVED or DROPPED:
        // `free_table` frees exactly the DROPPED keys it still owns.
        unsafe { guard.retire_large(retired.cast(), table.birth, free_table::<K, V>) };
    }

    /// Moves one slot of a resizing table into `successor` (see the module docs), recording the
    /// words it moves in `frozen` during a freezing migration.
    fn migrate_slot(
        &self,
        guard: &Guard<'_>,
        slot: &Slot,
        successor: &Table,
        frozen: Option<&Slot>,
    ) {
        let mut carried: Option<&Slot> = None;
        loop {
            let key = self.load_key(guard, slot);
            if key == EMPTY {
                if slot
                    .key
                    .compare_exchange(EMPTY, SEALED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if key == SEALED {
                return;
            }
            let value = slot.value.load(Ordering::Acquire);
            let (target, final_word) = match value {
                MOVED | DROPPED => return,
                ABSENT => match carried {
                    // A writer removed the value after we carried the key: carry the removal.
                    Some(copy) => {
                        copy.value.store(ABSENT, Ordering::Release);
                        (value, MOVED)
                    }
                    None => (value, DROPPED),
                },
                value => {
                    let copy = match carried {
                        Some(copy) => copy,
                        None => self.carry(guard, successor, key),
                    };
                    carried = Some(copy);
                    copy.value.store(value, Ordering::Release);
                    (value, MOVED)
                }
            };
            if let Some(frozen) = frozen {
                // Only this chunk's owner writes the image; the `finished_chunks` increment
                // publishes it to the snapshot. A retry overwrites it with the newer words.
                frozen.key.store(key, Ordering::Relaxed);
                frozen.value.store(target, Ordering::Relaxed);
            }
            if slot
                .value
                .compare_exchange(target, final_word, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Claims key word `key` in `successor` (or finds it) and returns its slot.
    fn carry<'g>(&self, guard: &'g Guard<'_>, successor: &'g Table, key: u64) -> &'g Slot {
        let mut index = self.key_hash(key) as usize & successor.mask;
        loop {
            let slot = successor.slot(index);
            let here = self.load_key(guard, slot);
            if here == EMPTY {
                if slot
                    .key
                    .compare_exchange(EMPTY, key, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return slot;
                }
                continue;
            }
            debug_assert_ne!(
                here, SEALED,
                "a successor is not resized before it is the root"
            );
            if word::is_key(here) && self.same_key(here, key) {
                return slot;
            }
            index = (index + 1) & successor.mask;
        }
    }

    /// A table too full for another key: make sure a resize is under way and continue in the
    /// successor. On return `table` has a successor.
    pub(super) fn overflow<'g>(&self, guard: &'g Guard<'_>, table: &'g Table) -> Located<'g> {
        loop {
            if !table.next().is_null() {
                self.help_resize(guard, table);
                return Located::Next(self.next_table(guard, table));
            }
            let root = self.root(guard);
            if ptr::eq(root, table) {
                let capacity = self.grown_capacity(table);
                match self.start_resize(guard, table, capacity) {
                    Start::Installed => {}
                    Start::Allocating => yield_now(),
                    Start::Failed => out_of_memory(capacity),
                }
            } else {
                // `table` is the successor of a resize still in progress.
                self.complete_resize(guard, root);
            }
        }
    }

    /// For a writer that found `table` crowded: starts (or helps) its resize and returns true,
    /// or returns false when another writer is allocating the successor right now, in which
    /// case the caller claims its slot in `table` meanwhile (crowded is not full).
    pub(super) fn resize_crowded(&self, guard: &Guard<'_>, table: &Table) -> bool {
        if table.next().is_null() && ptr::eq(self.root(guard), table) {
            let capacity = self.grown_capacity(table);
            match self.start_resize(guard, table, capacity) {
                Start::Installed => {}
                Start::Allocating => return false,
                Start::Failed => out_of_memory(capacity),
            }
        }
        self.overflow(guard, table);
        true
    }

    /// Called after a remove committed: occasionally shrinks a mostly empty table.
    pub(super) fn after_remove(&self, guard: &Guard<'_>) {
        let due = REMOVES.with(|removes| {
            let count = removes.get() + 1;
            removes.set(count % REMOVES_PER_SHRINK_CHECK);
            count == REMOVES_PER_SHRINK_CHECK
        });
        if !due {
            return;
        }
        let table = self.root(guard);
        let len = self.len();
        if table.capacity() > MIN_CAPACITY && len.saturating_mul(8) < table.capacity() {
            if let Some(capacity) = capacity_for(len) {
                self.start_resize(guard, table, capacity);
                self.help_resize(guard, table);
            }
        }
    }

    /// Resizes the root to `capacity` slots and waits until the resize is done (for `reserve`,
    /// `shrink_to_fit` and `clear`). Returns false if the table could not be allocated.
    pub(super) fn resize_now(&self, guard: &Guard<'_>, capacity: usize) -> bool {
        loop {
            let table = self.root(guard);
            if table.next().is_null() {
                if table.capacity() == capacity && !self.is_crowded(guard, table) {
                    return true;
                }
                match self.start_resize(guard, table, capacity) {
                    Start::Installed => {
                        self.complete_resize(guard, table);
                        return true;
                    }
                    Start::Allocating => yield_now(),
                    Start::Failed => return false,
                }
                continue;
            }
            // Someone else's resize is running: finish it, then start ours.
            self.complete_resize(guard, table);
        }
    }
}
