//! The lock-free protocol of [`AtomicMap`](super::AtomicMap): slots, probing, and the one CAS
//! that commits every update.
//!
//! # Layout
//! The map points (`root`) to a [`Table`]: a power-of-two array of slots, each a key word and a
//! value word (see `word` for what a word can hold). Keys are found by linear probing from
//! `hash & mask`.
//!
//! # Slot states and who moves them
//! ```text
//!  key word:    EMPTY ──claim (writer inserting a new key)──▶ key      (fixed for the table's life)
//!               EMPTY ──seal (resize helper, or a writer diverted by a resize)──▶ SEALED
//!  value word:  ABSENT ◀──commit──▶ value ◀──commit──▶ value          (writers: insert/update/remove)
//!               ABSENT / value ──resize helper──▶ MOVED or DROPPED     (final)
//!               DROPPED ──the writer whose key box it is──▶ MOVED      (re-homing, see `resize`)
//! ```
//! * A key word changes at most once, from `EMPTY`. So a slot, once it holds key `k`, holds `k`
//!   until the table is discarded, and a probe for `k` that meets `EMPTY` has proved `k` is not
//!   in this table (keys are claimed at the first `EMPTY` of their probe sequence, and nothing
//!   ever empties a slot).
//! * **Every insert, update and remove is committed by one CAS on a value word.** Inserting a new
//!   key first claims a slot (a CAS on the key word), but the key is absent until the value CAS:
//!   a claimed key with value `ABSENT` reads as missing. A remove CASes the value to `ABSENT`
//!   and leaves the key: a *tombstone*. Re-inserting the same key reuses its slot; tombstones of
//!   other keys are dropped by the next resize, which copies only live entries (so a table
//!   emptied by removes compacts itself, see `resize`).
//! * `MOVED`, `DROPPED` and `SEALED` mean "look in the next table" and are final for this table.
//!
//! # Linearization points
//! * `get`: the load of the value word (a value, or `ABSENT`), or the load of `EMPTY` that ends
//!   the probe: at that instant the key had no value in the map.
//! * insert/update/remove: the successful value CAS; a remove or update of a missing key: the
//!   load that proved it missing, as for `get`.
//!
//! # Orderings
//! * Claims and commits are `AcqRel` CASes: release publishes a boxed key or value (and its
//!   birth epoch) before its word, acquire lets a failing writer read the winner's box.
//! * Loads of key and value words are `Acquire`, pairing with those releases. No reader ever
//!   writes shared memory except its own reclamation record, so reads do no read-modify-write
//!   and take no lock; their only other cost is the pin (see `reclaim`).
//! * A word is compared by value, so ABA on a value word cannot corrupt the map: a CAS that
//!   succeeds against an old word does so because the slot holds that exact word, and a boxed
//!   word cannot be freed and its address reused while any thread that read it is pinned
//!   (every load of a pointer word goes through `Guard::protect`).
//!
//! # Progress
//! Readers never wait: a lookup probes at most every slot of each table it visits, and the
//! chain of tables is finite. Writers are lock-free: a failed CAS means another writer
//! succeeded. Resizes are cooperative and bounded per operation (see `resize`).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::ptr;

use super::pending::PendingKey;
use super::table::{free_table, AllocFailed, Slot, Table};
use super::word::{self, Codec, ABSENT, DROPPED, EMPTY, MOVED, SEALED};
use crate::reclaim::{free_box, Collector, Guard};
use crate::sync::{AtomicPtr, Ordering};

/// The map's shared state; every method takes a guard from `collector`.
pub(super) struct RawMap<K: 'static, V: 'static, S> {
    /// The current table. Replaced only when a resize of that table finishes.
    root: AtomicPtr<Table>,
    pub(super) hasher: S,
    pub(super) collector: Collector,
    /// The map owns keys and values of these types (for drop check and auto traits).
    _owns: PhantomData<(K, V)>,
}

