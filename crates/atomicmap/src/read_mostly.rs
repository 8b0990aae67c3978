//! [`ReadMostlyMap`]: the design of Go's `sync.Map` (Go 1.9 to 1.23), ported rule for rule.
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
//! * expunged -> nil: only with the mutex, immediately followed by putting the entry back
//!   into the dirty map (so a store to an expunged key lands in the dirty map).
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
//! amended.
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
//! each CAS, so the CAS that unlinks a value can retire it. An entry that is dropped (its key
//! left both maps and the last read map holding it was freed) frees its current value
//! directly: no reader can reach it any more.
//!
//! # Consistency
//! Every single-key operation is linearizable. [`ReadMostlyMap::range`] is weakly consistent,
//! as in Go: it visits each key of one read map at most once and sees each value as of some
//! moment during the call.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::ptr;
use std::sync::Arc;

use crate::reclaim::{self, Collector, Guard};
use crate::snapshot::MapSnapshot;
use crate::sync::{yield_now, AtomicPtr, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering};

pub use crate::hash::DefaultHashBuilder;

/// Owns the address that marks an expunged entry; never read. A `u64`, so that the address is
/// even and the [`FROZEN`] bit stays free.
static EXPUNGED_MARKER: u64 = 0;

/// The expunged sentinel: a static's address, so it can never equal a boxed value.
fn expunged<V>() -> *mut Value<V> {
    ptr::addr_of!(EXPUNGED_MARKER) as *mut Value<V>
}

/// Whether an entry pointer refers to a boxed value (neither nil nor expunged).
fn is_value<V>(pointer: *mut Value<V>) -> bool {
    !pointer.is_null() && pointer != expunged()
}

/// Low bit of an entry pointer that a snapshot sets while it freezes the map (module docs).
/// Values, nil and the expunged marker are all even.
const FROZEN: usize = 1;

fn is_frozen<V>(pointer: *mut Value<V>) -> bool {
    pointer.addr() & FROZEN != 0
}

/// The entry pointer without the [`FROZEN`] bit.
fn thawed<V>(pointer: *mut Value<V>) -> *mut Value<V> {
    pointer.map_addr(|address| address & !FROZEN)
}

/// A boxed value as published in an entry.
struct Value<V> {
    value: V,
    /// Epoch at which the box was allocated, for the collector.
    birth: u64,
}

/// One key's value cell, shared by the read map and the dirty map.
struct Entry<V> {
    /// A boxed value, null (nil: deleted) or [`expunged`]; see the module docs.
    value: AtomicPtr<Value<V>>,
}

/// What [`Entry::try_load_or_store`] did.
enum LoadOrStoreOutcome<'a, V> {
    /// A value was present; the new one was not stored.
    Loaded(&'a V),
    /// The entry was nil and now holds the new value.
    Stored,
    /// The entry is expunged; only the mutex holder may store into it.
    Expunged,
}

impl<V> Entry<V> {
    fn new(value: *mut Value<V>) -> Self {
        Entry {
            value: AtomicPtr::new(value),
        }
    }

    /// Loads the entry's pointer so that it may be dereferenced until `guard` drops. The
    /// result may carry the [`FROZEN`] bit.
    fn protected(&self, guard: &Guard<'_>) -> *mut Value<V> {
        guard.protect(|| self.value.load(Ordering::Acquire))
    }

    /// Like [`protected`](Self::protected), for a lock-free writer: while a snapshot has the
    /// entry frozen, waits until it thaws (the snapshot holds the mutex meanwhile, so a
    /// writer holding the mutex never finds an entry frozen).
    fn protected_unfrozen(&self, guard: &Guard<'_>) -> *mut Value<V> {
        loop {
            let current = self.protected(guard);
            if !is_frozen(current) {
                return current;
            }
            yield_now();
        }
    }

