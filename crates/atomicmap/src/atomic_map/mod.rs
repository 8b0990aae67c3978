//! [`AtomicMap`]: the lock-free open-addressing hash map.
//!
//! The protocol is described in `raw.rs` (slots, the one commit CAS, linearization points),
//! `resize.rs` (cooperative migration) and `freeze.rs` (snapshots: a migration that records
//! what it moves); slot words in `word.rs`; reclamation in `reclaim`.

mod freeze;
mod pending;
mod raw;
mod resize;
mod table;
mod word;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::ops::Deref;

use crate::error::CapacityError;
use crate::hash::DefaultHashBuilder;
use crate::reclaim::Guard;
use crate::snapshot::MapSnapshot;
use crate::sync::Ordering;
use pending::{PendingKey, PendingValue};
use raw::{Query, RawMap};
use word::{Codec, ABSENT};

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

    /// An empty map that holds `capacity` entries without resizing.
    ///
    /// # Panics
    /// If `capacity` overflows or cannot be allocated; see
    /// [`try_with_capacity_and_hasher`](Self::try_with_capacity_and_hasher).
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, DefaultHashBuilder::default())
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

    /// An empty map using `hasher` that holds `capacity` entries without resizing.
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
        let slots = resize::capacity_for(capacity).ok_or(CapacityError::Overflow)?;
        RawMap::new(slots, hasher)
            .map(|raw| AtomicMap { raw })
            .map_err(|_| CapacityError::AllocationFailed)
    }

    /// The map's hasher.
    pub fn hasher(&self) -> &S {
        &self.raw.hasher
    }

    /// Pins the calling thread so that several operations share one pin, and so that values can
    /// be borrowed instead of cloned. Memory retired while a `MapRef` lives is held back, so keep
    /// it short-lived.
    pub fn pin(&self) -> MapRef<'_, K, V, S> {
        MapRef {
            map: self,
            guard: self.raw.collector.enter(),
        }
    }

    /// A clone of the value of `key`.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.get_with(key, V::clone)
    }

    /// Runs `read` on the value of `key`, without cloning it.
    #[inline]
    pub fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_with_in(&self.raw.collector.enter(), key, read)
    }

    #[inline]
    fn get_with_in<Q, R>(&self, guard: &Guard<'_>, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.raw.hash(key);
        let value = self.raw.find(guard, hash, key)?;
        Some(with_value::<V, R>(value, read))
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_with(key, |_| ()).is_some()
    }

    /// Sets the value of `key`, returning the value it replaced.
    pub fn insert(&self, key: K, value: V) -> Option<V>
    where
        V: Clone,
    {
        self.insert_in(&self.raw.collector.enter(), key, value)
    }

    #[inline]
    fn insert_in(&self, guard: &Guard<'_>, key: K, value: V) -> Option<V>
    where
        V: Clone,
    {
        let previous = self.store_in(guard, key, value);
        self.cloned_previous(previous)
    }

    /// Sets the value of `key`; true if it replaced one. Unlike [`insert`](Self::insert) it
    /// never reads the replaced value, which for a boxed value saves a dependent cache miss.
    pub(crate) fn insert_replacing(&self, key: K, value: V) -> bool {
        self.store_in(&self.raw.collector.enter(), key, value) != ABSENT
    }

    /// Commits `value` for `key`; returns the replaced value word (`ABSENT` if none), which
    /// `guard` protects.
    #[inline]
    fn store_in(&self, guard: &Guard<'_>, key: K, value: V) -> u64 {
        let hash = self.raw.hash(&key);
        let mut pending_key = None;
        let query = self.owned_query(key, hash, &mut pending_key);
        let mut pending_value = PendingValue::new(value);
        let written = self.raw.write::<K>(guard, hash, query, |_| {
            Some(pending_value.word(&self.raw.collector, guard))
        });
        pending_value.published();
        written.previous
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.remove_in(&self.raw.collector.enter(), key)
    }

    #[inline]
    fn remove_in<Q>(&self, guard: &Guard<'_>, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let hash = self.raw.hash(key);
        let written = self
            .raw
            .write(guard, hash, Query::Borrowed(key), |current| {
                (current != ABSENT).then_some(ABSENT)
            });
        if written.committed {
            self.raw.after_remove(guard);
        }
        self.cloned_previous(written.previous)
    }

    /// Replaces the value of `key` (if it has one) by `change(&value)` and returns the new value.
    /// `change` may run more than once when writers race; only its last result is stored.
    pub fn update<Q>(&self, key: &Q, change: impl FnMut(&V) -> V) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.update_in(&self.raw.collector.enter(), key, change)
    }

    #[inline]
    fn update_in<Q>(&self, guard: &Guard<'_>, key: &Q, mut change: impl FnMut(&V) -> V) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let hash = self.raw.hash(key);
        let mut attempt: Option<PendingValue<V>> = None;
        let mut result: Option<V> = None;
        let written = self
            .raw
            .write(guard, hash, Query::Borrowed(key), |current| {
                if current == ABSENT {
                    return None;
                }
                let new = with_value::<V, V>(current, &mut change);
                result = Some(new.clone());
                let pending = attempt.insert(PendingValue::new(new));
                Some(pending.word(&self.raw.collector, guard))
            });
        if written.committed {
            attempt.as_mut().map(PendingValue::published);
            result
        } else {
            None
        }
    }

    /// Sets `key` to `insert()` if it has no value, or to `update(&value)` if it has; returns the
    /// value stored. The closures may run more than once when writers race.
    pub fn upsert(&self, key: K, insert: impl FnOnce() -> V, update: impl FnMut(&V) -> V) -> V
    where
        V: Clone,
    {
        self.compute(key, insert, update)
    }

    /// Alias of [`upsert`](Self::upsert), named after `ConcurrentHashMap.compute`.
    pub fn compute(&self, key: K, insert: impl FnOnce() -> V, update: impl FnMut(&V) -> V) -> V
    where
        V: Clone,
    {
        self.compute_in(&self.raw.collector.enter(), key, insert, update)
    }

    fn compute_in(
        &self,
        guard: &Guard<'_>,
        key: K,
        insert: impl FnOnce() -> V,
        mut update: impl FnMut(&V) -> V,
    ) -> V
    where
        V: Clone,
    {
        let hash = self.raw.hash(&key);
        let mut pending_key = None;
        let query = self.owned_query(key, hash, &mut pending_key);
        let mut insert = Some(insert);
        let mut fresh: Option<PendingValue<V>> = None;
        let mut attempt: Option<PendingValue<V>> = None;
        let mut result: Option<V> = None;
        let written = self.raw.write::<K>(guard, hash, query, |current| {
            let pending = if current == ABSENT {
                if fresh.is_none() {
                    let make = insert.take().expect("the insert closure runs once");
                    fresh = Some(PendingValue::new(make()));
                }
                fresh.as_mut().expect("just set")
            } else {
                attempt.insert(PendingValue::new(with_value::<V, V>(current, &mut update)))
            };
            let word = pending.word(&self.raw.collector, guard);
            result = Some(with_value::<V, V>(word, V::clone));
            Some(word)
        });
        debug_assert!(written.committed);
        if written.previous == ABSENT {
            fresh.as_mut().map(PendingValue::published);
        } else {
            attempt.as_mut().map(PendingValue::published);
        }
        result.expect("a committed write decided a value")
    }

    /// The value of `key`, inserting `make()` first if it has none. `make` runs at most once,
    /// and not at all if the key has a value.
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V
    where
        V: Clone,
    {
        self.get_or_insert_with_in(&self.raw.collector.enter(), key, make)
    }

    fn get_or_insert_with_in(&self, guard: &Guard<'_>, key: K, make: impl FnOnce() -> V) -> V
    where
        V: Clone,
    {
        let hash = self.raw.hash(&key);
        let mut pending_key = None;
        let query = self.owned_query(key, hash, &mut pending_key);
        let mut make = Some(make);
        let mut fresh: Option<PendingValue<V>> = None;
        let written = self.raw.write::<K>(guard, hash, query, |current| {
            if current != ABSENT {
                return None;
            }
            let pending = fresh
                .get_or_insert_with(|| PendingValue::new(make.take().expect("make runs once")()));
            Some(pending.word(&self.raw.collector, guard))
        });
        if written.committed {
            let pending = fresh.as_mut().expect("a committed insert made a value");
            pending.published();
            let word = pending.word(&self.raw.collector, guard);
            with_value::<V, V>(word, V::clone)
        } else {
            with_value::<V, V>(written.previous, V::clone)
        }
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
    /// its own; the whole is not atomic.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        let guard = self.raw.collector.enter();
        let mut doomed = Vec::new();
        self.raw.for_each_entry(&guard, |key, value| {
            let keep_it =
                with_key::<K, bool>(key, |key| with_value::<V, bool>(value, |v| keep(key, v)));
            if !keep_it {
                doomed.push((key, value));
            }
        });
        for (key, value) in doomed {
            with_key::<K, ()>(key, |key| {
                let hash = self.raw.hash(key);
                let written = self
                    .raw
                    .write(&guard, hash, Query::Borrowed(key), |current| {
                        (current == value).then_some(ABSENT)
                    });
                if written.committed {
                    self.raw.after_remove(&guard);
                }
            });
        }
    }

    /// Removes every entry and shrinks the table. Not atomic: each key is removed at its own
    /// instant, and entries inserted during the call may survive it.
    pub fn clear(&self) {
        self.retain(|_, _| false);
        let guard = self.raw.collector.enter();
        let capacity = resize::capacity_for(self.len()).unwrap_or(usize::MAX);
        self.raw.resize_now(&guard, capacity);
    }

    /// Makes room for `additional` more entries without further resizing.
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
        let capacity = resize::capacity_for(wanted).ok_or(CapacityError::Overflow)?;
        let guard = self.raw.collector.enter();
        if self.raw.root(&guard).capacity() >= capacity {
            return Ok(());
        }
        if self.raw.resize_now(&guard, capacity) {
            Ok(())
        } else {
            Err(CapacityError::AllocationFailed)
        }
    }

    /// A weakly consistent iterator over clones of the entries (see the type docs). It keeps the
    /// thread pinned while it lives.
    pub fn iter(&self) -> Iter<K, V>
    where
        K: Clone,
        V: Clone,
    {
        let guard = self.raw.collector.enter();
        let mut entries = Vec::new();
        self.raw.for_each_entry(&guard, |key, value| {
            entries.push((
                with_key::<K, K>(key, K::clone),
                with_value::<V, V>(value, V::clone),
            ));
        });
        Iter {
            entries: entries.into_iter(),
        }
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
        let guard = self.raw.collector.enter();
        guard.hold_retired();
        let (image, version) = self.raw.freeze(&guard);
        let mut entries = HashMap::with_capacity_and_hasher(self.len(), self.raw.hasher.clone());
        for slot in image.slots.iter() {
            // The migration published the image (module `freeze`): relaxed loads suffice.
            let key = slot.key.load(Ordering::Relaxed);
            let value = slot.value.load(Ordering::Relaxed);
            if word::is_key(key) && word::is_value(value) {
                // Boxes in the image stay allocated: `guard` holds back everything retired
                // since the freeze began, and each was reachable then.
                entries.insert(
                    with_key::<K, K>(key, K::clone),
                    with_value::<V, V>(value, V::clone),
                );
            }
        }
        MapSnapshot::from_table(entries, version)
    }

    /// The query for an owned key: its word if it is stored inline, else a pending key that
    /// `pending` holds (boxed on first claim) for the write to claim a slot with.
    #[inline]
    fn owned_query<'q, 'c>(
        &'c self,
        key: K,
        hash: u64,
        pending: &'q mut Option<PendingKey<'c, K>>,
    ) -> Query<'q, 'c, K, K> {
        match Codec::<K>::inline_word(&key) {
            Some(word) => Query::Inline(word),
            None => Query::Owned(pending.insert(PendingKey::new(key, hash, &self.raw.collector))),
        }
    }

    fn cloned_previous(&self, previous: u64) -> Option<V>
    where
        V: Clone,
    {
        (previous != ABSENT).then(|| with_value::<V, V>(previous, V::clone))
    }
}

