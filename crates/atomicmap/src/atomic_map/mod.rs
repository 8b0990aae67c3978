//! [`AtomicMap`]: the lock-free open-addressing hash map.
//!
//! This module is the safe face: constructors, whole-map operations and trait impls.
//! Single-key operations are implemented once, on the pinned handle ([`MapRef`], `pinned.rs`);
//! `AtomicMap`'s own methods pin and delegate, cloning what the handle lends or keeping it
//! with the pin ([`GuardedRef`]). The entry API (`entry.rs`) is built on the handle's
//! `get_or_insert_with`, `upsert` and `update`. Everything unsafe, and the protocol write-ups,
//! live in `raw` (slots, the commit CAS, resizing, snapshots) and `crate::reclaim`.

mod entry;
mod pinned;
mod raw;

use std::fmt;
use std::hash::{BuildHasher, Hash};

use equivalent::Equivalent;

use crate::error::CapacityError;
use crate::hash::DefaultHashBuilder;
use crate::snapshot::MapSnapshot;
use crate::stats::MapStats;
// Plain std atomics for a figure that orders nothing, which loom need not model.
pub use entry::{Entry, ModifyEntry};
pub use pinned::{ExtractIf, Iter, MapRef};
pub use raw::{GuardedRef, ValueRef};
use raw::{PinnedWalk, RawMap, Staged};
use std::sync::atomic::{AtomicU64, Ordering};

/// A lock-free concurrent hash map with open addressing.
///
/// * **Reads** (`get`, `contains_key`, `get_with`, [`MapRef::get`]) take no lock, perform no
///   read-modify-write atomic and, on Linux, no fence: a pin is two plain stores (see
///   `reclaim`'s asymmetric barriers). They never wait for writers.
/// * **Writes** commit with one compare-and-swap on the key's slot and are lock-free.
/// * **Every single-key operation is linearizable.**
/// * Keys and values that are primitive integers, `bool` or `char` are stored inside the slot
///   (64-bit values up to 2^63): `AtomicMap<u64, u64>` does not allocate per operation. Other
///   types are boxed once per write.
/// * [`len`](Self::len) is exact when no write is in flight, otherwise approximate.
/// * [`iter`](Self::iter) is *weakly consistent*: it sees each key at most once, with a value it
///   had at some moment during the iteration, and may or may not see concurrent changes.
/// * [`snapshot`](Self::snapshot) is the whole map at one instant (lock-free, linearizable);
///   see [`MapSnapshot`] for how that differs from iteration.
///
/// # Which operations need `V: Clone`, and why
/// A value that a writer replaces or removes may still be read by other threads, so the map can
/// never move it out to the caller: it lends it, or clones it.
/// * **No `Clone` bound:** [`insert`](Self::insert), [`remove`](Self::remove),
///   [`try_insert`](Self::try_insert), [`remove_if`](Self::remove_if),
///   [`compare_exchange`](Self::compare_exchange) and [`entry`](Self::entry) return the value
///   involved as a [`GuardedRef`], which reads like `&V` and holds a pin until dropped; every
///   method of [`MapRef`] (from [`pin`](Self::pin)) lends a [`ValueRef`]. So
///   `AtomicMap<K, AtomicU64>` (a counter table) and `AtomicMap<K, Mutex<T>>` work.
/// * **`V: Clone`:** [`get`](Self::get), [`get_many`](Self::get_many),
///   [`update`](Self::update), [`upsert`](Self::upsert), [`compute`](Self::compute) and
///   [`get_or_insert_with`](Self::get_or_insert_with) return an owned `V` without holding a pin;
///   [`iter`](Self::iter), [`values`](Self::values), [`drain`](Self::drain) and
///   [`extract_if`](Self::extract_if) yield owned entries (`K: Clone` too). Their [`MapRef`]
///   forms borrow instead.
/// * **`K: Clone, V: Clone, S: Clone`:** [`snapshot`](Self::snapshot), and `Clone` and
///   `PartialEq` (which compare or copy snapshots) build a map of their own.
///
/// # Hashers: the low bits must vary
/// A key's home slot is the low bits of its hash (`hash & (slots - 1)`), and a key whose home
/// is taken goes to the next free slot. So the hasher's low bits must differ between keys:
/// * The default ([`DefaultHashBuilder`], foldhash) and std's `RandomState` let every input bit
///   change every output bit: use one of them, or any hasher that does.
/// * An identity hasher (`nohash-hasher`, or a hand-written one that returns the integer key)
///   keeps the key's own low bits. Sequential integers then spread perfectly, but keys that
///   differ only in their high bits (multiples of a power of two, ids with a constant tag in
///   the low bits) share a home and pile up in one cluster. The map does not thrash on such a
///   cluster (a resize would rebuild it, so none starts), but a lookup walks it, so a map of
///   such keys slows down in proportion to how many of them share a home. Do not pass an
///   identity-like hasher unless the keys' low bits are already spread.
///
/// ```
/// use atomicmap::AtomicMap;
///
/// let hits: AtomicMap<u64, u64> = AtomicMap::new();
/// hits.insert(7, 1);
/// hits.update(&7, |count| count + 1);
/// assert_eq!(hits.get(&7), Some(2));
/// std::thread::scope(|s| {
///     s.spawn(|| hits.upsert(8, || 1, |count| count + 1));
///     s.spawn(|| hits.upsert(8, || 1, |count| count + 1));
/// });
/// assert_eq!(hits.get(&8), Some(2));
/// ```
pub struct AtomicMap<K: 'static, V: 'static, S = DefaultHashBuilder> {
    raw: RawMap<K, V, S>,
    /// Snapshots taken, for `stats()`: each is also a table generation, which `stats()`
    /// subtracts to count resizes. Relaxed: a figure to report, ordered with nothing.
    snapshots: AtomicU64,
}

