//! Incremental, cooperative resizing: how entries move to a new table while every operation
//! keeps running.
//!
//! When a resize starts and to what size is decided in `policy`; this module moves the
//! entries. Its interface is [`Migrator`]: start a resize, help with one chunk, drive one to
//! its end. It reads tables only through the chain (`chain`) and slot handles (`shared`), and
//! calls no user code except the hasher on an inline key it carries (see "Panics").
//!
//! # Protocol
//! 1. **Start.** The writer that first sets the table's `allocating` flag (from `NOT_ALLOCATING`,
//!    to the kind of successor) allocates the successor and CASes it into `migration.next` (null →
//!    table). Writers that find the flag set do not allocate a second table: they go on claiming in
//!    the crowded table where their probe is short, and otherwise (a probe as long as the one that
//!    calls for a crowding check, a full table, a `reserve` that must wait for the resize) wait
//!    until the successor appears. Claiming far out meanwhile would fill the table toward full,
//!    where a new key's probe walks hundreds of slots: 16 threads growing a map on 2 cores claimed
//!    more than 100 slots from home on average that way (more than 1,600 in one run) while one
//!    thread faulted in a large successor. A snapshot's freezing migration installs its successor
//!    without the flag, so the CAS can still lose; the loser frees its own. Only the root table is
//!    ever resized, and a successor is not resized before it becomes the root.
//! 2. **Copy.** Each writer that meets a resizing table claims one chunk of [`CHUNK`] slots
//!    (`fetch_add` on `chunk_progress.claimed`, or an abandoned chunk, see "Panics") and
//!    migrates every slot in it; so no operation does more than one chunk of work, and readers
//!    do none. A slot is migrated by its chunk's owner only:
//!    * `EMPTY` key → CAS to `SEALED`: no key can be claimed here any more.
//!    * a key with a value → claim the same key word in the successor (*carry*), store the value
//!      there, then CAS the old value word to `MOVED`. If that CAS fails a writer changed the
//!      value meanwhile: store the newer one and try again. Until `MOVED` lands, writers still
//!      commit in the old slot and the successor's copy is invisible (nobody looks for this key
//!      in the successor before `MOVED`), so storing over it is safe.
//!    * a key without a value (tombstone) → CAS `ABSENT` to `DROPPED`: the key is not carried,
//!      and the old table keeps owning its box until it is freed.
//! 3. **Finish.** The writer whose chunk brings `chunk_progress.finished` to the chunk count
//!    CASes the root from the old table to the successor and retires the old table.
//!
//! # Why no update is lost and no key is duplicated
//! * Writers diverted to the successor by `SEALED` / `MOVED` / `DROPPED` look the key up there
//!   and commit there. A `MOVED` value's successor copy was stored before the `MOVED` CAS
//!   (release), so a writer that sees `MOVED` (acquire) sees the copy.
//! * A writer that finds `EMPTY` in a resizing table seals that slot before going to the
//!   successor, so the key cannot be claimed in the old table afterwards by a writer that
//!   started earlier: a key lives in the old table or the successor, never both.
//! * Carrying claims a key the successor cannot already hold: the key's probe sequence in the
//!   old table has no `EMPTY` before its slot, so no writer was diverted for it. So the carry
//!   recognises only its own earlier claim (a chunk taken over after a panic), by the key word
//!   itself, and never calls the user's `Eq`.
//! * `DROPPED` keys are not carried; a writer that claimed the slot just before (its key box is
//!   now the old table's) takes the box back with `DROPPED` → `MOVED` and claims with it in the
//!   successor ("re-homing"); any other writer inserts its own key there.
//!
//! # Room to carry
//! Carrying a key needs a free slot in the successor, and nothing there can be freed before the
//! resize ends, so a successor without room for what it must carry would stall its resize for
//! good. Two rules make that impossible by construction:
//! * **Writers' new keys are budgeted.** Writers may claim only a budget of new keys in a
//!   successor that is not yet the root: `capacity - replaced capacity - capacity / 4`. A grow
//!   leaves writers a quarter of the successor; a compaction, a shrink or a freezing migration
//!   leaves nothing, so there an insert of a new key helps the resize to its end first.
//! * **Every key that can be carried was counted.** A grow's successor has a slot for every
//!   slot of the replaced table, and a freezing migration's is as large. A successor sized to
//!   the contents (compaction, shrink) is sized by counting: its allocator sets
//!   `allocating = ALLOCATING_FIT` (`SeqCst`), then counts the claimed slots (live keys and
//!   tombstones, which a writer may revive) with `SeqCst` loads, and adds the number of
//!   threads using the map (`Collector::thread_bound`). A writer about to claim a slot in a
//!   table first loads the flag (`SeqCst`) and, when claims are paused, waits for the
//!   successor; its claim CAS is `SeqCst` too. In the single order of `SeqCst` operations,
//!   a claim the count missed comes after the flag was set, so the writer's check before it
//!   came before: each thread has at most one such claim in flight (its next check sees the
//!   flag). Threads that registered after the count are bounded the same way (see
//!   `Participants::bound`). So the successor holds every carried key, sized at most 3/4 full.
//!
//! A fit successor can therefore come out larger than the live keys call for when tombstones
//! crowd the table: the compaction drops them, and the next shrink, over a table without them,
//! sizes to the live keys (`clear` runs both at once).
//!
//! # Panics
//! The only user code a chunk owner runs is the hasher, to find an inline key's home in the
//! successor (boxed keys carry their hash). If it panics, the unwinding owner offers its chunk
//! again (`abandoned_chunks`, then the `abandoned` count, both with release): the next helper
//! takes it with a CAS and migrates it from where the slots stand. Migrating a slot again is
//! safe: finished slots are final (`SEALED`, `MOVED`, `DROPPED`) and skipped, and a key carried
//! but not yet `MOVED` is found again in the successor by its word. So a panicking hasher fails
//! the operation that called it, never the resize.
//!
//! # Progress
//! Readers never wait. A writer waits only in four corners: when the successor itself needs to
//! grow while chunks of the current resize are still being copied by other threads, when a
//! snapshot's freezing migration diverts it (see `freeze`), when it would claim a new key far
//! from its home (or in a full table) while another writer allocates the successor, and when
//! it would claim a new key in a table whose fit successor is being counted and allocated. In
//! the first two it helps with every unclaimed chunk and then waits until the chunks other
//! threads own finish. Successors are sized at twice the live count, so the first needs a
//! burst of new keys larger than the map while a chunk owner is descheduled. Writes of present
//! keys, and new keys whose probe is short, never wait for an allocation. Waiting is
//! `sync::Backoff`: a few yields, then short sleeps, so that with more threads than cores the
//! waiters leave the cores to the thread they wait for.
//!
//! A resize ends only when its last chunk is done, and until then every write pays for two
//! tables (it is diverted from the old one). With more threads than cores, the owner of that
//! last chunk is often preempted in the middle of it and waits out every other thread's time
//! slice: 16 threads growing a map on 2 cores held each large resize open for 40-60 ms after
//! its last chunk was claimed, two thirds of its length. So a writer that finds every chunk
//! claimed and some unfinished yields its core once. Where no thread waits for a core the
//! yield returns at once, and only writes during a chunk's last microseconds pay it.