/// Where a write for a key should happen.
pub(super) enum Located<'g> {
    /// The slot holding the key (claimed by this call, or earlier).
    Here(&'g Slot),
    /// The key is not in this table; continue in this (next) table.
    Next(&'g Table),
    /// The key is absent and the caller has no key to insert.
    Absent,
}

/// The key a write is for: borrowed (the write cannot insert it) or owned (it can).
pub(super) enum Query<'q, 'c, K: 'static, Q: ?Sized> {
    Borrowed(&'q Q),
    /// An owned key stored inline: its word is the claim, and equal words are equal keys.
    Inline(u64),
    Owned(&'q mut PendingKey<'c, K>),
}

/// The outcome of a write.
pub(super) struct Written {
    /// The value word the write replaced (or found, if it decided not to write).
    pub(super) previous: u64,
    /// Whether the write committed.
    pub(super) committed: bool,
}

impl<K, V, S> RawMap<K, V, S>
where
    K: Hash + Eq + 'static,
    V: 'static,
    S: BuildHasher,
{
    pub(super) fn new(capacity: usize, hasher: S) -> Result<Self, AllocFailed> {
        let collector = Collector::new();
        let table = {
            let guard = collector.enter();
            Table::allocate(capacity, collector.birth_epoch(&guard), 0, 0, None)?
        };
        Ok(RawMap {
            root: AtomicPtr::new(Box::into_raw(table)),
            hasher,
            collector,
            _owns: PhantomData,
        })
    }

    #[inline]
    pub(super) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The current table.
    #[inline]
    pub(super) fn root<'g>(&self, guard: &'g Guard<'_>) -> &'g Table {
        let table = guard.protect(|| self.root.load(Ordering::Acquire));
        // SAFETY: the root is never null, and `protect` keeps the table allocated while `guard`
        // lives (it is retired only after being unlinked from `root`).
        unsafe { &*table }
    }

    /// The table to continue in after `table` sent us on (`SEALED`, `MOVED`, `DROPPED`, or no
    /// free slot): its successor, or the root if the root has moved past both.
    ///
    /// A successor link is never cleared, so a thread still holding an old, retired `table`
    /// could follow it to a successor that was retired in turn, and freed by a reclaimer that
    /// scanned this thread's reservation before it covered the successor's birth: the link is
    /// not the location the successor was unlinked from, so the reclamation handshake says
    /// nothing about it. The root is. Loading the root after protecting the link closes the
    /// gap: if the root is still `table` or the successor, the successor had not been unlinked
    /// when our reservation (stored before that load) covered it, so the reclaimer sees the
    /// reservation; otherwise we continue from the root, which reaches every entry.
    #[inline]
    pub(super) fn next_table<'g>(&self, guard: &'g Guard<'_>, table: &Table) -> &'g Table {
        let next = self.successor(guard, table);
        let root = self.root(guard);
        if ptr::eq(root, table) || ptr::eq(root, next) {
            next
        } else {
            root
        }
    }

    /// The successor of a resizing `table` that is still the root or is being migrated into the
    /// root: such a successor is not retired (a table is retired only once the root moves past
    /// it), so protecting the link suffices. Only called after seeing `next` set.
    #[inline]
    pub(super) fn successor<'g>(&self, guard: &'g Guard<'_>, table: &Table) -> &'g Table {
        let next = guard.protect(|| table.next());
        debug_assert!(!next.is_null());
        // SAFETY: non-null once a resize started; protected as in `root`, and not retired
        // while our reservation can miss it (see `next_table` for callers holding an old table).
        unsafe { &*next }
    }

    /// Swings the root from a fully migrated table to its successor; returns the old root's
    /// pointer (with the provenance of its allocation, for retiring it) if the swing happened.
    pub(super) fn replace_root(&self, old: &Table) -> Option<*mut Table> {
        self.root
            .compare_exchange(
                ptr::from_ref(old).cast_mut(),
                old.next(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()
    }

    /// Loads a key word; a box address is loaded again under protection before it is returned.
    /// Inline words and sentinels need none, so maps of inline keys never pay for it.
    #[inline]
    pub(super) fn load_key(&self, guard: &Guard<'_>, slot: &Slot) -> u64 {
        let key = slot.key.load(Ordering::Acquire);
        if Codec::<K>::may_box() && word::is_box(key) {
            guard.protect(|| slot.key.load(Ordering::Acquire))
        } else {
            key
        }
    }

    /// Loads a value word, protecting a box address as [`load_key`](Self::load_key) does.
    #[inline]
    pub(super) fn load_value(&self, guard: &Guard<'_>, slot: &Slot) -> u64 {
        let value = slot.value.load(Ordering::Acquire);
        if Codec::<V>::may_box() && word::is_box(value) {
            guard.protect(|| slot.value.load(Ordering::Acquire))
        } else {
            value
        }
    }

    /// Whether key word `key` (an item, protected by the caller's guard) is `query`.
    #[inline]
    pub(super) fn key_matches<Q>(&self, key: u64, hash: u64, query: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if word::is_inline(key) {
            Codec::<K>::from_inline(key).borrow() == query
        } else {
            // SAFETY: a key item that is not inline is a box, kept alive by the caller's guard.
            let boxed = unsafe { word::boxed::<K>(key) };
            boxed.hash == hash && boxed.item.borrow() == query
        }
    }

    /// The hash of the key behind key word `key` (protected by the caller's guard).
    pub(super) fn key_hash(&self, key: u64) -> u64 {
        if word::is_inline(key) {
            self.hash(&Codec::<K>::from_inline(key))
        } else {
            // SAFETY: as in `key_matches`.
            unsafe { word::boxed::<K>(key) }.hash
        }
    }

    /// The value word of `query`, or `None` if it has no value. Never writes.
    #[inline]
    pub(super) fn find<Q>(&self, guard: &Guard<'_>, hash: u64, query: &Q) -> Option<u64>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut table = self.root(guard);
        'tables: loop {
            let mut index = hash as usize & table.mask;
            for _ in 0..table.capacity() {
                let slot = table.slot(index);
                let key = self.load_key(guard, slot);
                if key == EMPTY {
                    return None;
                }
                if key == SEALED {
                    table = self.next_table(guard, table);
                    continue 'tables;
                }
                if self.key_matches(key, hash, query) {
                    let value = self.load_value(guard, slot);
                    if value == MOVED || value == DROPPED {
                        table = self.next_table(guard, table);
                        continue 'tables;
                    }
                    return (value != ABSENT).then_some(value);
                }
                index = (index + 1) & table.mask;
            }
            // Every slot holds another key: `query` can only be in a successor.
            if table.next().is_null() {
                return None;
            }
            table = self.next_table(guard, table);
        }
    }

    /// Commits `decide(current)` for the key `query` with one value CAS, retrying on races.
    ///
    /// `decide` sees the current value word (`ABSENT` if the key has none) and returns the word
    /// to store, or `None` to leave it. It runs once per attempt. With `pending` (an owned key)
    /// a missing key is claimed first; without it, a missing key is reported as `ABSENT`
    /// without calling `decide`.
    pub(super) fn write<Q>(
        &self,
        guard: &Guard<'_>,
        hash: u64,
        mut query: Query<'_, '_, K, Q>,
        mut decide: impl FnMut(u64) -> Option<u64>,
    ) -> Written
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut table = self.root(guard);
        if !table.next().is_null() {
            self.help_resize(guard, table);
        }
        'tables: loop {
            let slot = match self.locate(guard, table, hash, &mut query) {
                Located::Here(slot) => slot,
                Located::Next(next) => {
                    self.before_diverting(guard, table, next);
                    table = next;
                    continue 'tables;
                }
                Located::Absent => {
                    return Written {
                        previous: ABSENT,
                        committed: false,
                    }
                }
            };
            let mut current = self.load_value(guard, slot);
            loop {
                if current == MOVED || current == DROPPED {
                    if let (DROPPED, Query::Owned(pending)) = (current, &mut query) {
                        pending.rehome_from(slot);
                    }
                    self.help_resize(guard, table);
                    let next = self.next_table(guard, table);
                    self.before_diverting(guard, table, next);
                    table = next;
                    continue 'tables;
                }
                let Some(new) = decide(current) else {
                    return Written {
                        previous: current,
                        committed: false,
                    };
                };
                match slot
                    .value
                    .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        self.committed(guard, current, new);
                        return Written {
                            previous: current,
                            committed: true,
                        };
                    }
                    Err(actual) => current = self.reload_after_failed_cas(guard, slot, actual),
                }
            }
        }
    }

    /// A failed CAS returns the word it saw; boxed words must be re-read under protection.
    #[inline]
    fn reload_after_failed_cas(&self, guard: &Guard<'_>, slot: &Slot, actual: u64) -> u64 {
        if Codec::<V>::may_box() && !word::is_inline(actual) {
            self.load_value(guard, slot)
        } else {
            actual
        }
    }

    /// Book-keeping after a value CAS from `previous` to `new`: the length, and the replaced
    /// box, which no reader can newly reach but current readers may still hold.
    fn committed(&self, guard: &Guard<'_>, previous: u64, new: u64) {
        match (previous == ABSENT, new == ABSENT) {
            (true, false) => guard.count_entries(1),
            (false, true) => guard.count_entries(-1),
            _ => {}
        }
        if previous != ABSENT && !word::is_inline(previous) {
            // SAFETY: `previous` is a boxed value this CAS unlinked, so it is retired exactly
            // once (by us); its birth was written before it was published.
            unsafe {
                let birth = word::boxed::<V>(previous).birth;
                guard.retire(
                    word::box_ptr::<V>(previous),
                    birth,
                    free_box::<word::Boxed<V>>,
                );
            }
        }
    }

    /// Finds the slot of `query` in `table` for a write, claiming one if the key is missing and
    /// the caller owns a key.
    fn locate<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        table: &'g Table,
        hash: u64,
        query: &mut Query<'_, '_, K, Q>,
    ) -> Located<'g>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut index = hash as usize & table.mask;
        let mut distance = 0;
        loop {
            if distance == table.capacity() {
                // Every slot holds another key.
                return match query {
                    Query::Owned(_) | Query::Inline(_) => self.overflow(guard, table),
                    Query::Borrowed(_) if table.next().is_null() => Located::Absent,
                    Query::Borrowed(_) => Located::Next(self.next_table(guard, table)),
                };
            }
            let slot = table.slot(index);
            let key = self.load_key(guard, slot);
            if key == EMPTY {
                let claim = match query {
                    Query::Borrowed(_) => return Located::Absent,
                    Query::Inline(word) => *word,
                    Query::Owned(pending) => pending.word(guard),
                };
                if !table.next().is_null() {
                    // A resize started: new keys go to the next table, but only once this
                    // slot is sealed, so no one can still claim the key here (see `resize`).
                    let _ = slot.key.compare_exchange(
                        EMPTY,
                        SEALED,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    continue;
                }
                let root = self.root(guard);
                if !ptr::eq(root, table) && !table.take_claim_budget() {
                    // `table` is the successor of a resize of `root` in flight, and the room
                    // left in it is reserved for keys still to be carried (see `resize`).
                    self.complete_resize(guard, root);
                    continue;
                }
                if distance >= super::resize::probe_limit(table)
                    && self.is_crowded(guard, table)
                    && self.resize_crowded(guard, table)
                {
                    // The resize started (or we helped it), so look at this slot again: now
                    // that the table has a successor it gets sealed, so lookups of our key,
                    // which will live in the successor, do not stop at it.
                    continue;
                }
                if slot
                    .key
                    .compare_exchange(EMPTY, claim, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    if let Query::Owned(pending) = query {
                        pending.published(claim);
                    }
                    return Located::Here(slot);
                }
                // Someone claimed or sealed this slot first: look at it again.
                continue;
            }
            if key == SEALED {
                return Located::Next(self.next_table(guard, table));
            }
            let matches = match query {
                Query::Borrowed(query) => self.key_matches(key, hash, *query),
                Query::Inline(word) => key == *word,
                Query::Owned(pending) => pending.matches(self, key),
            };
            if matches {
                return Located::Here(slot);
            }
            index = (index + 1) & table.mask;
            distance += 1;
        }
    }

    /// Number of keys with a value (each thread counts its `ABSENT` ↔ value commits in its
    /// reclamation record); exact when no write is in flight.
    pub(super) fn len(&self) -> usize {
        self.collector.entries().max(0) as usize
    }

    /// Visits every live entry reachable from the root at the time of each slot's load: the
    /// weakly consistent iteration of [`AtomicMap::iter`](super::AtomicMap::iter).
    ///
    /// A resize in flight when the walk starts is completed first (the walk costs a pass over
    /// the table anyway): keys inserted since it began live only in its successor, which a walk
    /// of the old table would not see. A resize that starts during the walk is followed through
    /// `MOVED` slots; keys inserted during the walk may or may not be visited.
    pub(super) fn for_each_entry(&self, guard: &Guard<'_>, mut visit: impl FnMut(u64, u64)) {
        let mut table = self.root(guard);
        while !table.next().is_null() {
            self.complete_resize(guard, table);
            table = self.root(guard);
        }
        self.for_each_in(guard, table, &mut visit);
    }

    fn for_each_in(&self, guard: &Guard<'_>, table: &Table, visit: &mut impl FnMut(u64, u64)) {
        for slot in table.slots.iter() {
            let key = self.load_key(guard, slot);
            if !word::is_key(key) {
                continue;
            }
            let value = self.load_value(guard, slot);
            if value == MOVED || value == DROPPED {
                // The entry lives on in the next table; find its current value there.
                let hash = self.key_hash(key);
                let mut next = self.next_table(guard, table);
                loop {
                    match self.find_word(guard, next, hash, key) {
                        WordSearch::Found(value) => {
                            visit(key, value);
                            break;
                        }
                        WordSearch::Missing => break,
                        WordSearch::Next => next = self.next_table(guard, next),
                    }
                }
            } else if value != ABSENT {
                visit(key, value);
            }
        }
    }

    /// Looks a key up in one table by its key word (or an equal boxed key).
    fn find_word(&self, guard: &Guard<'_>, table: &Table, hash: u64, key: u64) -> WordSearch {
        let mut index = hash as usize & table.mask;
        for _ in 0..table.capacity() {
            let slot = table.slot(index);
            let here = self.load_key(guard, slot);
            if here == EMPTY {
                return WordSearch::Missing;
            }
            if here == SEALED {
                return WordSearch::Next;
            }
            if self.same_key(here, key) {
                let value = self.load_value(guard, slot);
                return match value {
                    MOVED | DROPPED => WordSearch::Next,
                    ABSENT => WordSearch::Missing,
                    value => WordSearch::Found(value),
                };
            }
            index = (index + 1) & table.mask;
        }
        WordSearch::Missing
    }

    /// Whether two key words (items, protected) denote equal keys.
    pub(super) fn same_key(&self, a: u64, b: u64) -> bool {
        if a == b {
            return true;
        }
        if word::is_inline(a) || word::is_inline(b) {
            // One key has a single encoding, so distinct inline words are distinct keys.
            return false;
        }
        // SAFETY: both are protected boxed keys.
        let (a, b) = unsafe { (word::boxed::<K>(a), word::boxed::<K>(b)) };
        a.hash == b.hash && a.item == b.item
    }
}

enum WordSearch {
    Found(u64),
    Missing,
    Next,
}

impl<K: 'static, V: 'static, S> Drop for RawMap<K, V, S> {
    fn drop(&mut self) {
        let mut table = self.root.load(Ordering::Relaxed);
        while !table.is_null() {
            // SAFETY: `&mut self`: no operation is in flight, so the chain of tables from the
            // root (a resize may be half done) is owned by the map alone.
            let next = unsafe { &*table }.next();
            // SAFETY: as above; each table is freed once, with the map's key and value types.
            unsafe { free_table::<K, V>(table as *mut ()) };
            table = next;
        }
    }
}
