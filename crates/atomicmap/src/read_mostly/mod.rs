//! [`ReadMostlyMap`]: the design of Go's `sync.Map` (Go 1.9 to 1.23), ported rule for rule.
//!
//! # Go's names
//! The methods keep Go's vocabulary, in snake case: this map exists for code that wants
//! `sync.Map`'s semantics, and its names say which ones. The crate's shared names for the same
//! operations (`get`, `insert`, `remove`) are documentation aliases, so searching the docs for
//! them finds the method; operations Go does not have use the shared names.
//!
//! | Go            | `ReadMostlyMap`                        |
//! |---------------|----------------------------------------|
//! | `Load`        | [`load`](ReadMostlyMap::load) (and [`get_with`](ReadMostlyMap::get_with), [`contains_key`](ReadMostlyMap::contains_key)) |
//! | `Store`       | [`store`](ReadMostlyMap::store)        |
//! | `Swap`        | [`swap`](ReadMostlyMap::swap)          |
//! | `LoadOrStore` | [`load_or_store`](ReadMostlyMap::load_or_store) (and [`get_or_insert_with`](ReadMostlyMap::get_or_insert_with)) |
//! | `LoadAndDelete` | [`load_and_delete`](ReadMostlyMap::load_and_delete) |
//! | `Delete`      | [`delete`](ReadMostlyMap::delete)      |
//! | `CompareAndSwap` | [`compare_and_swap`](ReadMostlyMap::compare_and_swap) |
//! | `CompareAndDelete` | [`compare_and_delete`](ReadMostlyMap::compare_and_delete) |
//! | `Range`       | [`range`](ReadMostlyMap::range) (and [`retain`](ReadMostlyMap::retain)) |
//! | `Clear`       | [`clear`](ReadMostlyMap::clear)        |
//!
//! # Where the code is
//! * this module: the public operations, each a lookup in the maps followed by an entry
//!   operation;
//! * `dirty`: the read map, the dirty map, the mutex, misses and promotion, and the one
//!   locked path by which a store that the read map cannot take finds its entry;
//! * `entry`: the entry state machine below, and every dereference of a value pointer.
//!
//! `dirty` uses `entry`; neither uses this module.
//!
//! # Layout
//! * **read map**: an immutable `HashMap<K, Arc<Entry<V>>>` plus an `amended` flag, published
//!   through an atomic pointer. Readers find it without a lock. It is never changed in place:
//!   a writer that needs a different read map (promotion, setting `amended`, `clear`)
//!   publishes a new one and retires the old one to the map's collector.
//! * **dirty map**: a plain `HashMap<K, Arc<Entry<V>>>` behind the mutex. When it exists it
//!   holds every key of the read map that is not expunged, plus the keys stored since the last
//!   promotion. It may be absent (Go's `nil`): right after a promotion.
//! * **entry**: one atomic pointer per key, shared by both maps (`Arc`), so a value stored
//!   through the read map is at once visible through the dirty map.
//! * **misses**: under the mutex; how many operations had to take the mutex to find a key.
//!
//! # Entry states (the atomic pointer of `Entry`)
//! * a value: a boxed value, present in the map.
//! * *nil* (null): deleted. The key is still in the read map (and in the dirty map, if one
//!   exists), so a later store can revive it without the mutex.
//! * *expunged* (`expunged` sentinel): deleted, and left out of the dirty map when the dirty
//!   map was rebuilt. A store must not revive it without the mutex, because the key would then
//!   be present in the read map but lost at the next promotion.
//!
//! Transitions, and who performs them:
//! * value -> value, nil -> value, value -> nil: any thread, by CAS, without the mutex.
//! * nil -> expunged: only with the mutex, while rebuilding the dirty map from the read map.
//! * expunged -> nil: only with the mutex, immediately after putting the entry back into the
//!   dirty map (so a store to an expunged key lands in the dirty map, and a panic in between
//!   leaves the entry expunged and out of the dirty map, still consistent).
//!
//! Because the lock-free paths refuse to act on an expunged entry, an entry that is missing
//! from the dirty map never holds a value: promotion loses nothing.
//!
//! # Misses and promotion
//! A lookup that finds its key in the read map never counts anything. One that does not, and
//! finds the read map *amended* (the dirty map has keys the read map lacks), takes the mutex,
//! looks again, consults the dirty map, and counts a miss, whether or not the key was there
//! (`Load`, `LoadAndDelete`/`Delete`, `LoadOrStore` finding the key in the dirty map,
//! `CompareAndSwap` finding it in the dirty map, `CompareAndDelete`). When
//! `misses >= len(dirty)` the dirty map becomes the read map as is (no copy), the dirty map is
//! dropped and `misses = 0`. `Range` on an amended map promotes at once. When the read map is
//! not amended a failed lookup is final and counts nothing, so misses never accumulate while
//! there is no dirty map. The first store of a new key after a promotion rebuilds the dirty
//! map from the read map (copying keys, expunging deleted entries) and marks the read map
//! amended. A new key enters the dirty map with a nil entry, which the store then fills with
//! the same CAS as for an existing key, still under the mutex: so `Store`, `Swap` and
//! `LoadOrStore` share one locked path.
//!
//! # Snapshots: frozen entries
//! [`ReadMostlyMap::snapshot`] adds one entry state, *frozen*: the entry's pointer (value, nil
//! or expunged) with its low bit (`FROZEN`) set.
//! * any -> frozen and frozen -> the same pointer unfrozen: only the snapshot, with the mutex
//!   held throughout; it first promotes an amended read map, so no key can be added while it
//!   holds the mutex and the read map holds every key.
//! * Lock-free writers (`Store`/`Swap`, `LoadOrStore`, deletes, `CompareAndSwap`) never CAS a
//!   frozen pointer: they wait until it thaws. Holders of the mutex never see one.
//! * Readers see through the bit: a frozen entry still has its value.
//!
//! So once the last entry is frozen, nothing in the map can change until the thaw; that
//! instant is the snapshot's. Freezing is a CAS (`AcqRel`), so each entry's frozen pointer is
//! the latest in its modification order; the thaw is a `Release` store (nobody else writes a
//! frozen entry) that waiting writers read with `Acquire`.
//!
//! # Memory orderings, and why they suffice
//! * The read map pointer is stored with `Release` (only with the mutex) and loaded with
//!   `Acquire` through the collector, so a reader sees the fully built map it points to.
//! * Entry pointers change by CAS (`AcqRel`) and are loaded with `Acquire`: a reader that
//!   sees a boxed value sees its contents. All transitions of one entry are RMWs on one atomic,
//!   so they form a single modification order; the mutex orders the expunge/unexpunge
//!   transitions against the dirty map they keep consistent.
//! * Nothing here needs a store-to-load ordering: every decision is either a CAS on the entry
//!   or made with the mutex held.
//!
//! # Reclamation
//! Old read maps and replaced or deleted values are retired to the map's own
//! `Collector`; a pinned reader's references stay valid until it unpins. Every pointer that
//! is dereferenced was loaded through `Guard::protect`, including the expected value of
//! each CAS, so the CAS that unlinks a value can retire it; the one exception is a value
//! that this thread just published, whose birth its guard already covers. An entry that is
//! dropped (its key left both maps and the last read map holding it was freed) frees its
//! current value directly: no reader can reach it any more. So a borrowed value is valid
//! while both the guard and the entry it was read from are alive.
//!
//! # Panics in user code
//! A panic in a key's `Hash`, `Eq` or `Clone`, or a value's `Clone` or `PartialEq`, leaves
//! every key with its state from before or after the operation that panicked, and leaks
//! nothing:
//! * a value is boxed before the lookups that call user code, but until a CAS publishes it
//!   the box belongs to a `NewValue`, which frees it if a panic unwinds past it;
//! * with the mutex held, every change is ordered so that an unwind leaves it undone or whole
//!   (an expunged entry goes back into the dirty map *before* it is unexpunged), and a
//!   poisoned mutex is taken over as is.
//!
//! std's `HashMap` itself drops entries when a `Hash` panics while it rehashes in place (to
//! reuse the slots of removed keys). The dirty map never does so: std rehashes in place only
//! when removed keys outnumber present ones, and every removal from the dirty map counts a
//! miss, which promotes (and so drops) the dirty map before misses reach its length.
//!
//! # Consistency
//! Every single-key operation is linearizable. [`ReadMostlyMap::range`] is weakly consistent,
//! as in Go: it visits each key of one read map at most once and sees each value as of some
//! moment during the call; so is [`ReadMostlyMap::len`]. [`ReadMostlyMap::snapshot`] is the
//! map's contents at one instant, and so are the operations built on it, which Go does not
//! have: [`ReadMostlyMap::iter`] (and `for (k, v) in &map`), [`ReadMostlyMap::keys`],
//! [`ReadMostlyMap::values`], `clone` and `==` (each side's own instant: comparing two maps is
//! not atomic across both). A lazy walk of the live map, as `AtomicMap::iter` does, would be
//! `range`; its callback form is Go's, kept because the map is pinned while it runs.
//!
//! # Lookups by a borrowed form
//! Lookups take `Q` where `K: Borrow<Q>`, not the crate's [`Equivalent`](crate::Equivalent)
//! that the other maps accept: the read map is a std `HashMap<K, _>` searched without a lock
//! by its `get`, which only takes a `Borrow` form of its key. Searching it by `Equivalent`
//! would need the keys stored with their hashes (as `ShardedMap` does), a change to every
//! path of the protocol above.