use std::hash::{BuildHasher, Hash};
use std::ptr;

use super::chain::{successor, Chain};
use super::policy::claim_budget;
use super::probe::Probe;
use super::shared::{self, Shared};
use super::table::{
    free_table, AllocFailed, Image, Slot, Table, ALLOCATING_FIT, ALLOCATING_GROW, CHUNK,
    MIN_CAPACITY, NOT_ALLOCATING,
};
use super::word::{Codec, ABSENT, DROPPED, EMPTY, MOVED, SEALED};
use crate::reclaim::{Collector, Guard};
use crate::sync::{Backoff, Ordering};

/// What [`Migrator::start`] did.
pub(super) enum Start {
    /// The table has a successor (ours, or one another thread installed).
    Installed,
    /// Another writer is allocating the successor right now; it appears shortly.
    Allocating,
    /// The successor could not be allocated; the map keeps working in the table.
    Failed,
}

/// Moves the entries of a resizing table into its successor; all a map needs to resize.
pub(super) struct Migrator<'m, K: 'static, V: 'static, S> {
    pub(super) chain: &'m Chain<K, V>,
    pub(super) collector: &'m Collector,
    pub(super) hasher: &'m S,
}

impl<K, V, S> Migrator<'_, K, V, S>
where
    K: Hash + Eq + 'static,
    V: 'static,
    S: BuildHasher,
{
    /// Installs a successor of (at least) `capacity` slots for `table` unless one exists or
    /// another writer is allocating one. A successor no larger than `table` is sized to what it
    /// may have to carry (module docs, "Room to carry").
    pub(super) fn start(&self, guard: &Guard<'_>, table: &Table, capacity: usize) -> Start {
        if !table.next().is_null() {
            return Start::Installed;
        }
        let kind = if capacity > table.capacity() {
            ALLOCATING_GROW
        } else {
            ALLOCATING_FIT
        };
        if table
            .migration
            .allocating
            .compare_exchange(NOT_ALLOCATING, kind, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return Start::Allocating;
        }
        let capacity = if kind == ALLOCATING_FIT {
            capacity.max(self.room_to_carry(table))
        } else {
            capacity
        };
        match self.install_successor(guard, table, capacity, None) {
            Ok(_) => Start::Installed,
            Err(AllocFailed) => {
                // Let a later writer try again (memory may be back by then), and writers
                // waiting to claim go on in this table.
                table
                    .migration
                    .allocating
                    .store(NOT_ALLOCATING, Ordering::Release);
                Start::Failed
            }
        }
    }

    /// The capacity a fit successor of `table` needs so that carrying never runs out of free
    /// slots: every key claimed in `table` now, plus one claim per thread that may still slip
    /// in, at most 3/4 full. Called with claims paused (`ALLOCATING_FIT` set).
    fn room_to_carry(&self, table: &Table) -> usize {
        let carried = table.claimed_slots() + self.collector.thread_bound();
        let needed = carried.saturating_add(carried.div_ceil(3));
        needed
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .max(MIN_CAPACITY)
    }

    /// For a writer that must not claim in `table` while its successor is being allocated
    /// (claims paused for a fit successor, or a probe long enough to call for a crowding
    /// check): waits until the successor is installed or its allocation failed.
    pub(super) fn wait_for_successor(&self, table: &Table) {
        let mut backoff = Backoff::new();
        while table.next().is_null() && table.successor_allocating() {
            backoff.wait();
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
        let successor = Table::allocate(
            capacity,
            birth,
            table.generation + 1,
            claim_budget(table.capacity(), capacity),
            image,
        )?;
        if Codec::<K>::may_box() {
            // The successor will own keys whose words stay in `table`'s slots, where a reader
            // that pinned before those keys were born may still load them (see
            // `Table::reclamation_birth`).
            successor.lower_key_birth_floor(table.reclamation_birth());
        }
        successor.prefault();
        let successor = Box::into_raw(successor);
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
    pub(super) fn help(&self, guard: &Guard<'_>, table: &Table) -> bool {
        if table.next().is_null() {
            return false;
        }
        let chunks = table.chunks();
        let Some(chunk) = claim_chunk(table, chunks) else {
            // Chunks other threads own are unfinished: give the core to one of them in case it
            // was preempted (module docs, "Progress"). Not under loom, where a yield is a
            // scheduling point that multiplies the schedules a model explores; it reads and
            // writes no memory, so the models check the same protocol without it.
            if cfg!(not(loom)) && table.chunk_progress.finished.load(Ordering::Relaxed) < chunks {
                std::thread::yield_now();
            }
            return false;
        };
        // We own an unfinished chunk, so `table` is still the root and its successor is live.
        let successor = successor(guard, table);
        let image = successor.image();
        let owner = ChunkOwner {
            table,
            chunk,
            finished: false,
        };
        let end = ((chunk + 1) * CHUNK).min(table.capacity());
        for index in chunk * CHUNK..end {
            let frozen = image.map(|image| &image.slots[index]);
            self.migrate_slot(guard, &table.slots[index], successor, frozen);
        }
        owner.finish();
        let finished = table.chunk_progress.finished.fetch_add(1, Ordering::AcqRel) + 1;
        if finished == chunks {
            self.finish(guard, table);
        }
        true
    }

    /// Drives the resize of `table` to completion: helps with every unclaimed chunk, then waits
    /// for chunks other threads are still copying and for the root to move on.
    pub(super) fn complete(&self, guard: &Guard<'_>, table: &Table) {
        let chunks = table.chunks();
        let mut backoff = Backoff::new();
        loop {
            while self.help(guard, table) {}
            if table.next().is_null()
                || (table.chunk_progress.finished.load(Ordering::Acquire) == chunks
                    && !ptr::eq(self.chain.root(guard), table))
            {
                return;
            }
            backoff.wait();
        }
    }

    fn finish(&self, guard: &Guard<'_>, table: &Table) {
        let Some(retired) = self.chain.replace_root(table) else {
            debug_assert!(false, "only the root table is ever resized");
            return;
        };
        // SAFETY: the root no longer points to the table; readers still holding it, or holding a
        // key it owns that they loaded from an older table, are pinned with reservations that
        // meet [reclamation_birth, now], and the reclaimer waits for them. Its slots are now
        // all SEALED, MOVED or DROPPED: `free_table` frees exactly the DROPPED keys it owns.
        unsafe {
            guard.retire_large(
                retired.cast(),
                table.bytes(),
                table.reclamation_birth(),
                free_table::<K, V>,
            )
        };
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
            let loaded = shared::load::<K>(guard, &slot.key);
            let Some(key) = loaded.key() else {
                if loaded.raw() == SEALED
                    || slot
                        .key
                        .compare_exchange(EMPTY, SEALED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    return;
                }
                continue;
            };
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
                        None => self.carry(successor, key),
                    };
                    carried = Some(copy);
                    successor.note_stored(value);
                    copy.value.store(value, Ordering::Release);
                    (value, MOVED)
                }
            };
            if let Some(frozen) = frozen {
                // Only this chunk's owner writes the image; its increment of
                // `chunk_progress.finished` publishes it to the snapshot. A retry overwrites it
                // with the newer words.
                frozen.key.store(loaded.raw(), Ordering::Relaxed);
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

    /// Claims `key`'s word in `successor` (or finds our own earlier claim of it, after taking
    /// over an abandoned chunk) and returns its slot.
    fn carry<'t>(&self, successor: &'t Table, key: Shared<'_, K>) -> &'t Slot {
        let hash = key.hash_with(self.hasher);
        if let Some(birth) = key.box_birth() {
            // The successor may come to own this key (module docs of `table`).
            successor.lower_key_birth_floor(birth);
        }
        for slot in Probe::new(successor, hash) {
            loop {
                // Only compared, never read through: a word equal to the key's is the key
                // (its box is alive under our guard, so no other key has its address).
                let here = slot.key.load(Ordering::Acquire);
                if here == key.word() {
                    return slot;
                }
                if here != EMPTY {
                    debug_assert_ne!(
                        here, SEALED,
                        "a successor is not resized before it is the root"
                    );
                    break;
                }
                successor.note_stored(key.word());
                if slot
                    .key
                    .compare_exchange(EMPTY, key.word(), Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return slot;
                }
            }
        }
        unreachable!("a successor keeps a free slot for every key it may carry (see `policy`)")
    }
}

/// Takes the next unclaimed chunk of `table`, or one whose owner abandoned it.
fn claim_chunk(table: &Table, chunks: usize) -> Option<usize> {
    let progress = &table.chunk_progress;
    let chunk = progress.claimed.fetch_add(1, Ordering::AcqRel);
    if chunk < chunks {
        return Some(chunk);
    }
    if progress.abandoned.load(Ordering::Acquire) == 0 {
        return None;
    }
    table
        .abandoned_chunks
        .iter()
        .position(|flag| {
            flag.load(Ordering::Relaxed)
                && flag
                    .compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
        })
        .inspect(|_| {
            progress.abandoned.fetch_sub(1, Ordering::Relaxed);
        })
}

/// The claim of one chunk by its owner. If the owner unwinds before finishing (the hasher
/// panicked while carrying a key), dropping the claim offers the chunk to the next helper.
struct ChunkOwner<'t> {
    table: &'t Table,
    chunk: usize,
    finished: bool,
}

impl ChunkOwner<'_> {
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for ChunkOwner<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Release: the next owner sees what this one already wrote (image entries of
            // slots it finished, carried keys).
            self.table.abandoned_chunks[self.chunk].store(true, Ordering::Release);
            self.table
                .chunk_progress
                .abandoned
                .fetch_add(1, Ordering::Release);
        }
    }
}
