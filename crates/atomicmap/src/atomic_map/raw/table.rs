//! The slot array of one table and its migration bookkeeping.
//!
//! A table is a power-of-two array of 16-byte [`Slot`]s (four per cache line, so a lookup
//! usually touches one line) plus a header. The header's hot, read-only part (`mask`, `slots`)
//! is kept away from the migration counters that helpers write, so that helping a resize does
//! not slow down readers of the same table.
//!
//! Tables are not generic: slots hold words (see `word`), and what a word means is decided by
//! the map that owns the table. Every walk over a table's slots goes through `probe::Probe`
//! or a whole-table pass.

use crate::sync::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, CachePadded, Ordering};

use super::word::{self, MOVED};

/// Slots per migration chunk: the most work one operation does for a resize.
#[cfg(not(loom))]
pub(super) const CHUNK: usize = 1024;
#[cfg(loom)]
pub(super) const CHUNK: usize = 2;

/// Values of [`Migration::allocating`].
pub(super) const NOT_ALLOCATING: usize = 0;
/// A successor larger than the table is being allocated.
pub(super) const ALLOCATING_GROW: usize = 1;
/// A successor sized to what the table holds (a compaction or a shrink) is being allocated.
pub(super) const ALLOCATING_FIT: usize = 2;

/// Smallest table the map allocates.
#[cfg(not(loom))]
pub(super) const MIN_CAPACITY: usize = 16;
#[cfg(loom)]
pub(super) const MIN_CAPACITY: usize = 2;

/// One key/value pair.
pub(super) struct Slot {
    /// `EMPTY` → key word (claimed, then fixed for this table's life) or `EMPTY` → `SEALED`.
    pub(super) key: AtomicU64,
    /// `ABSENT` ↔ value word ↔ value word ... → `MOVED` or `DROPPED` (final).
    pub(super) value: AtomicU64,
}

/// How a table's resize starts: written once each per resize, read by every write that meets
/// the table, so kept on a line of its own, away from the counters helpers and writers bump.
pub(super) struct Migration {
    /// The table this one is being migrated into; null until a resize starts, then fixed.
    pub(super) next: AtomicPtr<Table>,
    /// `NOT_ALLOCATING` → `ALLOCATING_GROW` or `ALLOCATING_FIT` (never cleared except after a
    /// failed allocation), set by the one writer that allocates a successor, so that writers
    /// meeting a crowded table at the same moment do not each allocate (and then free) a whole
    /// table. While it is `ALLOCATING_FIT`, no writer claims a new key in the table (see
    /// `migrate`, "Room to carry").
    pub(super) allocating: AtomicUsize,
}

/// Which chunks of a resizing table are taken and done: bumped by the helpers that copy them.
pub(super) struct ChunkProgress {
    /// Next chunk index a helper may claim (may overshoot the chunk count).
    pub(super) claimed: AtomicUsize,
    /// Chunks fully migrated; the helper that makes it equal the chunk count finishes the resize.
    pub(super) finished: AtomicUsize,
    /// Chunks whose owner unwound before finishing them and that no helper has taken over yet
    /// (see `migrate`, "Panics"); which ones is in [`Table::abandoned_chunks`].
    pub(super) abandoned: AtomicUsize,
}

/// A slot array and its header.
pub(super) struct Table {
    /// `capacity - 1`; capacity is a power of two.
    pub(super) mask: usize,
    /// Epoch at which the table was allocated, for reclamation.
    pub(super) birth: u64,
    /// The oldest birth of a boxed key this table may own, or of an older table whose slots may
    /// show one (at most `birth`): the start of the table's lifetime for reclamation (see
    /// [`Table::reclamation_birth`]).
    key_birth_floor: AtomicU64,
    /// Set before the first box word is stored in a slot (see [`Table::note_stored`]): a table
    /// that never held one is freed without a pass over its slots.
    holds_boxes: AtomicBool,
    /// How many tables the map had before this one (the version of its snapshots).
    pub(super) generation: u64,
    pub(super) slots: Box<[Slot]>,
    pub(super) migration: CachePadded<Migration>,
    pub(super) chunk_progress: CachePadded<ChunkProgress>,
    /// While this table is a successor that is not yet the root: how many more new keys writers
    /// may claim in it (see `migrate`, "Room to carry"). Wraps below zero; read through
    /// [`Table::take_claim_budget`]. Every new key claimed during a resize takes from it, so it
    /// has a line of its own.
    claim_budget: CachePadded<AtomicUsize>,
    /// One flag per chunk, set while the chunk waits for a new owner.
    pub(super) abandoned_chunks: Box<[AtomicBool]>,
    /// Set only in the successor of a *freezing* migration (a snapshot, see `snapshot`): the
    /// frozen image of the table being migrated into this one. Owned by this table until the
    /// snapshot that started the migration takes it, which happens after the migration ends.
    pub(super) image: AtomicPtr<Image>,
}