impl<K, V> AtomicMap<K, V, DefaultHashBuilder>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// An empty map with a small table.
    pub fn new() -> Self {
        Self::with_hasher(DefaultHashBuilder::default())
    }

    /// An empty map that holds `capacity` entries without resizing. Removes never shrink its
    /// table below that (nor does [`clear`](Self::clear)); [`shrink_to`](Self::shrink_to) lowers
    /// it.
    ///
    /// # Panics
    /// If `capacity` overflows or cannot be allocated; see
    /// [`try_with_capacity`](Self::try_with_capacity).
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, DefaultHashBuilder::default())
    }

    /// Like [`with_capacity`](Self::with_capacity), but reports an impossible capacity instead
    /// of panicking.
    pub fn try_with_capacity(capacity: usize) -> Result<Self, CapacityError> {
        Self::try_with_capacity_and_hasher(capacity, DefaultHashBuilder::default())
    }
}

impl<K, V, S> AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher,
{
    /// An empty map using `hasher`.
    pub fn with_hasher(hasher: S) -> Self {
        Self::with_capacity_and_hasher(0, hasher)
    }

    /// An empty map using `hasher` that holds `capacity` entries without resizing, and never
    /// shrinks below that on its own (see [`with_capacity`](AtomicMap::with_capacity)).
    ///
    /// # Panics
    /// If `capacity` overflows or cannot be allocated.
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        match Self::try_with_capacity_and_hasher(capacity, hasher) {
            Ok(map) => map,
            Err(error) => panic!("AtomicMap::with_capacity({capacity}): {error}"),
        }
    }

    /// Like [`with_capacity_and_hasher`](Self::with_capacity_and_hasher), but reports an
    /// impossible capacity instead of panicking.
    pub fn try_with_capacity_and_hasher(capacity: usize, hasher: S) -> Result<Self, CapacityError> {
        RawMap::with_capacity(capacity, hasher).map(|raw| AtomicMap {
            raw,
            snapshots: AtomicU64::new(0),
        })
    }

    /// The map's hasher.
    pub fn hasher(&self) -> &S {
        self.raw.hasher()
    }

    /// Pins the calling thread so that several operations share one pin, and so that values can
    /// be borrowed instead of cloned. Memory retired while a `MapRef` lives is held back, so keep
    /// it short-lived.
    #[inline]
    pub fn pin(&self) -> MapRef<'_, K, V, S> {
        MapRef::new(self)
    }

    /// A clone of the value of `key`.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
        V: Clone,
    {
        self.pin().get(key).map(ValueRef::into_owned)
    }

    /// Runs `read` on the value of `key`, without cloning it.
    #[inline]
    pub fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.pin().get_with(key, read)
    }

    /// Clones of the values of a batch of keys, in the order of `keys`, with the lookups'
    /// cache misses overlapped; see [`MapRef::get_many`].
    #[inline]
    pub fn get_many<Q, const N: usize>(&self, keys: [&Q; N]) -> [Option<V>; N]
    where
        Q: Hash + Equivalent<K> + ?Sized,
        V: Clone,
    {
        self.pin()
            .get_many(keys)
            .map(|value| value.map(ValueRef::into_owned))
    }

    /// Whether `key` has a value.
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.pin().contains_key(key)
    }

    /// Sets the value of `key`, returning the value it replaced. The replaced value may still be
    /// read by other threads, so it is lent, not moved out: a [`GuardedRef`] that reads like
    /// `&V` and holds a pin until dropped (call [`into_owned`](GuardedRef::into_owned) for a
    /// clone). So `insert` needs no `V: Clone`, and a map of `AtomicU64` counters works:
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let hits: AtomicMap<&str, AtomicU64> = AtomicMap::new();
    /// assert!(hits.insert("/", AtomicU64::new(0)).is_none());
    /// hits.entry("/").or_default().fetch_add(1, Ordering::Relaxed);
    /// let replaced = hits.insert("/", AtomicU64::new(10)).expect("was there");
    /// assert_eq!(replaced.load(Ordering::Relaxed), 1);
    /// ```
    #[inline]
    pub fn insert(&self, key: K, value: V) -> Option<GuardedRef<'_, V>> {
        self.pin().keep_lent(|pinned| pinned.insert(key, value))
    }

    /// Sets the value of `key`; true if it replaced one. Unlike [`insert`](Self::insert) it
    /// never reads the replaced value, which for a boxed value saves a dependent cache miss.
    pub(crate) fn insert_replacing(&self, key: K, value: V) -> bool {
        self.pin().insert(key, value).is_some()
    }

    /// Removes `key`, returning its value, lent as [`insert`](Self::insert) lends the value it
    /// replaced.
    #[inline]
    pub fn remove<Q>(&self, key: &Q) -> Option<GuardedRef<'_, V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.pin().keep_lent(|pinned| pinned.remove(key))
    }

    /// Inserts `value` under `key` if the key has none (`Ok`); otherwise leaves the map as it
    /// is, drops `value` and returns the key's value (`Err`). See [`MapRef::try_insert`].
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let leases: AtomicMap<&str, u32> = AtomicMap::new();
    /// assert!(leases.try_insert("db", 1).is_ok());
    /// assert_eq!(leases.try_insert("db", 2).map_err(|held| *held), Err(1));
    /// ```
    pub fn try_insert(&self, key: K, value: V) -> Result<(), GuardedRef<'_, V>> {
        match self
            .pin()
            .keep_lent(|pinned| pinned.try_insert(key, value).err())
        {
            None => Ok(()),
            Some(held) => Err(held),
        }
    }

    /// Removes `key` if `remove(&value)` says so, in one linearizable step; returns the removed
    /// value. `remove` may run more than once when writers race. See [`MapRef::remove_if`].
    pub fn remove_if<Q>(&self, key: &Q, remove: impl FnMut(&V) -> bool) -> Option<GuardedRef<'_, V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.pin().keep_lent(|pinned| pinned.remove_if(key, remove))
    }

    /// Replaces the value of `key` by `new` if it equals `expected`, in one linearizable step:
    /// `Ok` with the replaced value, or `Err` with the value found (`None`: absent). See
    /// [`MapRef::compare_exchange`].
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let leader: AtomicMap<&str, &str> = [("shard-1", "node-a")].into_iter().collect();
    /// assert!(leader.compare_exchange("shard-1", &"node-a", "node-b").is_ok());
    /// let lost = leader.compare_exchange("shard-1", &"node-a", "node-c");
    /// assert_eq!(lost.map_err(|now| now.map(|now| *now)), Err(Some("node-b")));
    /// ```
    pub fn compare_exchange<Q>(
        &self,
        key: &Q,
        expected: &V,
        new: V,
    ) -> Result<GuardedRef<'_, V>, Option<GuardedRef<'_, V>>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
        V: PartialEq,
    {
        let mut swapped = false;
        let found =
            self.pin()
                .keep_lent(|pinned| match pinned.compare_exchange(key, expected, new) {
                    Ok(replaced) => {
                        swapped = true;
                        Some(replaced)
                    }
                    Err(current) => current,
                });
        if swapped {
            Ok(found.expect("a swap replaced a value"))
        } else {
            Err(found)
        }
    }

    /// The entry of `key`, for inserting or modifying it in one linearizable step; see
    /// [`Entry`] for which closures may run more than once.
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let words: AtomicMap<&str, u32> = AtomicMap::new();
    /// for word in ["a", "b", "a"] {
    ///     words.entry(word).and_modify(|count| count + 1).or_insert(1);
    /// }
    /// assert_eq!(words.get("a"), Some(2));
    /// assert_eq!(*words.entry("c").or_default(), 0);
    /// ```
    pub fn entry(&self, key: K) -> Entry<'_, K, V, S> {
        Entry::new(self.pin(), key)
    }

    /// Replaces the value of `key` (if it has one) by `change(&value)` and returns the new value.
    /// `change` may run more than once when writers race; only its last result is stored.
    #[inline]
    pub fn update<Q>(&self, key: &Q, change: impl FnMut(&V) -> V) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
        V: Clone,
    {
        self.pin().update(key, change).map(ValueRef::into_owned)
    }

    /// Sets `key` to `insert()` if it has no value, or to `update(&value)` if it has; returns the
    /// value stored. `insert` runs at most once; `update` may run more than once when writers
    /// race.
    pub fn upsert(&self, key: K, insert: impl FnOnce() -> V, update: impl FnMut(&V) -> V) -> V
    where
        V: Clone,
    {
        self.pin().upsert(key, insert, update).into_owned()
    }

    /// Inserts, updates or removes `key` in one linearizable step: `compute` sees the current
    /// value (`None`: absent) and returns the new one (`None`: remove, or stay absent). Returns
    /// the value the key holds afterwards. `compute` may run more than once when writers race.
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let stock: AtomicMap<&str, u32> = AtomicMap::new();
    /// stock.insert("apples", 1);
    /// // Take one apple; the last one taken removes the key.
    /// let left = stock.compute("apples", |count| count.and_then(|&n| n.checked_sub(1)).filter(|&n| n > 0));
    /// assert_eq!(left, None);
    /// assert!(!stock.contains_key("apples"));
    /// ```
    pub fn compute(&self, key: K, compute: impl FnMut(Option<&V>) -> Option<V>) -> Option<V>
    where
        V: Clone,
    {
        self.pin().compute(key, compute).map(ValueRef::into_owned)
    }

    /// The value of `key`, inserting `make()` first if it has none. `make` runs at most once,
    /// and not at all if the key has a value.
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V
    where
        V: Clone,
    {
        self.pin().get_or_insert_with(key, make).into_owned()
    }

    /// Number of keys with a value: exact when no write is in flight.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the map has no values (see [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry that `keep` rejects. Each entry is judged and removed atomically on
    /// its own (an entry whose value changed after it was judged is kept); the whole is not
    /// atomic.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        let guard = self.raw.pin();
        let mut doomed = Vec::new();
        self.raw.for_each_entry(&guard, |key, value| {
            if !key.with(|key| value.with(|value| keep(key, value))) {
                doomed.push((key, value));
            }
        });
        for (key, judged) in doomed {
            key.with(|key| {
                self.raw.write_borrowed(&guard, key, |current| {
                    (current == Some(judged)).then_some(Staged::REMOVE)
                })
            });
        }
    }

    /// Removes every entry and shrinks the table, down to the capacity reserved with
    /// [`with_capacity`](AtomicMap::with_capacity) or [`reserve`](Self::reserve), if any. Not
    /// atomic: each key is removed at its own instant, and entries inserted during the call
    /// may survive it.
    pub fn clear(&self) {
        self.retain(|_, _| false);
        self.raw.compact(&self.raw.pin());
    }

    /// Makes room for `additional` more entries without further resizing. Removes never shrink
    /// the table below that room afterwards; [`shrink_to`](Self::shrink_to) lowers it.
    ///
    /// # Panics
    /// If the capacity overflows or cannot be allocated; see [`try_reserve`](Self::try_reserve).
    pub fn reserve(&self, additional: usize) {
        if let Err(error) = self.try_reserve(additional) {
            panic!("AtomicMap::reserve({additional}): {error}");
        }
    }

    /// Makes room for `additional` more entries, or says why it cannot.
    pub fn try_reserve(&self, additional: usize) -> Result<(), CapacityError> {
        let wanted = self
            .len()
            .checked_add(additional)
            .ok_or(CapacityError::Overflow)?;
        self.raw.reserve(&self.raw.pin(), wanted)
    }

    /// Shrinks the table to hold the current entries, or `min_capacity` entries if that is more,
    /// and lowers the capacity that removes and [`clear`](Self::clear) keep to `min_capacity`
    /// (from what [`with_capacity`](AtomicMap::with_capacity) or [`reserve`](Self::reserve)
    /// asked for). A `min_capacity` above the current capacity changes nothing. Waits for the
    /// resize, as `reserve` does; writers keep running meanwhile. If the smaller table cannot
    /// be allocated, the map keeps its table.
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let map: AtomicMap<u64, u64> = AtomicMap::with_capacity(100_000);
    /// for key in 0..1_000 {
    ///     map.insert(key, key);
    /// }
    /// for key in 0..1_000 {
    ///     map.remove(&key);
    /// }
    /// assert!(map.capacity() >= 100_000, "removes keep the capacity asked for");
    /// map.shrink_to(10);
    /// assert!(map.capacity() < 100_000);
    /// assert!(map.capacity() >= 10);
    /// ```
    pub fn shrink_to(&self, min_capacity: usize) {
        self.raw.shrink_to(&self.raw.pin(), min_capacity);
    }

    /// [`shrink_to(0)`](Self::shrink_to): shrinks the table to its entries, and lets removes
    /// shrink it as far as they empty it.
    pub fn shrink_to_fit(&self) {
        self.shrink_to(0);
    }

    /// Entries the current table is sized for: it holds at least this many without growing
    /// (half its slots; it grows later than that only when probes get long, see `raw::policy`).
    /// [`with_capacity(n)`](Self::with_capacity) makes this at least `n`.
    pub fn capacity(&self) -> usize {
        self.raw.capacity(&self.raw.pin()) / 2
    }

    /// The map's internals: [`MapStats`]. Costs a walk of every slot of the table under a pin
    /// (O(capacity)), for the tombstones and the longest probe; writers are not stopped, so
    /// under concurrent writes each figure is current but they are not one consistent state.
    /// `resizes` counts grows, shrinks and compactions (not the freezing migrations of
    /// snapshots, counted in `snapshots_taken`); `migrations_in_flight` is 0 or 1 (only the
    /// current table is ever resized, and a snapshot in flight counts as one);
    /// `garbage_bytes` counts replaced and removed boxed keys and values and old tables
    /// (values stored inside their slot leave no garbage).
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let map: AtomicMap<u64, String> = AtomicMap::new();
    /// for n in 0..1_000 {
    ///     map.insert(n, n.to_string());
    /// }
    /// map.remove(&7);
    /// let stats = map.stats();
    /// assert_eq!(stats.len, 999);
    /// assert!(stats.capacity >= 999);
    /// assert!(stats.resizes > 0, "grew from its initial table");
    /// assert_eq!(stats.tombstones, 1);
    /// ```
    pub fn stats(&self) -> MapStats {
        let table = self.raw.table_stats(&self.raw.pin());
        let snapshots_taken = self.snapshots.load(Ordering::Relaxed);
        MapStats {
            len: self.len(),
            capacity: table.slots / 2,
            resizes: table.generation.saturating_sub(snapshots_taken),
            migrations_in_flight: usize::from(table.migrating),
            tombstones: table.tombstones,
            longest_probe: table.longest_probe,
            garbage_bytes: self.raw.garbage_bytes(),
            snapshots_taken,
        }
    }

    /// A weakly consistent iterator over clones of the entries (see the type docs), walking the
    /// table lazily under a pin the iterator holds (so drop it when done). To borrow entries
    /// instead of cloning them, iterate a pinned handle: [`MapRef::iter`].
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let map: AtomicMap<u64, u64> = (0..4).map(|n| (n, n * n)).collect();
    /// let mut squares: Vec<(u64, u64)> = map.iter().collect();
    /// squares.sort();
    /// assert_eq!(squares, [(0, 0), (1, 1), (2, 4), (3, 9)]);
    /// let total: u64 = (&map).into_iter().map(|(_, square)| square).sum();
    /// assert_eq!(total, 14);
    /// ```
    pub fn iter(&self) -> ClonedIter<'_, K, V, S>
    where
        K: Clone,
        V: Clone,
    {
        ClonedIter {
            walk: PinnedWalk::new(&self.raw),
        }
    }

    /// Clones of the keys, walked lazily as [`iter`](Self::iter) walks the entries.
    pub fn keys(&self) -> impl Iterator<Item = K> + '_
    where
        K: Clone,
    {
        let mut walk = PinnedWalk::new(&self.raw);
        std::iter::from_fn(move || walk.next_with(|key, _| key.with(K::clone)))
    }

    /// Clones of the values, walked lazily as [`iter`](Self::iter) walks the entries.
    pub fn values(&self) -> impl Iterator<Item = V> + '_
    where
        V: Clone,
    {
        let mut walk = PinnedWalk::new(&self.raw);
        std::iter::from_fn(move || walk.next_with(|_, value| value.with(V::clone)))
    }

    /// Removes every entry, returning them. Each remove is linearizable on its own; the whole is
    /// not atomic, and entries inserted during the call may or may not be drained. Returns
    /// clones, because the removed entries may still be read by other threads; for values that
    /// are not `Clone`, drain a pinned handle ([`MapRef::drain`]).
    pub fn drain(&self) -> Vec<(K, V)>
    where
        K: Clone,
        V: Clone,
    {
        self.extract_if(|_, _| true)
    }

    /// Removes the entries that `extract` accepts, returning them (as clones, as
    /// [`drain`](Self::drain) does). Judging and removing an entry is one linearizable step;
    /// `extract` may run more than once for a key when writers race. See
    /// [`MapRef::extract_if`].
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let map: AtomicMap<u32, u32> = (0..10).map(|n| (n, n)).collect();
    /// let mut odd = map.extract_if(|_, value| value % 2 == 1);
    /// odd.sort();
    /// assert_eq!(odd, [(1, 1), (3, 3), (5, 5), (7, 7), (9, 9)]);
    /// assert_eq!(map.len(), 5);
    /// ```
    pub fn extract_if(&self, extract: impl FnMut(&K, &V) -> bool) -> Vec<(K, V)>
    where
        K: Clone,
        V: Clone,
    {
        let pinned = self.pin();
        let removed = pinned
            .extract_if(extract)
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        removed
    }

    /// The map's contents at one instant, as an immutable [`MapSnapshot`]; its version is the
    /// generation of the table it froze (the number of tables the map had before it), so it
    /// grows with every snapshot and every resize.
    ///
    /// Lock-free and linearizable, by a *freezing migration*: the table is migrated as in a
    /// resize, recording each slot's entry as it moves, and the snapshot is the map at the
    /// instant the last slot moved. Costs: the caller allocates a successor table and an image
    /// (16 bytes per slot each), helps copy, and then clones every entry into the snapshot;
    /// writers that meet the migration copy at most one chunk each, and a writer whose key has
    /// already moved waits until the migration ends (never for the clone). Readers neither wait
    /// nor help. Memory that writers retire during the call is freed after it. If this thread
    /// holds a [`MapRef`] of the map, that memory is held until the `MapRef` is dropped or
    /// refreshed. Unlike [`iter`](Self::iter), which reads every key at its own moment, a
    /// snapshot never mixes states that did not coexist.
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let map: AtomicMap<u64, u64> = (0..100).map(|key| (key, key)).collect();
    /// let before = map.snapshot();
    /// map.insert(7, 700);
    /// let after = map.snapshot();
    /// assert_eq!(before.get(&7), Some(&7));
    /// assert_eq!(after.get(&7), Some(&700));
    /// assert!(after.version() > before.version());
    /// ```
    pub fn snapshot(&self) -> MapSnapshot<K, V, S>
    where
        K: Clone,
        V: Clone,
        S: Clone,
    {
        let guard = self.raw.pin();
        let mut entries = Vec::with_capacity(self.len());
        let version = self.raw.snapshot(&guard, |key, value| {
            entries.push((key.with(K::clone), value.with(V::clone)));
        });
        self.snapshots.fetch_add(1, Ordering::Relaxed);
        MapSnapshot::from_entries(entries, self.raw.hasher().clone(), version)
    }
}