mod dirty;
mod entry;

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};

use crate::error::CapacityError;
use crate::reclaim::Guard;
use crate::snapshot::MapSnapshot;
use crate::stats::MapStats;
// std's atomic even under loom: the snapshot counter orders nothing, so the models need not
// explore it.
use dirty::{FoundIn, ReadDirty};
use entry::LoadOrStore;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::hash::DefaultHashBuilder;
pub use dirty::ReadMostlyStats;

/// A concurrent map with the behaviour of Go's `sync.Map` (Go 1.9 to 1.23).
///
/// Best for keys written once and read many times, or for goroutine-style disjoint key sets:
/// lookups of keys present in the read map take no lock and perform no read-modify-write.
/// See the [module docs](self) for the protocol and for how Go's method names map to this
/// type's, and [`ReadMostlyMap::stats`] for the counters that drive it.
///
/// Keys are cloned when the dirty map is rebuilt from the read map, and values are cloned
/// out of the map by lookups.
///
/// ```
/// use atomicmap::ReadMostlyMap;
///
/// // A cache whose keys are written once and then read: Go's `sync.Map` use case.
/// let cache: ReadMostlyMap<String, u64> = ReadMostlyMap::new();
/// assert_eq!(cache.load_or_store("user:1".into(), 42), (42, false));
/// assert_eq!(cache.load_or_store("user:1".into(), 7), (42, true));
/// assert_eq!(cache.load("user:1"), Some(42));
/// assert!(cache.compare_and_swap("user:1", &42, 43));
/// assert_eq!(cache.load_and_delete("user:1"), Some(43));
/// assert_eq!(cache.len(), 0);
/// ```
pub struct ReadMostlyMap<K, V, S = DefaultHashBuilder> {
    maps: ReadDirty<K, V, S>,
    /// Frozen instants taken (by `snapshot` and what is built on it), for `map_stats`;
    /// relaxed, as it orders nothing.
    snapshots_taken: AtomicU64,
}

