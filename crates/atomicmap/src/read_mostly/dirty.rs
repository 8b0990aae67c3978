//! Where keys live: the read map, the dirty map, the mutex, misses and promotion (the parent
//! module's "Layout" and "Misses and promotion"). Values are the `entry` module's business;
//! this one decides which entry an operation works on.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::mem;
use std::ptr;
use std::sync::Arc;

use super::entry::{self, Entry, NewValue};
use crate::error::CapacityError;
use crate::reclaim::{self, Collector, Guard};
use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering};

/// The keys of a read or dirty map.
pub(super) type Entries<K, V, S> = HashMap<K, Arc<Entry<V>>, S>;

/// An entry found by a lookup: borrowed from a pinned read map, or an `Arc` taken from the
/// dirty map so that it outlives the mutex.
pub(super) type FoundEntry<'g, V> = Cow<'g, Arc<Entry<V>>>;

/// One published read map (Go's `readOnly`).
pub(super) struct ReadOnly<K, V, S> {
    /// Shared with the read map this one replaced when only `amended` changed.
    pub(super) entries: Arc<Entries<K, V, S>>,
    /// Whether the dirty map holds keys that `entries` lacks.
    pub(super) amended: bool,
    /// Epoch at which this read map was allocated, for the collector.
    birth: u64,
}

/// The part of the map that the mutex guards.
pub(super) struct Locked<K, V, S> {
    /// Go's `dirty`; `None` is Go's `nil` (right after a promotion).
    dirty: Option<Entries<K, V, S>>,
    /// The table `with_capacity` allocated, which the first dirty map takes over.
    presized: Option<Entries<K, V, S>>,
    /// Go's `misses`: slow-path lookups since the last promotion.
    misses: usize,
    /// Snapshots taken so far: the version of the latest one.
    snapshots: u64,
}

/// Where [`ReadDirty::entry_for_store`] found the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FoundIn {
    /// The read map (and the dirty map, if there is one).
    ReadMap,
    /// Only the dirty map.
    DirtyMap,
    /// Nowhere: the entry is new (and nil).
    Neither,
}

/// Counters of a [`ReadMostlyMap`](super::ReadMostlyMap), read without the mutex. Each field
/// is exact at some moment during the call; the fields are not one atomic snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadMostlyStats {
    /// Go's `misses`: slow-path lookups counted since the last promotion.
    pub misses: usize,
    /// How many times the dirty map became the read map (including by `range`).
    pub promotions: u64,
    /// Go's `len(dirty)`; 0 when there is no dirty map.
    pub dirty_len: usize,
    /// Whether a dirty map exists (Go: `dirty != nil`).
    pub has_dirty: bool,
    /// Go's `len(read.m)`: keys in the read map, including deleted and expunged entries.
    pub read_len: usize,
    /// Go's `read.amended`.
    pub amended: bool,
}

/// The read map and the dirty map, with the mutex, the misses that decide when one becomes
/// the other, and the collector that frees replaced read maps and values.
pub(super) struct ReadDirty<K, V, S> {
    /// The current [`ReadOnly`]; replaced only with `locked` held.
    read: AtomicPtr<ReadOnly<K, V, S>>,
    /// Go's `mu` with the fields it guards.
    locked: Mutex<Locked<K, V, S>>,
    /// Mirrors of locked state for `stats`; written only with the mutex.
    misses: AtomicUsize,
    dirty_len: AtomicUsize,
    has_dirty: AtomicUsize,
    promotions: AtomicU64,
    hasher: S,
    /// The capacity every dirty map is built with at least (`with_capacity`).
    dirty_capacity: usize,
    /// Frees old read maps and unlinked values once no reader can hold them.
    collector: Collector,
}

/// Whether a std `HashMap` of `capacity` entries of type `T` has a size that an allocation can
/// describe, counted as std lays the table out (at most 7/8 full, a power of two of buckets,
/// one control byte per bucket plus a group of 16). Other failures to reserve are the
/// allocator's.
fn table_size_fits<T>(capacity: usize) -> bool {
    const GROUP_WIDTH: usize = 16;
    capacity
        .checked_mul(8)
        .map(|scaled| scaled / 7)
        .and_then(usize::checked_next_power_of_two)
        .and_then(|buckets| buckets.checked_mul(mem::size_of::<T>() + 1))
        .and_then(|bytes| bytes.checked_add(GROUP_WIDTH))
        .is_some_and(|bytes| bytes <= isize::MAX as usize)
}