/// Runs `read` on the value behind a value word that the caller's guard protects.
#[inline]
fn with_value<V: 'static, R>(word: u64, read: impl FnOnce(&V) -> R) -> R {
    if word::is_inline(word) {
        read(&Codec::<V>::from_inline(word))
    } else {
        // SAFETY: a value word that is not inline is a box, protected by the caller's guard.
        read(&unsafe { word::boxed::<V>(word) }.item)
    }
}

/// Runs `read` on the key behind a key word that the caller's guard protects.
#[inline]
fn with_key<K: 'static, R>(word: u64, read: impl FnOnce(&K) -> R) -> R {
    if word::is_inline(word) {
        read(&Codec::<K>::from_inline(word))
    } else {
        // SAFETY: a key word that is not inline is a box, protected by the caller's guard.
        read(&unsafe { word::boxed::<K>(word) }.item)
    }
}

/// Iterator returned by [`AtomicMap::iter`].
pub struct Iter<K, V> {
    entries: std::vec::IntoIter<(K, V)>,
}

impl<K, V> Iterator for Iter<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        self.entries.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

/// A pinned handle on an [`AtomicMap`] from [`AtomicMap::pin`]: its lookups share one pin and
/// lend values for as long as the handle lives.
pub struct MapRef<'m, K: 'static, V: 'static, S> {
    map: &'m AtomicMap<K, V, S>,
    guard: Guard<'m>,
}