// SAFETY: the map owns its keys and values and hands out only clones or borrows bounded by a
// call. Values and keys may be dropped on any thread (by whichever thread reclaims them), and
// are read by several threads at once, hence `Send + Sync` on both; the hasher is shared.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Send + Sync> Send for ReadMostlyMap<K, V, S> {}
// SAFETY: as above.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Send + Sync> Sync for ReadMostlyMap<K, V, S> {}

impl<K, V> ReadMostlyMap<K, V> {
    /// An empty map with the default hasher.
    pub fn new() -> Self {
        Self::with_hasher(DefaultHashBuilder::default())
    }
}

impl<K: Hash + Eq, V> ReadMostlyMap<K, V> {
    /// An empty map whose dirty maps hold `capacity` entries without growing; see
    /// [`with_capacity_and_hasher`](Self::with_capacity_and_hasher).
    ///
    /// # Panics
    /// If `capacity` entries overflow or cannot be allocated; see
    /// [`try_with_capacity`](Self::try_with_capacity).
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, DefaultHashBuilder::default())
    }

    /// Like [`with_capacity`](Self::with_capacity), but reports an impossible capacity
    /// instead of panicking.
    pub fn try_with_capacity(capacity: usize) -> Result<Self, CapacityError> {
        Self::try_with_capacity_and_hasher(capacity, DefaultHashBuilder::default())
    }
}

impl<K, V, S: Default + Clone> Default for ReadMostlyMap<K, V, S> {
    fn default() -> Self {
        Self::with_hasher(S::default())
    }
}

impl<K, V, S: Clone> ReadMostlyMap<K, V, S> {
    /// An empty map that hashes with `hasher`.
    pub fn with_hasher(hasher: S) -> Self {
        ReadMostlyMap {
            maps: ReadDirty::new(hasher),
            snapshots_taken: AtomicU64::new(0),
        }
    }
}