/// A freezing migration's record of the migrated table: slot `i` of the image holds the key
/// and value words slot `i` of the table had when it was migrated (all-zero for slots that
/// held no value). Written by the owner of each chunk only.
pub(super) struct Image {
    pub(super) slots: Box<[Slot]>,
}

impl Image {
    pub(super) fn allocate(capacity: usize) -> Result<Box<Image>, AllocFailed> {
        Ok(Box::new(Image {
            slots: allocate_slots(capacity)?,
        }))
    }
}

/// The table could not be allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AllocFailed;

impl Table {
    /// Allocates an empty table of `capacity` slots (a power of two).
    pub(super) fn allocate(
        capacity: usize,
        birth: u64,
        generation: u64,
        claim_budget: usize,
        image: Option<Box<Image>>,
    ) -> Result<Box<Table>, AllocFailed> {
        debug_assert!(capacity.is_power_of_two());
        let chunks = capacity.div_ceil(CHUNK);
        Ok(Box::new(Table {
            mask: capacity - 1,
            birth,
            key_birth_floor: AtomicU64::new(birth),
            holds_boxes: AtomicBool::new(false),
            generation,
            image: AtomicPtr::new(image.map_or(std::ptr::null_mut(), Box::into_raw)),
            slots: allocate_slots(capacity)?,
            migration: CachePadded(Migration {
                next: AtomicPtr::new(std::ptr::null_mut()),
                allocating: AtomicUsize::new(NOT_ALLOCATING),
            }),
            chunk_progress: CachePadded(ChunkProgress {
                claimed: AtomicUsize::new(0),
                finished: AtomicUsize::new(0),
                abandoned: AtomicUsize::new(0),
            }),
            claim_budget: CachePadded(AtomicUsize::new(claim_budget)),
            abandoned_chunks: (0..chunks).map(|_| AtomicBool::new(false)).collect(),
        }))
    }