/// The iterator of [`AtomicMap::iter`] and `for (key, value) in &map`: clones of the entries,
/// walked lazily under a pin the iterator holds. Weakly consistent (see [`AtomicMap`]).
pub struct ClonedIter<'m, K: 'static, V: 'static, S> {
    walk: PinnedWalk<'m, K, V, S>,
}

impl<K, V, S> Iterator for ClonedIter<'_, K, V, S>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
    S: BuildHasher,
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        self.walk
            .next_with(|key, value| (key.with(K::clone), value.with(V::clone)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.walk.slots_left()))
    }
}

impl<K, V, S> fmt::Debug for ClonedIter<'_, K, V, S>
where
    K: Hash + Eq + 'static,
    V: 'static,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClonedIter")
            .field("slots_left", &self.walk.slots_left())
            .finish_non_exhaustive()
    }
}

impl<'m, K, V, S> IntoIterator for &'m AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Send + Sync + Clone + 'static,
    S: BuildHasher,
{
    type Item = (K, V);
    type IntoIter = ClonedIter<'m, K, V, S>;

    fn into_iter(self) -> ClonedIter<'m, K, V, S> {
        self.iter()
    }
}

/// A new map with a copy of a [`snapshot`](AtomicMap::snapshot) of this one's entries and a
/// clone of its hasher: the copy is of one instant, even while other threads write.
impl<K, V, S> Clone for AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Send + Sync + Clone + 'static,
    S: BuildHasher + Clone,
{
    fn clone(&self) -> Self {
        let snapshot = self.snapshot();
        let copy = Self::with_capacity_and_hasher(snapshot.len(), self.hasher().clone());
        {
            let pinned = copy.pin();
            for (key, value) in &snapshot {
                pinned.insert(key.clone(), value.clone());
            }
        }
        copy
    }
}