impl<K: Hash + Eq, V, S: BuildHasher + Clone> ReadMostlyMap<K, V, S> {
    /// An empty map that hashes with `hasher` and builds every dirty map with room for at least
    /// `capacity` entries, so that the first `capacity` new keys are added without rehashing.
    /// The first dirty map's table is allocated now; otherwise nothing changes: as in Go,
    /// there is no dirty map until the first new key, and the read map is never allocated
    /// ahead (it is always a promoted dirty map).
    ///
    /// # Panics
    /// If `capacity` entries overflow or cannot be allocated; see
    /// [`try_with_capacity_and_hasher`](Self::try_with_capacity_and_hasher).
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        match Self::try_with_capacity_and_hasher(capacity, hasher) {
            Ok(map) => map,
            Err(error) => panic!("ReadMostlyMap::with_capacity({capacity}): {error}"),
        }
    }

    /// Like [`with_capacity_and_hasher`](Self::with_capacity_and_hasher), but reports an
    /// impossible capacity instead of panicking: [`CapacityError::Overflow`] when the table's
    /// size in bytes overflows, [`CapacityError::AllocationFailed`] when the allocator
    /// refuses it.
    pub fn try_with_capacity_and_hasher(capacity: usize, hasher: S) -> Result<Self, CapacityError> {
        let mut maps = ReadDirty::new(hasher);
        maps.presize(capacity)?;
        Ok(ReadMostlyMap {
            maps,
            snapshots_taken: AtomicU64::new(0),
        })
    }
}

impl<K, V, S> ReadMostlyMap<K, V, S> {
    /// The counters that drive promotion; see [`ReadMostlyStats`]. They are Go's own
    /// figures; the figures every map of this crate reports are in
    /// [`map_stats`](Self::map_stats), a separate call because they cost more (a walk).
    pub fn stats(&self) -> ReadMostlyStats {
        self.maps.stats()
    }
}

impl<K, V, S> ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher + Clone,
{
    /// The crate's common [`MapStats`]:
    /// * `len` is [`len`](Self::len), with its cost: a walk of every key of the read map;
    /// * `capacity` is the read map's: the keys it holds (deleted ones included) before a
    ///   promotion must replace it. The dirty map's capacity is behind the mutex, which this
    ///   call does not take;
    /// * `snapshots_taken` counts the frozen instants: calls of [`snapshot`](Self::snapshot),
    ///   [`iter`](Self::iter), [`keys`](Self::keys), [`values`](Self::values), `clone` and
    ///   `==` (one per side), which are all built on it;
    /// * `resizes`, `migrations_in_flight`, `tombstones`, `longest_probe` and
    ///   `garbage_bytes` are 0: the read map is never resized but replaced by promotion
    ///   (counted in [`ReadMostlyStats::promotions`]), std's `HashMap` reports no probe
    ///   lengths, deleted keys are Go's nil entries (see `read_len` against `len`), and the
    ///   collector does not count the bytes it holds.
    ///
    /// ```
    /// use atomicmap::ReadMostlyMap;
    ///
    /// let map: ReadMostlyMap<u32, u32> = ReadMostlyMap::new();
    /// map.store(1, 10);
    /// map.store(2, 20);
    /// let _ = map.snapshot(); // promotes: both keys are in the read map
    /// map.delete(&2);
    /// let stats = map.map_stats();
    /// assert_eq!((stats.len, stats.snapshots_taken), (1, 1));
    /// assert_eq!(map.stats().read_len, 2, "Go keeps the deleted key as a nil entry");
    /// ```
    pub fn map_stats(&self) -> MapStats {
        let guard = self.maps.enter();
        MapStats {
            len: self.maps.count_values(&guard),
            capacity: self.maps.read_only(&guard).entries.capacity(),
            snapshots_taken: self.snapshots_taken.load(Ordering::Relaxed),
            ..MapStats::default()
        }
    }
}