/// A value borrowed from a [`MapRef`]: a reference into the map, or the decoded value for types
/// stored inline.
pub enum ValueRef<'g, V> {
    /// A value stored in a box the pin keeps alive.
    Borrowed(&'g V),
    /// A value stored inline in its slot, decoded.
    Inline(V),
}

impl<V> Deref for ValueRef<'_, V> {
    type Target = V;

    fn deref(&self) -> &V {
        match self {
            ValueRef::Borrowed(value) => value,
            ValueRef::Inline(value) => value,
        }
    }
}

impl<K, V, S> MapRef<'_, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher,
{
    /// The value of `key`, borrowed for as long as this handle lives.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<ValueRef<'_, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.map.raw.hash(key);
        let value = self.map.raw.find(&self.guard, hash, key)?;
        Some(if word::is_inline(value) {
            ValueRef::Inline(Codec::<V>::from_inline(value))
        } else {
            // SAFETY: a boxed value protected by `self.guard`, which outlives the borrow.
            ValueRef::Borrowed(&unsafe { word::boxed::<V>(value) }.item)
        })
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Ends this handle's pin and starts a new one, so that a handle kept across many operations
    /// does not hold back memory retired meanwhile. Values borrowed from the handle must be
    /// gone first, which `&mut self` enforces.
    pub fn refresh(&mut self) {
        self.guard.refresh();
    }