impl<K, V, S> ReadDirty<K, V, S> {
    /// An empty map whose dirty maps are built with the room they need, and no more.
    pub(super) fn new(hasher: S) -> Self
    where
        S: Clone,
    {
        let collector = Collector::new();
        let empty = ReadOnly {
            entries: Arc::new(HashMap::with_hasher(hasher.clone())),
            amended: false,
            birth: collector.birth_epoch(&collector.enter()),
        };
        ReadDirty {
            read: AtomicPtr::new(Box::into_raw(Box::new(empty))),
            locked: Mutex::new(Locked {
                dirty: None,
                presized: None,
                misses: 0,
                snapshots: 0,
            }),
            misses: AtomicUsize::new(0),
            dirty_len: AtomicUsize::new(0),
            has_dirty: AtomicUsize::new(0),
            promotions: AtomicU64::new(0),
            hasher,
            dirty_capacity: 0,
            collector,
        }
    }

    pub(super) fn hasher(&self) -> &S {
        &self.hasher
    }

    /// Pins the calling thread; everything borrowed from the maps is valid until it drops.
    pub(super) fn enter(&self) -> Guard<'_> {
        self.collector.enter()
    }

    /// Boxes `value` for publication by a thread pinned with `guard`.
    pub(super) fn new_value(&self, value: V, guard: &Guard<'_>) -> NewValue<V> {
        NewValue::new(value, &self.collector, guard)
    }

    /// The current read map, valid while `guard` is held.
    pub(super) fn read_only<'g>(&'g self, guard: &'g Guard<'_>) -> &'g ReadOnly<K, V, S> {
        let current = guard.protect(|| self.read.load(Ordering::Acquire));
        // SAFETY: the read pointer is never null (set in `new`, replaced only by boxes), and a
        // pointer loaded through `guard.protect` stays allocated until `guard` drops.
        unsafe { &*current }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Locked<K, V, S>> {
        // A panic in a user's `Hash`, `Eq` or `Clone` with the mutex held leaves both maps
        // consistent (every change is ordered so that an unwind leaves it undone or whole),
        // so the map stays usable.
        self.locked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes `entries` as the read map; `_locked` proves the mutex is held, `current` is
    /// the read map this replaces (loaded through `guard`).
    fn publish_read(
        &self,
        _locked: &mut Locked<K, V, S>,
        current: &ReadOnly<K, V, S>,
        entries: Arc<Entries<K, V, S>>,
        amended: bool,
        guard: &Guard<'_>,
    ) {
        let birth = self.collector.birth_epoch(guard);
        let next = Box::into_raw(Box::new(ReadOnly {
            entries,
            amended,
            birth,
        }));
        let replaced = self.read.swap(next, Ordering::AcqRel);
        debug_assert!(ptr::eq(replaced, current));
        // SAFETY: only mutex holders swap the read pointer, so `replaced` is `current`, which
        // the caller loaded through `guard`; the swap unlinked it, it was born at
        // `current.birth`, and it is a box.
        unsafe {
            guard.retire(
                replaced.cast(),
                current.birth,
                reclaim::free_box::<ReadOnly<K, V, S>>,
            )
        };
    }

    /// Mirrors the locked counters for `stats`.
    fn mirror_counters(&self, locked: &Locked<K, V, S>) {
        self.misses.store(locked.misses, Ordering::Relaxed);
        self.dirty_len.store(
            locked.dirty.as_ref().map_or(0, HashMap::len),
            Ordering::Relaxed,
        );
        self.has_dirty
            .store(usize::from(locked.dirty.is_some()), Ordering::Relaxed);
    }

    /// The counters that drive promotion.
    pub(super) fn stats(&self) -> ReadMostlyStats {
        let guard = self.enter();
        let read = self.read_only(&guard);
        ReadMostlyStats {
            misses: self.misses.load(Ordering::Relaxed),
            promotions: self.promotions.load(Ordering::Relaxed),
            dirty_len: self.dirty_len.load(Ordering::Relaxed),
            has_dirty: self.has_dirty.load(Ordering::Relaxed) != 0,
            read_len: read.entries.len(),
            amended: read.amended,
        }
    }

    /// How many keys hold a value: those of the dirty map if the read map is amended (it
    /// then holds every key that can hold one), else those of the read map. Takes the mutex
    /// only when the read map is amended.
    pub(super) fn count_values(&self, guard: &Guard<'_>) -> usize {
        let count = |entries: &Entries<K, V, S>| {
            entries
                .values()
                .filter(|entry| entry.load(guard).is_some())
                .count()
        };
        let read = self.read_only(guard);
        if !read.amended {
            return count(&read.entries);
        }
        let locked = self.lock();
        let read = self.read_only(guard);
        match locked.dirty.as_ref() {
            Some(dirty) if read.amended => count(dirty),
            _ => count(&read.entries),
        }
    }
}