    /// The current value, frozen or not. It is owned by the entry, so the borrow is bounded
    /// by both the entry and the guard.
    fn load<'a>(&'a self, guard: &'a Guard<'_>) -> Option<&'a V> {
        let current = thawed(self.protected(guard));
        // SAFETY: a protected value pointer stays allocated while `guard` is held; a current
        // value is freed without the collector only by `Entry::drop`, which the `&'a self`
        // borrow rules out.
        is_value(current).then(|| unsafe { &(*current).value })
    }

    /// Retires `unlinked`, which this thread's CAS just removed from the entry, and returns
    /// its value, still readable while `guard` is held.
    ///
    /// # Safety
    /// `unlinked` is a value pointer loaded through `guard.protect`, and the caller's CAS
    /// replaced it in the entry (so it is retired exactly once: a box is published once and
    /// can be unlinked once).
    unsafe fn retire_unlinked<'g>(unlinked: *mut Value<V>, guard: &'g Guard<'_>) -> &'g V {
        // SAFETY: protected by `guard` (caller's contract), so the box is allocated.
        let birth = unsafe { (*unlinked).birth };
        // SAFETY: unreachable after the caller's CAS, born at `birth`, retired once, and boxed.
        unsafe { guard.retire(unlinked.cast(), birth, reclaim::free_box::<Value<V>>) };
        // SAFETY: our own reservation covers the retired box until `guard` drops, because we
        // protected it before retiring it.
        unsafe { &(*unlinked).value }
    }

    /// Replaces the value unless the entry is expunged (Go's `trySwap`). On success returns
    /// the previous value, if any; on failure `new` is still the caller's.
    fn swap_unless_expunged<'g>(
        &self,
        new: *mut Value<V>,
        guard: &'g Guard<'_>,
    ) -> Result<Option<&'g V>, ()> {
        loop {
            let current = self.protected_unfrozen(guard);
            if current == expunged() {
                return Err(());
            }
            if self
                .value
                .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let unlinked = is_value(current);
                // SAFETY: `current` was protected and our CAS unlinked it.
                return Ok(unlinked.then(|| unsafe { Self::retire_unlinked(current, guard) }));
            }
        }
    }

    /// Replaces the value whatever its state (Go's `swapLocked`); called with the mutex held
    /// after [`Entry::unexpunge_locked`], so the entry is never expunged here.
    fn swap_locked<'g>(&self, new: *mut Value<V>, guard: &'g Guard<'_>) -> Option<&'g V> {
        loop {
            let current = self.protected(guard);
            if self
                .value
                .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // SAFETY: `current` was protected and our CAS unlinked it.
                return is_value(current).then(|| unsafe { Self::retire_unlinked(current, guard) });
            }
        }
    }

    /// Go's `tryLoadOrStore`. Unless the outcome is `Stored`, `new` is still the caller's.
    fn try_load_or_store<'a>(
        &'a self,
        new: *mut Value<V>,
        guard: &'a Guard<'_>,
    ) -> LoadOrStoreOutcome<'a, V> {
        loop {
            let current = self.protected_unfrozen(guard);
            if current == expunged() {
                return LoadOrStoreOutcome::Expunged;
            }
            if !current.is_null() {
                // SAFETY: protected, and owned by the entry that `'a` keeps alive.
                return LoadOrStoreOutcome::Loaded(unsafe { &(*current).value });
            }
            if self
                .value
                .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return LoadOrStoreOutcome::Stored;
            }
        }
    }

    /// Deletes the value (Go's `entry.delete`), returning it.
    fn delete<'g>(&self, guard: &'g Guard<'_>) -> Option<&'g V> {
        self.delete_if(guard, |_| true)
    }

    /// Deletes the value if `matches` accepts it (Go's `CompareAndDelete` loop); `matches`
    /// runs again on the new value whenever the CAS loses a race.
    fn delete_if<'g>(
        &self,
        guard: &'g Guard<'_>,
        mut matches: impl FnMut(&V) -> bool,
    ) -> Option<&'g V> {
        loop {
            let current = self.protected_unfrozen(guard);
            // SAFETY: a protected value pointer is allocated while `guard` is held.
            if !is_value(current) || !matches(unsafe { &(*current).value }) {
                return None;
            }
            if self
                .value
                .compare_exchange(
                    current,
                    ptr::null_mut(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                // SAFETY: `current` was protected and our CAS unlinked it.
                return Some(unsafe { Self::retire_unlinked(current, guard) });
            }
        }
    }

    /// Go's `tryCompareAndSwap`: replaces the value with the one `make_new` boxes if the
    /// current value equals `expected`. `make_new` runs at most once, and only after a match.
    fn try_compare_and_swap(
        &self,
        expected: &V,
        make_new: impl FnOnce() -> *mut Value<V>,
        guard: &Guard<'_>,
    ) -> bool
    where
        V: PartialEq,
    {
        let mut make_new = Some(make_new);
        let mut new = ptr::null_mut();
        loop {
            let current = self.protected_unfrozen(guard);
            // SAFETY: a protected value pointer is allocated while `guard` is held.
            if !is_value(current) || unsafe { &(*current).value } != expected {
                if let Some(unpublished) = ptr::NonNull::new(new) {
                    // SAFETY: `new` came from `Box::into_raw` and no CAS published it.
                    drop(unsafe { Box::from_raw(unpublished.as_ptr()) });
                }
                return false;
            }
            if let Some(make) = make_new.take() {
                new = make();
            }
            if self
                .value
                .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // SAFETY: `current` was protected and our CAS unlinked it.
                unsafe { Self::retire_unlinked(current, guard) };
                return true;
            }
        }
    }

    /// Freezes the entry for a snapshot (mutex held): sets the [`FROZEN`] bit, after which
    /// lock-free writers leave the entry alone until [`thaw`](Self::thaw). Returns the frozen
    /// pointer, which only the caller's guard keeps allocated once the entry thaws.
    fn freeze(&self) -> *mut Value<V> {
        let mut current = self.value.load(Ordering::Acquire);
        loop {
            debug_assert!(!is_frozen(current), "one snapshot at a time: the mutex");
            match self.value.compare_exchange(
                current,
                current.map_addr(|address| address | FROZEN),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return current,
                Err(actual) => current = actual,
            }
        }
    }

    /// Ends [`freeze`](Self::freeze). Nobody else changes a frozen entry, so a store suffices.
    fn thaw(&self) {
        let frozen = self.value.load(Ordering::Relaxed);
        self.value.store(thawed(frozen), Ordering::Release);
    }

    /// Go's `unexpungeLocked`: expunged -> nil. Mutex held; on success the caller must put
    /// the entry back into the dirty map before releasing it.
    fn unexpunge_locked(&self) -> bool {
        self.value
            .compare_exchange(
                expunged(),
                ptr::null_mut(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Go's `tryExpungeLocked`: nil -> expunged, with the mutex held while the dirty map is
    /// rebuilt. True when the entry ends expunged (and must stay out of the dirty map). The
    /// pointer is only compared, never dereferenced, so it needs no protection.
    fn try_expunge_locked(&self) -> bool {
        let mut current = self.value.load(Ordering::Acquire);
        while current.is_null() {
            match self.value.compare_exchange(
                ptr::null_mut(),
                expunged(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
        current == expunged()
    }
}

impl<V> Drop for Entry<V> {
    fn drop(&mut self) {
        let current = thawed(self.value.load(Ordering::Acquire));
        if is_value(current) {
            // SAFETY: the last `Arc` of the entry is gone: no map holds it, no read map that
            // held it is still pinned (read maps are freed by the collector), and slow paths
            // hold their own `Arc`. So nobody can reach the current value, which the entry
            // owns and which was boxed by `ReadMostlyMap::box_value`.
            drop(unsafe { Box::from_raw(current) });
        }
    }
}

/// An entry found by a lookup: borrowed from a pinned read map, or an `Arc` taken from the
/// dirty map so that it outlives the mutex.
type FoundEntry<'g, V> = Cow<'g, Arc<Entry<V>>>;

/// The keys of a read or dirty map.
type Entries<K, V, S> = HashMap<K, Arc<Entry<V>>, S>;

/// One published read map (Go's `readOnly`).
struct ReadOnly<K, V, S> {
    /// Shared with the read map this one replaced when only `amended` changed.
    entries: Arc<Entries<K, V, S>>,
    /// Whether the dirty map holds keys that `entries` lacks.
    amended: bool,
    /// Epoch at which this read map was allocated, for the collector.
    birth: u64,
}

/// The part of the map that the mutex guards.
struct Locked<K, V, S> {
    /// Go's `dirty`; `None` is Go's `nil` (right after a promotion).
    dirty: Option<Entries<K, V, S>>,
    /// Go's `misses`: slow-path lookups since the last promotion.
    misses: usize,
    /// Snapshots taken so far: the version of the latest one.
    snapshots: u64,
}

/// Counters of a [`ReadMostlyMap`], read without the mutex. Each field is exact at some
/// moment during the call; the fields are not one atomic snapshot.
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

/// A concurrent map with the behaviour of Go's `sync.Map` (Go 1.9 to 1.23).
///
/// Best for keys written once and read many times, or for goroutine-style disjoint key sets:
/// lookups of keys present in the read map take no lock and perform no read-modify-write.
/// See the [module docs](self) for the protocol, and [`ReadMostlyMap::stats`] for the
/// counters that drive it.
///
/// Keys are cloned when the dirty map is rebuilt from the read map, and values are cloned
/// out of the map by lookups.
pub struct ReadMostlyMap<K, V, S = DefaultHashBuilder> {
    /// The current [`ReadOnly`]; replaced only with `locked` held.
    read: AtomicPtr<ReadOnly<K, V, S>>,
    /// Go's `mu` with the fields it guards.
    locked: Mutex<Locked<K, V, S>>,
    /// Mirrors of locked state for [`ReadMostlyMap::stats`]; written only with the mutex.
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

    /// An empty map whose dirty map holds `capacity` entries without growing; see
    /// [`with_capacity_and_hasher`](Self::with_capacity_and_hasher).
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, DefaultHashBuilder::default())
    }
}

impl<K, V> Default for ReadMostlyMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S> ReadMostlyMap<K, V, S> {
    /// An empty map that hashes with `hasher`.
    pub fn with_hasher(hasher: S) -> Self
    where
        S: Clone,
    {
        Self::with_capacity_and_hasher(0, hasher)
    }

    /// An empty map that hashes with `hasher` and builds every dirty map with room for at least
    /// `capacity` entries, so that the first `capacity` new keys are added without rehashing.
    /// Nothing else changes: as in Go, there is no dirty map until the first new key, and the
    /// read map is never allocated ahead (it is always a promoted dirty map).
    ///
    /// # Panics
    /// If `capacity` entries cannot be allocated when the first dirty map is built, as with
    /// `HashMap::with_capacity`.
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self
    where
        S: Clone,
    {
        let collector = Collector::new();
        let empty = ReadOnly {
            entries: Arc::new(HashMap::with_hasher(hasher.clone())),
            amended: false,
            birth: {
                let guard = collector.enter();
                collector.birth_epoch(&guard)
            },
        };
        ReadMostlyMap {
            read: AtomicPtr::new(Box::into_raw(Box::new(empty))),
            locked: Mutex::new(Locked {
                dirty: None,
                misses: 0,
                snapshots: 0,
            }),
            misses: AtomicUsize::new(0),
            dirty_len: AtomicUsize::new(0),
            has_dirty: AtomicUsize::new(0),
            promotions: AtomicU64::new(0),
            hasher,
            dirty_capacity: capacity,
            collector,
        }
    }

    /// The current read map, valid while `guard` is held.
    fn read_only<'g>(&'g self, guard: &'g Guard<'_>) -> &'g ReadOnly<K, V, S> {
        let current = guard.protect(|| self.read.load(Ordering::Acquire));
        // SAFETY: the read pointer is never null (set in `with_hasher`, replaced only by
        // boxes), and a protected pointer stays allocated until `guard` drops.
        unsafe { &*current }
    }

    fn lock(&self) -> MutexGuard<'_, Locked<K, V, S>> {
        // A panic in a user `Hash`/`Eq` with the mutex held leaves the maps consistent
        // (std's HashMap is panic-safe), so the map stays usable.
        self.locked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Boxes `value` for publication in an entry.
    fn box_value(&self, value: V, guard: &Guard<'_>) -> *mut Value<V> {
        let birth = self.collector.birth_epoch(guard);
        // `birth_epoch` may have ticked the epoch past our reservation. Raising the
        // reservation to cover `birth` keeps the box readable by us after we publish it, even
        // if another thread unlinks and retires it at once (`load_or_store` reads it back).
        guard.protect(|| ());
        Box::into_raw(Box::new(Value { value, birth }))
    }

    /// Publishes `next` as the read map; `locked` proves the mutex is held, `current` is the
    /// read map this replaces (loaded through `guard`).
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

    /// Go's `missLocked`: counts a miss and promotes once `misses >= len(dirty)`.
    fn record_miss(&self, locked: &mut Locked<K, V, S>, guard: &Guard<'_>)
    where
        S: Clone,
    {
        locked.misses += 1;
        if locked.misses < locked.dirty.as_ref().map_or(0, HashMap::len) {
            self.misses.store(locked.misses, Ordering::Relaxed);
            return;
        }
        self.promote(locked, guard);
    }

    /// The dirty map becomes the read map as is; the dirty map is gone and misses restart.
    fn promote(&self, locked: &mut Locked<K, V, S>, guard: &Guard<'_>)
    where
        S: Clone,
    {
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

    /// The counters that drive promotion; see [`ReadMostlyStats`].
    pub fn stats(&self) -> ReadMostlyStats {
        let guard = self.collector.enter();
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
}

impl<K, V, S> ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher + Clone,
{
    /// Go's `dirtyLocked`: builds the dirty map from the read map if there is none, leaving
    /// out (and expunging) deleted entries.
    fn ensure_dirty<'l>(
        &self,
        locked: &'l mut Locked<K, V, S>,
        read: &ReadOnly<K, V, S>,
    ) -> &'l mut Entries<K, V, S> {
        let dirty = locked.dirty.get_or_insert_with(|| {
            let capacity = read.entries.len().max(self.dirty_capacity);
            let mut dirty = HashMap::with_capacity_and_hasher(capacity, self.hasher.clone());
            for (key, entry) in read.entries.iter() {
                if !entry.try_expunge_locked() {
                    dirty.insert(key.clone(), Arc::clone(entry));
                }
            }
            dirty
        });
        dirty
    }

    /// Finds `key` for an operation that does not add keys (`Load`, `LoadAndDelete`,
    /// `CompareAndDelete`), taking the mutex and counting a miss when the read map lacks it
    /// and is amended. With `remove_from_dirty` the key also leaves the dirty map (Go's
    /// `LoadAndDelete`).
    fn find_counting_miss<'g, Q>(
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
        let dirty = locked.dirty.as_mut();
        let found = if remove_from_dirty {
            dirty.and_then(|dirty| dirty.remove(key))
        } else {
            dirty.and_then(|dirty| dirty.get(key)).map(Arc::clone)
        };
        // Found or not, this key takes the slow path until the next promotion.
        self.record_miss(&mut locked, guard);
        self.mirror_counters(&locked);
        found.map(Cow::Owned)
    }

    /// Go's `Load`: the value for `key`, cloned.
    pub fn load<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.get_with(key, V::clone)
    }

    /// Same as [`ReadMostlyMap::load`] (Go's `Load`).
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.load(key)
    }

    /// Go's `Load`, without cloning: runs `read` on the value. The map is pinned (not locked)
    /// while `read` runs, so `read` may use the map.
    pub fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.collector.enter();
        let entry = self.find_counting_miss(key, false, &guard)?;
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

    /// Go's `Swap`, the engine of `Store`: sets the value and returns the previous one,
    /// borrowed from the collector while `guard` is held.
    fn swap_in<'g>(&'g self, key: K, value: V, guard: &'g Guard<'_>) -> Option<&'g V> {
        let new = self.box_value(value, guard);
        let read = self.read_only(guard);
        if let Some(entry) = read.entries.get(&key) {
            if let Ok(previous) = entry.swap_unless_expunged(new, guard) {
                return previous;
            }
        }
        let mut locked = self.lock();
        let read = self.read_only(guard);
        let previous = if let Some(entry) = read.entries.get(&key) {
            if entry.unexpunge_locked() {
                // Expunged means left out of the dirty map, which therefore exists.
                self.ensure_dirty(&mut locked, read)
                    .insert(key, Arc::clone(entry));
            }
            entry.swap_locked(new, guard)
        } else if let Some(entry) = locked.dirty.as_ref().and_then(|dirty| dirty.get(&key)) {
            entry.swap_locked(new, guard)
        } else {
            if !read.amended {
                // The first new key since the last promotion: rebuild the dirty map and tell
                // readers that the read map is incomplete.
                self.ensure_dirty(&mut locked, read);
                self.publish_read(&mut locked, read, Arc::clone(&read.entries), true, guard);
            }
            self.ensure_dirty(&mut locked, read)
                .insert(key, Arc::new(Entry::new(new)));
            None
        };
        self.mirror_counters(&locked);
        previous
    }

    /// Go's `Store`: sets the value for `key`.
    pub fn store(&self, key: K, value: V) {
        let guard = self.collector.enter();
        self.swap_in(key, value, &guard);
    }

    /// Go's `Swap`: sets the value for `key` and returns the previous one.
    pub fn swap(&self, key: K, value: V) -> Option<V>
    where
        V: Clone,
    {
        let guard = self.collector.enter();
        self.swap_in(key, value, &guard).cloned()
    }

    /// Same as [`ReadMostlyMap::swap`] (Go's `Swap`).
    pub fn insert(&self, key: K, value: V) -> Option<V>
    where
        V: Clone,
    {
        self.swap(key, value)
    }

    /// Go's `LoadOrStore`: returns the existing value and `true`, or stores `value` and
    /// returns it and `false`.
    pub fn load_or_store(&self, key: K, value: V) -> (V, bool)
    where
        V: Clone,
    {
        let guard = self.collector.enter();
        let read = self.read_only(&guard);
        let fast_entry = read.entries.get(&key);
        if let Some(existing) = fast_entry.and_then(|entry| entry.load(&guard)) {
            return (existing.clone(), true);
        }
        let new = self.box_value(value, &guard);
        if let Some(entry) = fast_entry {
            match entry.try_load_or_store(new, &guard) {
                LoadOrStoreOutcome::Loaded(existing) => {
                    let existing = existing.clone();
                    // SAFETY: `new` came from `Box::into_raw` and was not published.
                    drop(unsafe { Box::from_raw(new) });
                    return (existing, true);
                }
                // SAFETY: `new` is now owned by the entry, which the pinned read map keeps.
                LoadOrStoreOutcome::Stored => return (unsafe { (*new).value.clone() }, false),
                LoadOrStoreOutcome::Expunged => {}
            }
        }
        let mut locked = self.lock();
        let read = self.read_only(&guard);
        let found: Option<FoundEntry<'_, V>> = if let Some(entry) = read.entries.get(&key) {
            if entry.unexpunge_locked() {
                self.ensure_dirty(&mut locked, read)
                    .insert(key, Arc::clone(entry));
            }
            Some(Cow::Borrowed(entry))
        } else if let Some(entry) = locked.dirty.as_ref().and_then(|dirty| dirty.get(&key)) {
            let entry = Arc::clone(entry);
            self.record_miss(&mut locked, &guard);
            Some(Cow::Owned(entry))
        } else {
            if !read.amended {
                self.ensure_dirty(&mut locked, read);
                self.publish_read(&mut locked, read, Arc::clone(&read.entries), true, &guard);
            }
            self.ensure_dirty(&mut locked, read)
                .insert(key, Arc::new(Entry::new(new)));
            None
        };
        // With the mutex held no entry can become expunged, so the outcome is final.
        let outcome = found
            .as_ref()
            .map(|entry| entry.try_load_or_store(new, &guard));
        self.mirror_counters(&locked);
        drop(locked);
        match outcome {
            Some(LoadOrStoreOutcome::Loaded(existing)) => {
                let existing = existing.clone();
                // SAFETY: `new` came from `Box::into_raw` and was not published.
                drop(unsafe { Box::from_raw(new) });
                (existing, true)
            }
            // SAFETY: `new` was published in an entry this thread still holds (the pinned
            // read map, our `Arc`, or the dirty map's new entry, whose value is retired
            // through the collector only).
            _ => (unsafe { (*new).value.clone() }, false),
        }
    }

    /// The value for `key`, inserting `make()` first if there is none. Built on Go's idiom
    /// `Load` then `LoadOrStore`, so it counts misses as those do; `make` runs only when the
    /// load found nothing, and its value is dropped if another thread stored first.
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V
    where
        V: Clone,
    {
        match self.load(&key) {
            Some(existing) => existing,
            None => self.load_or_store(key, make()).0,
        }
    }

    /// Go's `LoadAndDelete`: removes the value for `key` and returns it.
    pub fn load_and_delete<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let guard = self.collector.enter();
        let entry = self.find_counting_miss(key, true, &guard)?;
        entry.delete(&guard).cloned()
    }

    /// Same as [`ReadMostlyMap::load_and_delete`] (Go's `LoadAndDelete`).
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.load_and_delete(key)
    }

    /// Go's `Delete`: removes the value for `key`; returns whether there was one.
    pub fn delete<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = self.collector.enter();
        self.find_counting_miss(key, true, &guard)
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
        let guard = self.collector.enter();
        let make_new = |value: V| {
            let guard = &guard;
            move || self.box_value(value, guard)
        };
        let read = self.read_only(&guard);
        if let Some(entry) = read.entries.get(key) {
            return entry.try_compare_and_swap(expected, make_new(new), &guard);
        }
        if !read.amended {
            return false;
        }
        let mut locked = self.lock();
        let read = self.read_only(&guard);
        if let Some(entry) = read.entries.get(key) {
            return entry.try_compare_and_swap(expected, make_new(new), &guard);
        }
        let Some(entry) = locked
            .dirty
            .as_ref()
            .and_then(|dirty| dirty.get(key))
            .map(Arc::clone)
        else {
            return false;
        };
        let swapped = entry.try_compare_and_swap(expected, make_new(new), &guard);
        // The set of keys did not change, so promoting would make this key fast: count it.
        self.record_miss(&mut locked, &guard);
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
        let guard = self.collector.enter();
        self.find_counting_miss(key, false, &guard)
            .is_some_and(|entry| {
                entry
                    .delete_if(&guard, |current| current == expected)
                    .is_some()
            })
    }

    /// Go's `Range` prologue: an amended read map lacks keys, so promote before iterating.
    fn promote_if_amended(&self, guard: &Guard<'_>) {
        if self.read_only(guard).amended {
            let mut locked = self.lock();
            if self.read_only(guard).amended {
                self.promote(&mut locked, guard);
            }
        }
    }

    /// Go's `Range`: calls `visit` on each key and value until it returns `false`. If the
    /// read map is amended it is first promoted, so `range` sees every key stored before the
    /// call. Weakly consistent: each key of that read map is visited at most once, with its
    /// value at some moment during the call; keys stored during the call may be missed. The
    /// map is pinned, not locked, while `visit` runs, so `visit` may use the map.
    pub fn range(&self, mut visit: impl FnMut(&K, &V) -> bool) {
        let guard = self.collector.enter();
        self.promote_if_amended(&guard);
        for (key, entry) in self.read_only(&guard).entries.iter() {
            if let Some(value) = entry.load(&guard) {
                if !visit(key, value) {
                    break;
                }
            }
        }
    }

    /// The map's contents at one instant, as an immutable [`MapSnapshot`] whose version counts
    /// the snapshots taken of this map (1 for the first).
    ///
    /// With the mutex held (as for a dirty-map rebuild), an amended read map is promoted as
    /// `Range` does, so the read map holds every key and no key can be added; then every entry
    /// is frozen (one CAS each), which is the snapshot's instant, and thawed again (one store
    /// each). Loads never wait; a lock-free store, swap or delete of a key waits only while its
    /// entry is frozen, and operations that need the mutex wait for the two passes. The values
    /// are cloned after the mutex is released, while writers proceed; memory they retire
    /// meanwhile is freed after the clone. Unlike [`range`](Self::range), which reads each key
    /// at its own moment, a snapshot never mixes states that did not coexist.
    pub fn snapshot(&self) -> MapSnapshot<K, V, S>
    where
        V: Clone,
    {
        let guard = self.collector.enter();
        guard.hold_retired();
        let mut locked = self.lock();
        if self.read_only(&guard).amended {
            self.promote(&mut locked, &guard);
        }
        let entries = Arc::clone(&self.read_only(&guard).entries);
        let frozen: Vec<*mut Value<V>> = entries.values().map(|entry| entry.freeze()).collect();
        for entry in entries.values() {
            entry.thaw();
        }
        locked.snapshots += 1;
        let version = locked.snapshots;
        drop(locked);
        let mut table = HashMap::with_capacity_and_hasher(entries.len(), self.hasher.clone());
        for ((key, _), value) in entries.iter().zip(frozen) {
            if is_value(value) {
                // SAFETY: the value was in the map while `guard` was pinned, and the guard
                // holds back everything retired since it began, so the box is allocated.
                table.insert(key.clone(), unsafe { &(*value).value }.clone());
            }
        }
        MapSnapshot::from_table(table, version)
    }

    /// Go's `Clear` (Go 1.23): removes every key. Misses restart at zero.
    pub fn clear(&self) {
        let guard = self.collector.enter();
        let read = self.read_only(&guard);
        if read.entries.is_empty() && !read.amended {
            return;
        }
        let mut locked = self.lock();
        let read = self.read_only(&guard);
        if !read.entries.is_empty() || read.amended {
            let empty = Arc::new(HashMap::with_hasher(self.hasher.clone()));
            self.publish_read(&mut locked, read, empty, false, &guard);
        }
        if let Some(dirty) = locked.dirty.as_mut() {
            dirty.clear();
        }
        locked.misses = 0;
        self.mirror_counters(&locked);
    }

    /// Keeps only the keys for which `keep` returns `true`. Each deletion is a compare and
    /// delete of the value `keep` judged, so `keep` runs again on a value replaced meanwhile.
    /// Visits keys as [`ReadMostlyMap::range`] does (promoting an amended map first).
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        let guard = self.collector.enter();
        self.promote_if_amended(&guard);
        for (key, entry) in self.read_only(&guard).entries.iter() {
            entry.delete_if(&guard, |value| !keep(key, value));
        }
    }
}

impl<K, V, S> Drop for ReadMostlyMap<K, V, S> {
    fn drop(&mut self) {
        let current = self.read.load(Ordering::Acquire);
        // SAFETY: `&mut self`: no reader is pinned, and the current read map was never
        // retired, so this is its only owner. Dropping it releases the entries' `Arc`s; the
        // collector (dropped after this) frees everything retired.
        drop(unsafe { Box::from_raw(current) });
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
    use std::sync::Arc;

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
            map.lock()
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