/// Two maps are equal when a [`snapshot`](AtomicMap::snapshot) of each has the same entries.
/// The two snapshots are taken one after the other, so under concurrent writes the comparison
/// is of two instants, not one.
impl<K, V, S> PartialEq for AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Send + Sync + Clone + PartialEq + 'static,
    S: BuildHasher + Clone,
{
    fn eq(&self, other: &Self) -> bool {
        if std::ptr::eq(self, other) {
            return true;
        }
        let (mine, theirs) = (self.snapshot(), other.snapshot());
        mine.len() == theirs.len()
            && mine
                .iter()
                .all(|(key, value)| theirs.get(key) == Some(value))
    }
}

impl<K, V, S> Eq for AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Send + Sync + Clone + Eq + 'static,
    S: BuildHasher + Clone,
{
}

impl<K, V> Default for AtomicMap<K, V, DefaultHashBuilder>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S> fmt::Debug for AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + fmt::Debug + 'static,
    V: Send + Sync + fmt::Debug + 'static,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let guard = self.raw.pin();
        let mut map = f.debug_map();
        self.raw.for_each_entry(&guard, |key, value| {
            key.with(|key| value.with(|value| map.entry(key, value)));
        });
        map.finish()
    }
}

impl<K, V, S> FromIterator<(K, V)> for AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher + Default,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let entries = entries.into_iter();
        let mut map = Self::with_capacity_and_hasher(entries.size_hint().0, S::default());
        map.extend(entries);
        map
    }
}