impl<K, V, S: Clone> ReadDirty<K, V, S> {
    /// Go's `missLocked`: counts a miss and promotes once `misses >= len(dirty)`.
    pub(super) fn record_miss(&self, locked: &mut Locked<K, V, S>, guard: &Guard<'_>) {
        locked.misses += 1;
        if locked.misses < locked.dirty.as_ref().map_or(0, HashMap::len) {
            self.misses.store(locked.misses, Ordering::Relaxed);
            return;
        }
        self.promote(locked, guard);
    }

    /// The dirty map becomes the read map as is; the dirty map is gone and misses restart.
    fn promote(&self, locked: &mut Locked<K, V, S>, guard: &Guard<'_>) {
        let dirty = locked
            .dirty
            .take()
            .unwrap_or_else(|| HashMap::with_hasher(self.hasher.clone()));
        let current = self.read_only(guard);
        self.publish_read(locked, current, Arc::new(dirty), false, guard);
        locked.misses = 0;
        self.promotions.fetch_add(1, Ordering::Relaxed);
        self.mirror_counters(locked);
    }

    /// Go's `Range` prologue: an amended read map lacks keys, so promote before iterating.
    pub(super) fn promote_if_amended(&self, guard: &Guard<'_>) {
        if self.read_only(guard).amended {
            let mut locked = self.lock();
            if self.read_only(guard).amended {
                self.promote(&mut locked, guard);
            }
        }
    }

    /// The map's contents at one instant (the parent module's "Snapshots: frozen entries"):
    /// with the mutex held, promotes an amended read map, so that it holds every key and no
    /// key can be added, then freezes and thaws every entry. Returns the read map's entries,
    /// the value each one held at that instant (in the same order), and the number of
    /// snapshots taken so far (the snapshot's version).
    pub(super) fn freeze_every_key<'g>(
        &'g self,
        guard: &'g Guard<'_>,
    ) -> (&'g Entries<K, V, S>, Vec<Option<&'g V>>, u64) {
        let mut locked = self.lock();
        if self.read_only(guard).amended {
            self.promote(&mut locked, guard);
        }
        let entries = &self.read_only(guard).entries;
        // SAFETY: we hold the mutex.
        let values = unsafe { entry::frozen_values(entries.values().map(|entry| &**entry), guard) };
        locked.snapshots += 1;
        (entries, values, locked.snapshots)
    }

    /// Go's `Clear` (Go 1.23): publishes an empty read map and empties the dirty map.
    pub(super) fn clear(&self, guard: &Guard<'_>) {
        let read = self.read_only(guard);
        if read.entries.is_empty() && !read.amended {
            return;
        }
        let mut locked = self.lock();
        let read = self.read_only(guard);
        if !read.entries.is_empty() || read.amended {
            let empty = Arc::new(HashMap::with_hasher(self.hasher.clone()));
            self.publish_read(&mut locked, read, empty, false, guard);
        }
        if let Some(dirty) = locked.dirty.as_mut() {
            dirty.clear();
        }
        locked.misses = 0;
        self.mirror_counters(&locked);
    }
}