    #[inline]
    pub(super) fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// The memory the table itself occupies (header, slots, chunk flags), for the garbage
    /// figure of `stats()`; the keys and values it owns are counted where they are retired.
    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of::<Table>()
            + std::mem::size_of_val::<[Slot]>(&self.slots)
            + std::mem::size_of_val::<[AtomicBool]>(&self.abandoned_chunks)
    }

    /// The slot at `index` modulo the capacity.
    #[inline]
    pub(super) fn slot(&self, index: usize) -> &Slot {
        // SAFETY: `slots.len()` is the capacity, a power of two, and `mask` is one less, so
        // `index & mask` is in bounds; this skips the bounds check on every probe step.
        unsafe { self.slots.get_unchecked(index & self.mask) }
    }

    /// Asks the CPU to start loading the slot at `index` (modulo the capacity) into the cache
    /// without waiting for it, so that the misses of a batch of lookups overlap.
    #[inline]
    pub(super) fn prefetch(&self, index: usize) {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        // SAFETY: a prefetch is a hint with no architectural effect: it never faults and
        // changes no memory (the address is a slot of this table anyway).
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(self.slot(index)).cast());
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        let _ = index;
    }

    /// Maps the slot array's pages in by writing one word of each, before the table is
    /// published.
    ///
    /// A zeroed allocation comes from the OS unmapped. Left alone, the first thread to *read* a
    /// page (a probe meeting `EMPTY`) maps the shared zero page there, and the first to write
    /// it takes a second fault that replaces the zero page and must flush the old mapping from
    /// every core running the process: an inter-processor interrupt per 4 KiB, dearer still
    /// under virtualisation (a third of a growing map's time in one profile). A resize's
    /// successor is about to be written all over by its carries, so writing each page once now
    /// costs one fault per page and no flush. The stores write the value the words already
    /// hold, before the release that publishes the table, so no thread can tell.
    pub(super) fn prefault(&self) {
        #[cfg(not(any(loom, miri)))]
        {
            const PAGE: usize = 4096;
            let touched = self
                .slots
                .iter()
                .step_by(PAGE / std::mem::size_of::<Slot>());
            for slot in touched.chain(self.slots.last()) {
                slot.key.store(word::EMPTY, Ordering::Relaxed);
            }
        }
    }

    #[inline]
    pub(super) fn chunks(&self) -> usize {
        self.capacity().div_ceil(CHUNK)
    }

    /// The table a resize is moving this one into, if one started.
    #[inline]
    pub(super) fn next(&self) -> *mut Table {
        self.migration.next.load(Ordering::Acquire)
    }

    /// Takes one unit of the claim budget of a successor that is not yet the root; false when
    /// none is left (the writer must let the resize finish first).
    pub(super) fn take_claim_budget(&self) -> bool {
        let before = self.claim_budget.fetch_sub(1, Ordering::Relaxed);
        before != 0 && before <= self.capacity()
    }

    /// Records that a boxed key born at `birth` is being claimed in this table (before the
    /// claim CAS, whose release publishes it to whoever migrates the slot and so to the thread
    /// that retires the table), or that readers of a table born at `birth` may load keys this
    /// one owns (before the table is installed as a successor).
    #[inline]
    pub(super) fn lower_key_birth_floor(&self, birth: u64) {
        if birth < self.key_birth_floor.load(Ordering::Relaxed) {
            self.key_birth_floor.fetch_min(birth, Ordering::Relaxed);
        }
    }

    /// Records that `word` is about to be stored in one of this table's key or value words.
    /// Called before the store or CAS: whoever frees the table holds it only after every
    /// thread that wrote to it has unpinned (or pinned again), which orders this relaxed store
    /// before the free (see `reclaim`, "Unpin is a release store").
    #[inline]
    pub(super) fn note_stored(&self, word: u64) {
        if word::is_box(word) && !self.holds_boxes.load(Ordering::Relaxed) {
            self.holds_boxes.store(true, Ordering::Relaxed);
        }
    }

    /// The birth to retire this table with. Freeing a table frees the boxed keys it owns (those
    /// a resize dropped rather than moved), and two kinds of reader can load such a key
    /// without a reservation that covers this table's own birth:
    /// * A key can reach a table long after its own birth, carried from an older table, where a
    ///   reader may have loaded it under a pin that ended its reservation before this table
    ///   was born. So the table is alive since its oldest key's birth (`lower_key_birth_floor`
    ///   at every claim and carry).
    /// * A carried key's word stays in the older table's slot (with `MOVED`). A reader that
    ///   holds the older table, and pinned before the key was even born, can load the word
    ///   there after the key has moved on and the table that owns it now was retired: the
    ///   reclamation handshake covers the location a table was unlinked from (the root), not
    ///   this stale copy. That reader's reservation covers the older table's birth, so a
    ///   successor of a map whose keys may be boxed starts at most at its predecessor's
    ///   reclamation birth (set when it is installed, see `migrate`), and by induction at most
    ///   at the birth of every older table whose slots show one of its keys.
    pub(super) fn reclamation_birth(&self) -> u64 {
        self.key_birth_floor.load(Ordering::Acquire).min(self.birth)
    }

    /// Whether a writer is allocating a successor for this table (a hint: relaxed, and stale
    /// once the successor is installed, which `next` tells).
    #[inline]
    pub(super) fn successor_allocating(&self) -> bool {
        self.migration.allocating.load(Ordering::Relaxed) != NOT_ALLOCATING
    }

    /// Whether a successor sized to this table's contents is being allocated, so that no new
    /// key may be claimed here until it is installed. `SeqCst`: see `migrate`, "Room to carry".
    #[inline]
    pub(super) fn claims_paused(&self) -> bool {
        self.migration.allocating.load(Ordering::SeqCst) == ALLOCATING_FIT
    }

    /// How many slots hold a key (live or a tombstone). `SeqCst` loads: see `migrate`, "Room
    /// to carry".
    pub(super) fn claimed_slots(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| word::is_key(slot.key.load(Ordering::SeqCst)))
            .count()
    }

    /// Whether this table is the successor of a freezing migration that has not ended (or whose
    /// snapshot has not yet taken the image).
    #[inline]
    pub(super) fn is_freezing_successor(&self) -> bool {
        !self.image.load(Ordering::Acquire).is_null()
    }

    /// The image of a freezing migration into this table, for the owner of a chunk of it.
    pub(super) fn image(&self) -> Option<&Image> {
        let image = self.image.load(Ordering::Acquire);
        // SAFETY: a non-null image is a box owned by this table until the snapshot takes it,
        // which happens only after every chunk (so every caller's use) has finished.
        (!image.is_null()).then(|| unsafe { &*image })
    }

    /// Hands the image of a finished freezing migration to the snapshot that started it.
    pub(super) fn take_image(&self) -> Option<Box<Image>> {
        let image = self.image.swap(std::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: the box came from `Box::into_raw` in `allocate`; the swap makes us its only
        // owner, and the migration that wrote it has ended, so nobody else still reads it.
        (!image.is_null()).then(|| unsafe { Box::from_raw(image) })
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // A snapshot that unwound (a user's `Eq` panicked while it helped) before taking its
        // image leaves the image with the table.
        drop(self.take_image());
    }
}