impl<K, V, S> ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher + Clone,
{
    /// The value for `key`, cloned (Go's `Load`).
    #[doc(alias = "get")]
    #[doc(alias = "Load")]
    pub fn load<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.get_with(key, V::clone)
    }

    /// Go's `Load`, without cloning: runs `read` on the value, at most once. The map is pinned
    /// (not locked) while `read` runs, so `read` may use the map.
    pub fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.maps.enter();
        let entry = self.maps.find_counting_miss(key, false, &guard)?;
        entry.load(&guard).map(read)
    }

    /// Whether `key` has a value (a Go `Load` that ignores the value; it counts misses alike).
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_with(key, |_| ()).is_some()
    }

    /// How many keys have a value. Weakly consistent, as [`range`](Self::range) is: each key
    /// is counted as of some moment during the call, while lock-free writers keep going.
    ///
    /// Cost: a walk of every key of the read map, deleted ones included (O(n), one load per
    /// key). If the read map is amended it walks the dirty map instead, with the mutex held,
    /// so stores of new keys wait for it. Unlike `range` it never promotes and counts no
    /// miss. Go's `sync.Map` has no length.
    ///
    /// ```
    /// use atomicmap::ReadMostlyMap;
    ///
    /// let map: ReadMostlyMap<&str, u32> = ReadMostlyMap::new();
    /// map.store("a", 1);
    /// map.store("b", 2);
    /// map.delete("a");
    /// assert_eq!(map.len(), 1, "deleted keys are walked over, not counted");
    /// ```
    pub fn len(&self) -> usize {
        let guard = self.maps.enter();
        self.maps.count_values(&guard)
    }

    /// Whether no key has a value; the same walk as [`len`](Self::len).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Go's `Swap`, the engine of `Store`: sets the value and returns the previous one,
    /// borrowed from the collector while `guard` is held. A panic in the key's `Hash`, `Eq`
    /// or `Clone` drops `value` and leaves the key as it was.
    fn swap_in<'g>(&'g self, key: K, value: V, guard: &'g Guard<'_>) -> Option<&'g V> {
        let new = self.maps.new_value(value, guard);
        let new = match self.maps.read_only(guard).entries.get(&key) {
            Some(entry) => match entry.swap_unless_expunged(new, guard) {
                Ok(previous) => return previous,
                Err(new) => new,
            },
            None => new,
        };
        let mut locked = self.maps.lock();
        let (entry, _) = self.maps.entry_for_store(&mut locked, key, guard);
        entry.swap_unless_expunged(new, guard).unwrap_or_else(|_| {
            unreachable!("the locked store path never returns an expunged entry")
        })
    }

    /// Sets the value for `key` (Go's `Store`).
    pub fn store(&self, key: K, value: V) {
        let guard = self.maps.enter();
        self.swap_in(key, value, &guard);
    }

    /// Sets the value for `key` and returns the previous one (Go's `Swap`).
    #[doc(alias = "insert")]
    #[doc(alias = "Swap")]
    pub fn swap(&self, key: K, value: V) -> Option<V>
    where
        V: Clone,
    {
        let guard = self.maps.enter();
        self.swap_in(key, value, &guard).cloned()
    }

    /// Go's `LoadOrStore`: returns the existing value and `true`, or stores `value` and
    /// returns it and `false`. A panic in the key's `Hash`, `Eq` or `Clone`, or in cloning
    /// the existing value, drops `value` without storing it.
    pub fn load_or_store(&self, key: K, value: V) -> (V, bool)
    where
        V: Clone,
    {
        let guard = self.maps.enter();
        let fast_entry = self.maps.read_only(&guard).entries.get(&key);
        if let Some(existing) = fast_entry.and_then(|entry| entry.load(&guard)) {
            return (existing.clone(), true);
        }
        let mut new = self.maps.new_value(value, &guard);
        if let Some(entry) = fast_entry {
            match entry.try_load_or_store(new, &guard) {
                LoadOrStore::Loaded(existing) => return (existing.clone(), true),
                LoadOrStore::Stored(stored) => return (stored.clone(), false),
                LoadOrStore::Expunged(unstored) => new = unstored,
            }
        }
        let mut locked = self.maps.lock();
        let (entry, found_in) = self.maps.entry_for_store(&mut locked, key, &guard);
        // With the mutex held no entry can become expunged, so the outcome is final.
        let outcome = entry.try_load_or_store(new, &guard);
        if found_in == FoundIn::DirtyMap {
            self.maps.record_miss(&mut locked, &guard);
        }
        drop(locked);
        match outcome {
            LoadOrStore::Loaded(existing) => (existing.clone(), true),
            LoadOrStore::Stored(stored) => (stored.clone(), false),
            LoadOrStore::Expunged(_) => {
                unreachable!("the locked store path never returns an expunged entry")
            }
        }
    }

    /// The value for `key`, inserting `make()` first if there is none. Built on Go's idiom
    /// `Load` then `LoadOrStore`, so it counts misses as those do; `make` runs at most once,
    /// only when the load found nothing, and its value is dropped if another thread stored
    /// first.
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V
    where
        V: Clone,
    {
        match self.load(&key) {
            Some(existing) => existing,
            None => self.load_or_store(key, make()).0,
        }
    }

    /// Removes the value for `key` and returns it (Go's `LoadAndDelete`).
    #[doc(alias = "remove")]
    #[doc(alias = "LoadAndDelete")]
    pub fn load_and_delete<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let guard = self.maps.enter();
        let entry = self.maps.find_counting_miss(key, true, &guard)?;
        entry.delete(&guard).cloned()
    }

    /// Removes the value for `key`; returns whether there was one (Go's `Delete`, which
    /// returns nothing).
    pub fn delete<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.maps.enter();
        self.maps
            .find_counting_miss(key, true, &guard)
            .is_some_and(|entry| entry.delete(&guard).is_some())
    }

    /// Go's `CompareAndSwap`: sets the value for `key` to `new` if it currently equals
    /// `expected`; returns whether it did.
    pub fn compare_and_swap<Q>(&self, key: &Q, expected: &V, new: V) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: PartialEq,
    {
        let guard = self.maps.enter();
        let make_new = || self.maps.new_value(new, &guard);
        let read = self.maps.read_only(&guard);
        if let Some(entry) = read.entries.get(key) {
            return entry.try_compare_and_swap(expected, make_new, &guard);
        }
        if !read.amended {
            return false;
        }
        let mut locked = self.maps.lock();
        let read = self.maps.read_only(&guard);
        if let Some(entry) = read.entries.get(key) {
            return entry.try_compare_and_swap(expected, make_new, &guard);
        }
        let Some(entry) = self.maps.dirty_entry(&locked, key) else {
            return false;
        };
        let swapped = entry.try_compare_and_swap(expected, make_new, &guard);
        // The set of keys did not change, so promoting would make this key fast: count it.
        self.maps.record_miss(&mut locked, &guard);
        swapped
    }

    /// Go's `CompareAndDelete`: removes the value for `key` if it equals `expected`; returns
    /// whether it did. A key found only in the dirty map stays there (nil) until promotion.
    pub fn compare_and_delete<Q>(&self, key: &Q, expected: &V) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: PartialEq,
    {
        let guard = self.maps.enter();
        self.maps
            .find_counting_miss(key, false, &guard)
            .is_some_and(|entry| {
                entry
                    .delete_if(&guard, |current| current == expected)
                    .is_some()
            })
    }

    /// Go's `Range`: calls `visit` on each key and value until it returns `false`. If the
    /// read map is amended it is first promoted, so `range` sees every key stored before the
    /// call. Weakly consistent: each key of that read map is visited at most once, with its
    /// value at some moment during the call; keys stored during the call may be missed. The
    /// map is pinned, not locked, while `visit` runs, so `visit` may use the map.
    ///
    /// ```
    /// use atomicmap::ReadMostlyMap;
    ///
    /// let map: ReadMostlyMap<u32, u32> = (0..10).map(|key| (key, key)).collect();
    /// assert!(map.stats().amended, "new keys wait in the dirty map");
    /// let mut sum = 0;
    /// map.range(|_, value| {
    ///     sum += value;
    ///     true
    /// });
    /// assert_eq!(sum, 45);
    /// assert!(!map.stats().amended, "range promoted the dirty map, as Go's Range does");
    /// ```
    pub fn range(&self, mut visit: impl FnMut(&K, &V) -> bool) {
        let guard = self.maps.enter();
        self.maps.promote_if_amended(&guard);
        for (key, entry) in self.maps.read_only(&guard).entries.iter() {
            if let Some(value) = entry.load(&guard) {
                if !visit(key, value) {
                    break;
                }
            }
        }
    }

    /// The map's contents at one instant, as an immutable [`MapSnapshot`] whose version counts
    /// the frozen instants taken of this map (1 for the first): snapshots, and the
    /// operations built on them ([`iter`](Self::iter), `clone`, `==`, ...).
    ///
    /// With the mutex held (as for a dirty-map rebuild), an amended read map is promoted as
    /// `Range` does, so the read map holds every key and no key can be added; then every entry
    /// is frozen (one CAS each), which is the snapshot's instant, and thawed again (one store
    /// each). Loads never wait; a lock-free store, swap or delete of a key waits only while its
    /// entry is frozen, and operations that need the mutex wait for the two passes. The keys
    /// and values are cloned after the mutex is released, while writers proceed; memory they
    /// retire meanwhile is freed after the clone. Unlike [`range`](Self::range), which reads
    /// each key at its own moment, a snapshot never mixes states that did not coexist.
    ///
    /// ```
    /// use atomicmap::ReadMostlyMap;
    ///
    /// let map: ReadMostlyMap<u32, u32> = (0..3).map(|key| (key, key)).collect();
    /// let first = map.snapshot();
    /// map.store(1, 10);
    /// let second = map.snapshot();
    /// assert_eq!((first.get(&1), second.get(&1)), (Some(&1), Some(&10)));
    /// assert_eq!((first.version(), second.version()), (1, 2));
    /// ```
    pub fn snapshot(&self) -> MapSnapshot<K, V, S>
    where
        V: Clone,
    {
        let (entries, version) = self.frozen(|key, value| (key.clone(), value.clone()));
        MapSnapshot::from_entries(entries, self.maps.hasher().clone(), version)
    }

    /// `project` of every entry with a value at one frozen instant (the module's "Snapshots:
    /// frozen entries"), with the instant's version. The projections run after the mutex is
    /// released, while writers proceed.
    fn frozen<T>(&self, mut project: impl FnMut(&K, &V) -> T) -> (Vec<T>, u64) {
        self.snapshots_taken.fetch_add(1, Ordering::Relaxed);
        let guard = self.maps.enter();
        let (entries, values, version) = self.maps.freeze_every_key(&guard);
        let projected = entries
            .keys()
            .zip(values)
            .filter_map(|(key, value)| Some(project(key, value?)))
            .collect();
        (projected, version)
    }

    /// Owned copies of every entry at one instant: the entries of a
    /// [`snapshot`](Self::snapshot), without building its table. Go's `sync.Map` has no
    /// iterator, only [`range`](Self::range).
    ///
    /// Cost: as `snapshot`, O(n) with every entry frozen for two short passes (a lock-free
    /// store to a key waits while its entry is frozen), and the keys and values cloned
    /// before the first item. Use `range` to visit entries without copying them; it reads
    /// each key at its own moment.
    ///
    /// ```
    /// use atomicmap::ReadMostlyMap;
    ///
    /// let map: ReadMostlyMap<&str, u32> = ReadMostlyMap::new();
    /// map.store("a", 1);
    /// map.store("b", 2);
    /// let mut total = 0;
    /// for (key, value) in &map {
    ///     map.store(key, value * 10); // allowed: the copies are taken, nothing is held
    ///     total += value;
    /// }
    /// assert_eq!(total, 3);
    /// assert_eq!(map.load("b"), Some(20));
    /// ```
    pub fn iter(&self) -> std::vec::IntoIter<(K, V)>
    where
        V: Clone,
    {
        self.frozen(|key, value| (key.clone(), value.clone()))
            .0
            .into_iter()
    }

    /// Owned copies of every key with a value at one instant, as [`iter`](Self::iter) (and
    /// at its cost, without cloning values).
    pub fn keys(&self) -> std::vec::IntoIter<K> {
        self.frozen(|key, _| key.clone()).0.into_iter()
    }

    /// Owned copies of every value at one instant, as [`iter`](Self::iter) (and at its cost,
    /// without cloning keys).
    pub fn values(&self) -> std::vec::IntoIter<V>
    where
        V: Clone,
    {
        self.frozen(|_, value| value.clone()).0.into_iter()
    }

    /// Go's `Clear` (Go 1.23): removes every key. Misses restart at zero.
    pub fn clear(&self) {
        let guard = self.maps.enter();
        self.maps.clear(&guard);
    }

    /// Keeps only the keys for which `keep` returns `true`. Each deletion is a compare and
    /// delete of the value `keep` judged, so `keep` runs again on a value replaced meanwhile
    /// (it may run more than once per key). Visits keys as [`ReadMostlyMap::range`] does
    /// (promoting an amended map first).
    ///
    /// ```
    /// use atomicmap::ReadMostlyMap;
    ///
    /// let map: ReadMostlyMap<u32, u32> = (0..10).map(|key| (key, key)).collect();
    /// map.retain(|_, value| value % 3 == 0);
    /// assert_eq!(map.len(), 4);
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        let guard = self.maps.enter();
        self.maps.promote_if_amended(&guard);
        for (key, entry) in self.maps.read_only(&guard).entries.iter() {
            entry.delete_if(&guard, |value| !keep(key, value));
        }
    }
}