impl<K, V, S> Extend<(K, V)> for AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        (&*self).extend(entries);
    }
}

impl<K, V, S> Extend<(K, V)> for &AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        self.pin().insert_all(entries);
    }
}

/// Small, Miri-sized checks of the unsafe layer: boxed and inline words, resizes, retirement.
#[cfg(test)]
mod tests {
    use super::AtomicMap;
    use std::sync::Arc;

    /// Boxed keys and values in a snapshot's image stay allocated while a writer replaces and
    /// removes them during the freeze and the clone (Miri checks the reads).
    #[test]
    fn snapshot_of_boxed_entries_while_a_writer_replaces_them() {
        let map: Arc<AtomicMap<String, String>> = Arc::new(AtomicMap::new());
        for i in 0..40 {
            map.insert(format!("k{i}"), format!("v{i}"));
        }
        let writer = {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                for i in 0..40 {
                    map.insert(format!("k{i}"), format!("w{i}"));
                    map.remove(&format!("k{}", (i + 20) % 40));
                }
            })
        };
        let snapshots: Vec<_> = (0..3).map(|_| map.snapshot()).collect();
        writer.join().unwrap();
        for snapshot in &snapshots {
            for (key, value) in snapshot {
                assert_eq!(key[1..], value[1..], "{key} = {value}");
            }
        }
        assert!(snapshots
            .windows(2)
            .all(|pair| pair[0].version() < pair[1].version()));
    }

    #[test]
    fn inline_and_boxed_values_survive_resizes_and_removes() {
        let map: AtomicMap<u64, u64> = AtomicMap::new();
        let big = 1u64 << 63;
        for key in 0..200u64 {
            let value = if key % 2 == 0 { key } else { big + key };
            assert_eq!(map.insert(key, value), None);
        }
        for key in 0..200u64 {
            let value = if key % 2 == 0 { key } else { big + key };
            assert_eq!(map.get(&key), Some(value));
            assert_eq!(
                map.update(&key, |v| v.wrapping_add(1)),
                Some(value.wrapping_add(1))
            );
        }
        for key in 0..190u64 {
            assert!(map.remove(&key).is_some());
        }
        assert_eq!(map.len(), 10);
        assert_eq!(map.iter().count(), 10);
    }

    #[test]
    fn boxed_keys_and_values_are_freed_once_across_threads() {
        let map: Arc<AtomicMap<String, Arc<u32>>> = Arc::new(AtomicMap::new());
        let marker = Arc::new(7u32);
        let writers: Vec<_> = (0..2)
            .map(|thread| {
                let map = Arc::clone(&map);
                let marker = Arc::clone(&marker);
                std::thread::spawn(move || {
                    for i in 0..60 {
                        map.insert(format!("k{}", i % 20), Arc::clone(&marker));
                        if i % 3 == thread {
                            map.remove(&format!("k{}", (i + 7) % 20));
                        }
                        let _ = map.get(format!("k{}", i % 20).as_str());
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        map.clear();
        assert!(map.is_empty());
        drop(map);
        assert_eq!(
            Arc::strong_count(&marker),
            1,
            "every stored clone was dropped"
        );
    }

    /// A value lent by `insert` stays readable while writers retire it and reclamation passes
    /// run (Miri checks the reads through `GuardedRef`).
    #[test]
    fn a_lent_previous_value_outlives_its_retirement() {
        let map: AtomicMap<u8, String> = AtomicMap::new();
        map.insert(1, "one".to_string());
        let previous = map.insert(1, "uno".to_string()).expect("replaced");
        let rounds = if cfg!(miri) { 64 } else { 4_096 };
        for round in 0..rounds {
            map.insert(1, round.to_string());
        }
        let removed = map.remove(&1).expect("present");
        assert_eq!(*previous, "one");
        assert_eq!(*removed, (rounds - 1).to_string());
    }

    /// A walk that owns its pin keeps reading boxed entries while the same thread replaces,
    /// removes and grows past them (the table it walks is retired meanwhile).
    #[test]
    fn a_cloning_walk_reads_boxed_entries_while_they_are_replaced() {
        let map: AtomicMap<String, String> = (0..40)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let mut walk = map.iter();
        let first = walk.next().expect("forty entries");
        for i in 0..40 {
            map.insert(format!("k{i}"), format!("w{i}"));
        }
        for i in 40..200 {
            map.insert(format!("k{i}"), format!("v{i}"));
        }
        let mut seen = vec![first];
        seen.extend(walk);
        assert!(seen.iter().all(|(key, value)| key[1..] == value[1..]));
        assert!(seen.len() >= 40);
    }

    #[test]
    fn pinned_reads_borrow_boxed_values() {
        let map: AtomicMap<u8, String> = AtomicMap::new();
        map.insert(1, "one".to_string());
        let pinned = map.pin();
        let borrowed = pinned.get(&1).unwrap();
        map.insert(1, "uno".to_string());
        assert_eq!(&*borrowed, "one", "a pin keeps the replaced value alive");
        assert_eq!(&*pinned.get(&1).unwrap(), "uno");
    }
}