/// Zeroed memory is a valid array of `EMPTY`/`ABSENT` slots, and large zeroed allocations come
/// from the OS lazily, so presizing a map for millions of keys costs no upfront page faults.
#[cfg(not(loom))]
fn allocate_slots(capacity: usize) -> Result<Box<[Slot]>, AllocFailed> {
    let layout = std::alloc::Layout::array::<Slot>(capacity).map_err(|_| AllocFailed)?;
    // SAFETY: `layout` has a non-zero size (capacity >= MIN_CAPACITY > 0).
    let memory = unsafe { std::alloc::alloc_zeroed(layout) } as *mut Slot;
    if memory.is_null() {
        return Err(AllocFailed);
    }
    huge_pages::advise(memory.cast(), layout.size());
    // SAFETY: `memory` holds `capacity` slots laid out as an array; all-zero bytes are valid
    // `AtomicU64`s; the global allocator's block matches the layout `Box` will free it with.
    Ok(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(memory, capacity)) })
}

/// Lookups hit a random slot of a possibly huge array, so with 4 KiB pages nearly every lookup
/// of a large map also misses the TLB (a page walk, doubly expensive under virtualisation).
/// Asking for transparent huge pages on the array makes those walks rare.
#[cfg(all(target_os = "linux", not(loom), not(miri)))]
mod huge_pages {
    const HUGE_PAGE: usize = 2 << 20;

    /// Advises the kernel to back the 2 MiB-aligned part of `[start, start + len)` with huge
    /// pages. Only a hint: failure (THP disabled, old kernel) changes nothing.
    pub(super) fn advise(start: *mut u8, len: usize) {
        let first = (start as usize).next_multiple_of(HUGE_PAGE);
        let end = (start as usize + len) / HUGE_PAGE * HUGE_PAGE;
        if end > first {
            // SAFETY: the range lies inside an allocation we own; MADV_HUGEPAGE only changes
            // how the kernel backs it, never its contents or validity.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
}

#[cfg(all(not(loom), not(all(target_os = "linux", not(miri)))))]
mod huge_pages {
    pub(super) fn advise(_start: *mut u8, _len: usize) {}
}

/// Loom's atomics carry model state, so they must be constructed.
#[cfg(loom)]
fn allocate_slots(capacity: usize) -> Result<Box<[Slot]>, AllocFailed> {
    Ok((0..capacity)
        .map(|_| Slot {
            key: AtomicU64::new(0),
            value: AtomicU64::new(0),
        })
        .collect())
}

/// Frees a table and the boxes it owns. A table owns the key of every claimed slot whose value
/// is not `MOVED`, and every boxed value still in it.
///
/// # Safety
/// No thread can reach `table` any more, its slots were written by a map with these `K`, `V`,
/// and the boxes it owns are freed nowhere else.
pub(super) unsafe fn free_table<K: 'static, V: 'static>(table: *mut ()) {
    // SAFETY: the caller passes a table it exclusively owns, allocated by `Table::allocate`.
    let table = unsafe { Box::from_raw(table as *mut Table) };
    let boxed_keys = word::Codec::<K>::may_box();
    let boxed_values = word::Codec::<V>::may_box();
    if !boxed_keys && !boxed_values || !table.holds_boxes.load(Ordering::Relaxed) {
        return;
    }
    for slot in table.slots.iter() {
        let key = slot.key.load(Ordering::Relaxed);
        let value = slot.value.load(Ordering::Relaxed);
        if !word::is_key(key) {
            continue;
        }
        if boxed_keys && !word::is_inline(key) && value != MOVED {
            // SAFETY: the table owns this key (its value is not MOVED) and nobody else frees it.
            drop(unsafe { word::unbox::<K>(key) });
        }
        if boxed_values && word::is_value(value) && !word::is_inline(value) {
            // SAFETY: a boxed value still in the table belongs to it.
            drop(unsafe { word::unbox::<V>(value) });
        }
    }
}