impl<K, V, S> fmt::Debug for ReadMostlyMap<K, V, S> {
    /// Shows the counters only: listing the entries would need `range`, which promotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadMostlyMap")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<K, V, S> IntoIterator for &ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    /// [`ReadMostlyMap::iter`]: owned copies of the entries at one instant.
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K, V, S> Clone for ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// A new map with the entries of `self` at one instant (see
    /// [`ReadMostlyMap::snapshot`]), stored as Go's `Store` would into a new map: its
    /// counters start at zero and its keys start in the dirty map.
    fn clone(&self) -> Self {
        let copy = Self::with_hasher(self.maps.hasher().clone());
        (&copy).extend(self.iter());
        copy
    }
}

impl<K, V, S> PartialEq for ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: PartialEq + Clone,
    S: BuildHasher + Clone,
{
    /// Same keys with equal values, comparing a snapshot of each side (see
    /// [`ReadMostlyMap::snapshot`] for the cost). Each snapshot is its own map's instant:
    /// the comparison is not atomic across both maps.
    fn eq(&self, other: &Self) -> bool {
        self.snapshot() == other.snapshot()
    }
}

impl<K, V, S> Eq for ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Eq + Clone,
    S: BuildHasher + Clone,
{
}

impl<K, V, S> FromIterator<(K, V)> for ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher + Clone + Default,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let map = Self::with_hasher(S::default());
        (&map).extend(iter);
        map
    }
}