impl<K: Hash + Eq, V, S: BuildHasher + Clone> ReadDirty<K, V, S> {
    /// Makes every dirty map hold `capacity` entries without growing, and allocates the first
    /// one's table now, so that an impossible capacity fails here rather than at a store.
    pub(super) fn presize(&mut self, capacity: usize) -> Result<(), CapacityError> {
        if !table_size_fits::<(K, Arc<Entry<V>>)>(capacity) {
            return Err(CapacityError::Overflow);
        }
        let mut table = HashMap::with_hasher(self.hasher.clone());
        table
            .try_reserve(capacity)
            .map_err(|_| CapacityError::AllocationFailed)?;
        self.lock().presized = Some(table);
        self.dirty_capacity = capacity;
        Ok(())
    }
}

impl<K, V, S> ReadDirty<K, V, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher + Clone,
{
    /// Go's `dirtyLocked`: builds the dirty map from the read map if there is none, leaving
    /// out (and expunging) deleted entries. An unwind (a key's `Clone` or `Hash`) leaves no
    /// dirty map; the entries it expunged meanwhile are out of the dirty map, as expunged
    /// entries must be.
    fn ensure_dirty<'l>(
        &self,
        locked: &'l mut Locked<K, V, S>,
        read: &ReadOnly<K, V, S>,
    ) -> &'l mut Entries<K, V, S> {
        locked.dirty.get_or_insert_with(|| {
            let mut dirty = locked
                .presized
                .take()
                .unwrap_or_else(|| HashMap::with_hasher(self.hasher.clone()));
            dirty.reserve(read.entries.len().max(self.dirty_capacity));
            for (key, entry) in read.entries.iter() {
                if !entry.try_expunge_locked() {
                    dirty.insert(key.clone(), Arc::clone(entry));
                }
            }
            dirty
        })
    }

    /// The dirty map's entry for `key`, if any; with the mutex held.
    pub(super) fn dirty_entry<Q>(&self, locked: &Locked<K, V, S>, key: &Q) -> Option<Arc<Entry<V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        locked
            .dirty
            .as_ref()
            .and_then(|dirty| dirty.get(key))
            .map(Arc::clone)
    }

    /// Finds `key` for an operation that does not add keys (`Load`, `LoadAndDelete`,
    /// `CompareAndDelete`), taking the mutex and counting a miss when the read map lacks it
    /// and is amended. With `remove_from_dirty` the key also leaves the dirty map (Go's
    /// `LoadAndDelete`).
    pub(super) fn find_counting_miss<'g, Q>(
        &'g self,
        key: &Q,
        remove_from_dirty: bool,
        guard: &'g Guard<'_>,
    ) -> Option<FoundEntry<'g, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let read = self.read_only(guard);
        if let Some(entry) = read.entries.get(key) {
            return Some(Cow::Borrowed(entry));
        }
        if !read.amended {
            return None;
        }
        let mut locked = self.lock();
        let read = self.read_only(guard);
        if let Some(entry) = read.entries.get(key) {
            return Some(Cow::Borrowed(entry));
        }
        if !read.amended {
            return None;
        }
        let found = if remove_from_dirty {
            // The miss counted below keeps the dirty map's removed keys fewer than its present
            // ones, so std never rehashes it in place, which would drop keys on a panicking
            // `Hash` (parent module docs, "Panics in user code").
            locked.dirty.as_mut().and_then(|dirty| dirty.remove(key))
        } else {
            self.dirty_entry(&locked, key)
        };
        // Found or not, this key takes the slow path until the next promotion.
        self.record_miss(&mut locked, guard);
        self.mirror_counters(&locked);
        found.map(Cow::Owned)
    }

    /// Go's locked store path, the one way a store that the read map could not take lands
    /// (`Store`/`Swap` and `LoadOrStore`). With the mutex held, returns the entry that a store
    /// to `key` must write, which is not expunged and which the next promotion keeps:
    /// * a key of the read map: its entry, put back into the dirty map first if it was
    ///   expunged (so that the store is not lost when the dirty map is promoted);
    /// * a key only of the dirty map: its entry;
    /// * a new key: a new, nil entry in the dirty map; if it is the first new key since a
    ///   promotion, the dirty map is rebuilt from the read map and the read map is marked
    ///   amended first.
    ///
    /// A panic in the key's `Hash`, `Eq` or `Clone` leaves both maps as they were, except
    /// possibly for a rebuilt dirty map or an amended read map, which are consistent.
    pub(super) fn entry_for_store<'g>(
        &'g self,
        locked: &mut Locked<K, V, S>,
        key: K,
        guard: &'g Guard<'_>,
    ) -> (FoundEntry<'g, V>, FoundIn) {
        let read = self.read_only(guard);
        let found = if let Some(entry) = read.entries.get(&key) {
            if entry.is_expunged_locked() {
                // Expunged means left out of the dirty map, which therefore exists. Back into
                // the dirty map before it can hold a value: an unwind in between leaves it
                // expunged.
                self.ensure_dirty(locked, read)
                    .insert(key, Arc::clone(entry));
                entry.unexpunge_locked();
            }
            (Cow::Borrowed(entry), FoundIn::ReadMap)
        } else if let Some(entry) = self.dirty_entry(locked, &key) {
            (Cow::Owned(entry), FoundIn::DirtyMap)
        } else {
            if !read.amended {
                // The first new key since the last promotion: rebuild the dirty map and tell
                // readers that the read map is incomplete.
                self.ensure_dirty(locked, read);
                self.publish_read(locked, read, Arc::clone(&read.entries), true, guard);
            }
            let entry = Arc::new(Entry::nil());
            self.ensure_dirty(locked, read)
                .insert(key, Arc::clone(&entry));
            (Cow::Owned(entry), FoundIn::Neither)
        };
        self.mirror_counters(locked);
        found
    }
}