    /// A clone of the value of `key`; [`AtomicMap::get`] under this handle's pin.
    #[inline]
    pub fn get_cloned<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.map.get_with_in(&self.guard, key, V::clone)
    }

    /// [`AtomicMap::insert`] under this handle's pin.
    #[inline]
    pub fn insert(&self, key: K, value: V) -> Option<V>
    where
        V: Clone,
    {
        self.map.insert_in(&self.guard, key, value)
    }

    /// [`AtomicMap::remove`] under this handle's pin.
    #[inline]
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.map.remove_in(&self.guard, key)
    }

    /// [`AtomicMap::update`] under this handle's pin.
    #[inline]
    pub fn update<Q>(&self, key: &Q, change: impl FnMut(&V) -> V) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.map.update_in(&self.guard, key, change)
    }

    /// [`AtomicMap::upsert`] under this handle's pin.
    pub fn upsert(&self, key: K, insert: impl FnOnce() -> V, update: impl FnMut(&V) -> V) -> V
    where
        V: Clone,
    {
        self.map.compute_in(&self.guard, key, insert, update)
    }

    /// [`AtomicMap::get_or_insert_with`] under this handle's pin.
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V
    where
        V: Clone,
    {
        self.map.get_or_insert_with_in(&self.guard, key, make)
    }
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
        let guard = self.raw.collector.enter();
        let mut map = f.debug_map();
        self.raw.for_each_entry(&guard, |key, value| {
            with_key::<K, ()>(key, |key| {
                with_value::<V, ()>(value, |value| {
                    map.entry(key, value);
                })
            })
        });
        map.finish()
    }
}

impl<K, V, S> FromIterator<(K, V)> for AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + Clone + 'static,
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
    V: Send + Sync + Clone + 'static,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        (&*self).extend(entries);
    }
}

impl<K, V, S> Extend<(K, V)> for &AtomicMap<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + Clone + 'static,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        for (key, value) in entries {
            self.insert(key, value);
        }
    }
}

// SAFETY: the map owns `K`s and `V`s and hands out clones or shared references to them from any
// thread, so it is `Send`/`Sync` exactly when they are both; the raw pointers inside are owned by
// the map and reclaimed through its collector.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Send> Send for AtomicMap<K, V, S> {}
// SAFETY: as above; `S` is only read (`&S`) by concurrent operations.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Sync> Sync for AtomicMap<K, V, S> {}

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