impl<K, V, S> Extend<(K, V)> for ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher + Clone,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        (&*self).extend(iter);
    }
}

impl<K, V, S> Extend<(K, V)> for &ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher + Clone,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (key, value) in iter {
            self.store(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadMostlyMap;
    use std::cell::Cell;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{BuildHasherDefault, Hash, Hasher};
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::Arc;

    thread_local! {
        /// Calls of `Hash` and `Clone` left before one panics.
        static CALLS_BEFORE_PANIC: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    fn user_code() {
        let left = CALLS_BEFORE_PANIC.get();
        if left == 0 {
            CALLS_BEFORE_PANIC.set(usize::MAX);
            // Unwinds without running the panic hook, which would print a message per panic
            // and takes most of the time of a panic under Miri.
            panic::resume_unwind(Box::new("injected"));
        }
        CALLS_BEFORE_PANIC.set(left - 1);
    }

    /// A key and value whose `Hash` and `Clone` panic once `CALLS_BEFORE_PANIC` runs out; the
    /// value's heap allocation is what a leak would lose.
    #[derive(PartialEq, Eq)]
    struct Faulty(Box<u32>);

    impl Hash for Faulty {
        fn hash<H: Hasher>(&self, state: &mut H) {
            user_code();
            self.0.hash(state);
        }
    }

    impl Clone for Faulty {
        fn clone(&self) -> Self {
            user_code();
            Faulty(self.0.clone())
        }
    }

    /// Each path on which a value was boxed before user code ran, with that code panicking at
    /// every call in turn, until a run makes no more calls than it is allowed; Miri's leak
    /// check at the end of the run finds any box left behind.
    #[test]
    fn a_panic_in_hash_or_clone_leaks_no_boxed_value() {
        for panic_after in 0.. {
            let map: ReadMostlyMap<Faulty, Faulty, BuildHasherDefault<DefaultHasher>> =
                ReadMostlyMap::default();
            let faulty = |n| Faulty(Box::new(n));
            CALLS_BEFORE_PANIC.set(panic_after);
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                map.store(faulty(0), faulty(0));
                map.store(faulty(1), faulty(1));
                map.range(|_, _| true);
                map.delete(&faulty(0));
                map.store(faulty(2), faulty(2));
                map.store(faulty(0), faulty(10));
                map.load_or_store(faulty(2), faulty(20));
                map.load_or_store(faulty(3), faulty(3));
                map.swap(faulty(1), faulty(11));
                map.compare_and_swap(&faulty(1), &faulty(11), faulty(21));
                map.snapshot();
            }));
            CALLS_BEFORE_PANIC.set(usize::MAX);
            map.store(faulty(4), faulty(4));
            assert!(
                map.load(&faulty(4)).is_some(),
                "usable after a panic at call {panic_after}"
            );
            if outcome.is_ok() {
                break;
            }
        }
    }

    /// Values frozen by a snapshot stay allocated while a lock-free writer replaces and
    /// deletes them during the clone (Miri checks the reads and the frozen-pointer tags).
    #[test]
    fn snapshot_of_boxed_values_while_a_writer_replaces_them() {
        let map: Arc<ReadMostlyMap<u32, String>> = Arc::new(ReadMostlyMap::new());
        for key in 0..30 {
            map.store(key, format!("{key}"));
        }
        map.range(|_, _| true);
        let writer = {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                for key in 0..30 {
                    map.store(key, format!("{key}!"));
                    map.delete(&((key + 15) % 30));
                }
            })
        };
        let snapshots: Vec<_> = (0..3).map(|_| map.snapshot()).collect();
        writer.join().unwrap();
        for snapshot in &snapshots {
            for (key, value) in snapshot {
                assert!(
                    value.trim_end_matches('!') == key.to_string(),
                    "{key} = {value}"
                );
            }
        }
        assert_eq!(snapshots.last().map(|s| s.version()), Some(3));
    }
}