impl<K, V, S> Drop for ReadDirty<K, V, S> {
    fn drop(&mut self) {
        let current = self.read.load(Ordering::Acquire);
        // SAFETY: `&mut self`: no reader is pinned, and the current read map was never
        // retired, so this is its only owner. Dropping it releases the entries' `Arc`s; the
        // collector (dropped after this) frees everything retired.
        drop(unsafe { Box::from_raw(current) });
    }
}

#[cfg(test)]
mod tests {
    use super::super::ReadMostlyMap;
    use crate::CapacityError;

    /// A table that fits in an `isize` but in no address space: the allocator refuses it at
    /// construction, where it used to abort the process at the first store. (A unit test so
    /// that it stays out of the ThreadSanitizer run, whose allocator aborts instead.)
    #[test]
    #[cfg_attr(miri, ignore = "Miri stops at an allocation this large")]
    fn an_allocation_the_allocator_refuses_is_reported_at_construction() {
        assert_eq!(
            ReadMostlyMap::<u64, u64>::try_with_capacity(1 << 52).err(),
            Some(CapacityError::AllocationFailed)
        );
    }

    /// `with_capacity` presizes every dirty map and changes nothing else: the same operations
    /// leave a presized map and a plain one with the same counters and contents.
    #[test]
    fn with_capacity_presizes_dirty_maps_and_changes_no_behaviour() {
        let presized: ReadMostlyMap<u32, u32> = ReadMostlyMap::with_capacity(1_000);
        let plain: ReadMostlyMap<u32, u32> = ReadMostlyMap::new();
        assert!(
            !presized.stats().has_dirty,
            "no dirty map before the first new key"
        );
        for map in [&presized, &plain] {
            map.store(1, 10);
            map.store(2, 20);
            for _ in 0..3 {
                assert_eq!(map.load(&7), None);
            }
            map.delete(&1);
            map.store(3, 30);
        }
        assert_eq!(presized.stats(), plain.stats());
        let dirty_capacity = |map: &ReadMostlyMap<u32, u32>| {
            map.maps
                .lock()
                .dirty
                .as_ref()
                .map_or(0, |dirty| dirty.capacity())
        };
        assert!(dirty_capacity(&presized) >= 1_000);
        assert!(dirty_capacity(&plain) < 1_000);
        for key in 0..5 {
            assert_eq!(presized.load(&key), plain.load(&key), "key {key}");
        }
    }
}
