//! [`MapRef`], the pinned handle on an [`AtomicMap`]: the one implementation of every
//! single-key operation. `AtomicMap`'s own methods pin, call the handle, and clone what it
//! lends (as papaya's do).

use std::fmt;
use std::hash::{BuildHasher, Hash};

use equivalent::Equivalent;

use super::raw::{RawMap, Shared, Staged, ValueRef, Walk, BATCH};
use super::AtomicMap;
use crate::reclaim::Guard;

/// A pinned handle on an [`AtomicMap`] from [`AtomicMap::pin`]: its operations share one pin
/// and lend values (without cloning them) for as long as the handle lives.
///
/// Memory that writers retire while a handle lives is held back until it is dropped or
/// [refreshed](Self::refresh), so keep handles short-lived.
pub struct MapRef<'m, K: 'static, V: 'static, S> {
    map: &'m AtomicMap<K, V, S>,
    guard: Guard<'m>,
}

impl<'m, K, V, S> MapRef<'m, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher,
{
    pub(super) fn new(map: &'m AtomicMap<K, V, S>) -> Self {
        MapRef {
            map,
            guard: map.raw.pin(),
        }
    }

    #[inline]
    fn raw(&self) -> &'m RawMap<K, V, S> {
        &self.map.raw
    }

    /// The value of `key`, borrowed for as long as this handle lives.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<ValueRef<'_, V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let raw = self.raw();
        raw.find(&self.guard, raw.hash(key), key)
    }

    /// Runs `read` on the value of `key`.
    #[inline]
    pub fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let raw = self.raw();
        raw.find(&self.guard, raw.hash(key), key)
            .map(|value| read(&value))
    }

    /// The values of a batch of keys, borrowed, in the order of `keys`. The lookups overlap
    /// their cache misses (each group of home slots is prefetched before the group is looked
    /// up), so on a table larger than the cache a batch costs a fraction of as many separate
    /// `get`s. Each lookup is linearizable on its own; the batch is not one atomic read.
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let scores: AtomicMap<u64, u32> = (0..100).map(|user| (user, 2 * user as u32)).collect();
    /// let pinned = scores.pin();
    /// let [a, b, missing] = pinned.get_many([&3, &7, &1_000]);
    /// assert_eq!((a.as_deref(), b.as_deref(), missing.as_deref()), (Some(&6), Some(&14), None));
    /// ```
    #[inline]
    pub fn get_many<Q, const N: usize>(&self, keys: [&Q; N]) -> [Option<ValueRef<'_, V>>; N]
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let mut values = std::array::from_fn(|_| None);
        self.raw().find_each(&self.guard, &keys, |index, value| {
            values[index] = value;
        });
        values
    }

    /// Like [`get_many`](Self::get_many) for a batch whose size is known only at run time:
    /// calls `visit` with each key's index in `keys` and its value, in order.
    #[inline]
    pub fn get_each<Q>(&self, keys: &[&Q], mut visit: impl FnMut(usize, Option<&V>))
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.raw().find_each(&self.guard, keys, |index, value| {
            visit(index, value.as_deref());
        });
    }

    /// Whether `key` has a value.
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Sets the value of `key`; returns the value it replaced, borrowed.
    #[inline]
    pub fn insert(&self, key: K, value: V) -> Option<ValueRef<'_, V>> {
        self.insert_hashed(self.raw().hash(&key), key, value)
            .map(Shared::get)
    }

    /// Inserts every entry, in order (a key given twice keeps its last value). Entries go in
    /// groups of 32: the group's keys are hashed and their home slots prefetched before the
    /// first is written, so that the cache misses of a group overlap, where one insert after
    /// another would wait for each miss in turn (a write's locked CAS keeps the next one's load
    /// from starting early). `extend` and `collect` use it.
    pub fn insert_all(&self, entries: impl IntoIterator<Item = (K, V)>) {
        let raw = self.raw();
        let mut entries = entries.into_iter();
        let mut group = Vec::with_capacity(BATCH.min(entries.size_hint().0.max(1)));
        loop {
            group.extend(
                entries
                    .by_ref()
                    .take(BATCH)
                    .map(|(key, value)| (raw.hash(&key), key, value)),
            );
            if group.is_empty() {
                return;
            }
            raw.prefetch_homes(&self.guard, group.iter().map(|(hash, _, _)| *hash));
            for (hash, key, value) in group.drain(..) {
                self.insert_hashed(hash, key, value);
            }
        }
    }

    /// [`insert`](Self::insert) of a key whose hash is `hash`.
    #[inline(always)]
    fn insert_hashed(&self, hash: u64, key: K, value: V) -> Option<Shared<'_, V>> {
        match self.raw().insert_inline(&self.guard, &key, &value, hash) {
            Ok(previous) => previous,
            Err(_) => self.insert_general(hash, key, value),
        }
    }

    /// [`insert_hashed`](Self::insert_hashed) past the short path: boxed words, a resize in
    /// flight, a crowded probe. Out of line, so that the short path carries none of its
    /// registers and stack.
    #[inline(never)]
    fn insert_general(&self, hash: u64, key: K, value: V) -> Option<Shared<'_, V>> {
        let raw = self.raw();
        let mut pending = raw.pending_value(value);
        let written =
            raw.write_owned_hashed(&self.guard, key, hash, |_| Some(pending.stage(&self.guard)));
        pending.published(&self.guard);
        written.previous
    }

    /// Removes `key`; returns the value it had, borrowed.
    #[inline]
    pub fn remove<Q>(&self, key: &Q) -> Option<ValueRef<'_, V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        match self.raw().remove_inline(&self.guard, key) {
            Ok(previous) => previous.map(Shared::get),
            Err(hash) => self.remove_general(key, hash),
        }
    }

    /// [`remove`](Self::remove) past the short path, out of line (see
    /// [`insert_general`](Self::insert_general)).
    #[inline(never)]
    fn remove_general<Q>(&self, key: &Q, hash: u64) -> Option<ValueRef<'_, V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let written = self
            .raw()
            .write_borrowed_hashed(&self.guard, key, hash, |current| {
                current.map(|_| Staged::REMOVE)
            });
        written.previous.map(Shared::get)
    }

    /// Replaces the value of `key`, if it has one, by `change(&value)`; returns the new value.
    /// `change` may run more than once when writers race; only its last result is stored.
    #[inline]
    pub fn update<Q>(&self, key: &Q, mut change: impl FnMut(&V) -> V) -> Option<ValueRef<'_, V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let raw = self.raw();
        let hash = raw.hash(key);
        match raw.update_inline(&self.guard, hash, key, &mut change) {
            Ok(updated) => updated.map(Shared::get),
            Err(_) => self.update_general(key, hash, change),
        }
    }

    /// [`update`](Self::update) past the short path, out of line (see
    /// [`insert_general`](Self::insert_general)).
    #[inline(never)]
    fn update_general<Q>(
        &self,
        key: &Q,
        hash: u64,
        mut change: impl FnMut(&V) -> V,
    ) -> Option<ValueRef<'_, V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let raw = self.raw();
        let mut attempt = None;
        let written = raw.write_borrowed_hashed(&self.guard, key, hash, |current| {
            let new = current?.with(&mut change);
            Some(attempt.insert(raw.pending_value(new)).stage(&self.guard))
        });
        let mut stored = attempt.filter(|_| written.committed)?;
        Some(stored.published(&self.guard).get())
    }

    /// Sets `key` to `insert()` if it has no value, or to `update(&value)` if it has; returns the
    /// value stored. `insert` runs at most once; `update` may run more than once when writers
    /// race.
    pub fn upsert(
        &self,
        key: K,
        insert: impl FnOnce() -> V,
        mut update: impl FnMut(&V) -> V,
    ) -> ValueRef<'_, V> {
        let raw = self.raw();
        let hash = raw.hash(&key);
        if let Ok(Some(updated)) = raw.update_inline(&self.guard, hash, &key, &mut update) {
            return updated.get();
        }
        let mut insert = Some(insert);
        let mut fresh = None;
        let mut updated = None;
        let written = raw.write_owned_hashed(&self.guard, key, hash, |current| {
            let pending = match current {
                None => fresh.get_or_insert_with(|| {
                    raw.pending_value(insert.take().expect("the insert closure runs once")())
                }),
                Some(current) => updated.insert(raw.pending_value(current.with(&mut update))),
            };
            Some(pending.stage(&self.guard))
        });
        let stored = if written.previous.is_none() {
            fresh
        } else {
            updated
        };
        stored
            .expect("an owned write always commits what it decided")
            .published(&self.guard)
            .get()
    }

    /// Inserts, updates or removes `key` in one linearizable step: `compute` sees the current
    /// value (`None`: absent) and returns the new one (`None`: remove, or stay absent). Returns
    /// the value the key holds afterwards. `compute` may run more than once when writers race.
    pub fn compute(
        &self,
        key: K,
        mut compute: impl FnMut(Option<&V>) -> Option<V>,
    ) -> Option<ValueRef<'_, V>> {
        let raw = self.raw();
        let mut staged = None;
        let written = raw.write_owned(&self.guard, key, |current| {
            let current = current.map(Shared::get);
            match compute(current.as_deref()) {
                Some(new) => Some(staged.insert(raw.pending_value(new)).stage(&self.guard)),
                None => {
                    staged = None;
                    current.map(|_| Staged::REMOVE)
                }
            }
        });
        let mut stored = staged.filter(|_| written.committed)?;
        Some(stored.published(&self.guard).get())
    }

    /// The value of `key`, inserting `make()` first if it has none. `make` runs at most once,
    /// and not at all if the key has a value.
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> ValueRef<'_, V> {
        let raw = self.raw();
        let mut make = Some(make);
        let mut fresh = None;
        let written = raw.write_owned(&self.guard, key, |current| match current {
            Some(_) => None,
            None => Some(
                fresh
                    .get_or_insert_with(|| {
                        raw.pending_value(make.take().expect("make runs once")())
                    })
                    .stage(&self.guard),
            ),
        });
        if written.committed {
            let mut fresh = fresh.expect("a committed insert made a value");
            fresh.published(&self.guard).get()
        } else {
            written
                .previous
                .expect("an owned write declines only a key that has a value")
                .get()
        }
    }

    /// Inserts `value` under `key` if the key has none: `Ok` with the value now stored, or, if
    /// the key already had a value, `Err` with that value (and `value` is dropped). Unlike
    /// [`insert`](Self::insert) it never replaces. Linearizable: at the moment it returns `Err`
    /// the key held that value.
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let owners: AtomicMap<&str, &str> = AtomicMap::new();
    /// let pinned = owners.pin();
    /// assert_eq!(pinned.try_insert("lock", "alice").as_deref(), Ok(&"alice"));
    /// assert_eq!(pinned.try_insert("lock", "bob").map_err(|held| *held), Err("alice"));
    /// ```
    pub fn try_insert(&self, key: K, value: V) -> Result<ValueRef<'_, V>, ValueRef<'_, V>> {
        let raw = self.raw();
        let mut pending = raw.pending_value(value);
        let written = raw.write_owned(&self.guard, key, |current| match current {
            Some(_) => None,
            None => Some(pending.stage(&self.guard)),
        });
        if written.committed {
            Ok(pending.published(&self.guard).get())
        } else {
            Err(written
                .previous
                .expect("an owned write declines only a key that has a value")
                .get())
        }
    }

    /// Removes `key` if `remove(&value)` says so; returns the removed value. The decision and
    /// the remove are one linearizable step: a value that changed after `remove` judged it is
    /// judged again, so `remove` may run more than once when writers race.
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let sessions: AtomicMap<u64, u64> = [(1, 100), (2, 900)].into_iter().collect();
    /// let pinned = sessions.pin();
    /// let expired = |&expiry: &u64| expiry < 500;
    /// assert_eq!(pinned.remove_if(&1, expired).as_deref(), Some(&100));
    /// assert_eq!(pinned.remove_if(&2, expired), None);
    /// assert!(pinned.contains_key(&2));
    /// ```
    pub fn remove_if<Q>(
        &self,
        key: &Q,
        mut remove: impl FnMut(&V) -> bool,
    ) -> Option<ValueRef<'_, V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let written = self.raw().write_borrowed(&self.guard, key, |current| {
            current?.with(&mut remove).then_some(Staged::REMOVE)
        });
        written
            .previous
            .filter(|_| written.committed)
            .map(Shared::get)
    }

    /// Replaces the value of `key` by `new` if it equals `expected`, in one linearizable step.
    /// `Ok` with the value replaced; otherwise `Err` with the value the key held when the
    /// comparison failed (`None`: absent), and `new` is dropped. The comparison is `==`, not
    /// identity: a value replaced by an equal one still matches.
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let config: AtomicMap<&str, u32> = [("version", 3)].into_iter().collect();
    /// let pinned = config.pin();
    /// assert!(pinned.compare_exchange("version", &3, 4).is_ok());
    /// let stale = pinned.compare_exchange("version", &3, 5);
    /// assert_eq!(stale.map_err(|now| now.as_deref().copied()), Err(Some(4)));
    /// assert_eq!(pinned.compare_exchange("missing", &3, 4).map_err(|now| now.is_none()), Err(true));
    /// ```
    pub fn compare_exchange<Q>(
        &self,
        key: &Q,
        expected: &V,
        new: V,
    ) -> Result<ValueRef<'_, V>, Option<ValueRef<'_, V>>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
        V: PartialEq,
    {
        let raw = self.raw();
        let mut pending = raw.pending_value(new);
        let written = raw.write_borrowed(&self.guard, key, |current| {
            current?
                .with(|current| current == expected)
                .then(|| pending.stage(&self.guard))
        });
        let previous = written.previous.map(Shared::get);
        if written.committed {
            pending.published(&self.guard);
            Ok(previous.expect("a compare-exchange replaces only a present value"))
        } else {
            Err(previous)
        }
    }

    /// A weakly consistent iterator over the entries, borrowed for as long as this handle
    /// lives. It walks the table lazily, one slot per step, and sees each key at most once,
    /// with a value the key had at some moment during the walk; entries inserted or removed
    /// meanwhile may or may not be seen. A resize in flight when the walk starts is finished
    /// first; one that starts during the walk is followed: an entry already moved to the new
    /// table is looked up there. For the map at one instant, use
    /// [`AtomicMap::snapshot`].
    ///
    /// Keys and values come as [`ValueRef`]s (which read like `&K` and `&V`) because small
    /// keys and values are stored inside their slots, not as a `K` or `V` one could borrow.
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let map: AtomicMap<u64, String> = (0..3).map(|n| (n, n.to_string())).collect();
    /// let pinned = map.pin();
    /// let mut longest = 0;
    /// for (key, value) in &pinned {
    ///     assert_eq!(*value, key.to_string());
    ///     longest = longest.max(value.len());
    /// }
    /// assert_eq!(longest, 1);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V, S> {
        Iter {
            raw: self.raw(),
            guard: &self.guard,
            walk: self.raw().walk(&self.guard),
        }
    }

    /// The keys, as [`iter`](Self::iter) walks them.
    pub fn keys(&self) -> impl Iterator<Item = ValueRef<'_, K>> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// The values, as [`iter`](Self::iter) walks them.
    pub fn values(&self) -> impl Iterator<Item = ValueRef<'_, V>> + '_ {
        self.iter().map(|(_, value)| value)
    }

    /// Walks the table as [`iter`](Self::iter) does and removes every entry it reaches,
    /// yielding each removed entry. Each remove is linearizable on its own; the whole is not
    /// atomic: entries inserted during the walk may or may not be drained, and an entry is
    /// removed only when the walk reaches it (entries the iterator is not advanced to stay).
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let jobs: AtomicMap<u64, &str> = [(1, "build"), (2, "test")].into_iter().collect();
    /// let pinned = jobs.pin();
    /// let mut taken: Vec<_> = pinned.drain().map(|(id, job)| (*id, *job)).collect();
    /// taken.sort();
    /// assert_eq!(taken, [(1, "build"), (2, "test")]);
    /// assert!(jobs.is_empty());
    /// ```
    pub fn drain(&self) -> ExtractIf<'_, K, V, S, impl FnMut(&K, &V) -> bool> {
        self.extract_if(|_, _| true)
    }

    /// Like [`drain`](Self::drain), but removes only the entries that `extract(&key, &value)`
    /// accepts. Judging and removing an entry is one linearizable step: if its value changed
    /// after the judgement, it is judged again, so `extract` may run more than once for a key.
    ///
    /// ```
    /// use atomicmap::AtomicMap;
    ///
    /// let stock: AtomicMap<&str, u32> = [("apples", 0), ("pears", 4)].into_iter().collect();
    /// let pinned = stock.pin();
    /// let sold_out: Vec<_> = pinned.extract_if(|_, &count| count == 0).map(|(name, _)| *name).collect();
    /// assert_eq!(sold_out, ["apples"]);
    /// assert_eq!(stock.len(), 1);
    /// ```
    pub fn extract_if<F>(&self, extract: F) -> ExtractIf<'_, K, V, S, F>
    where
        F: FnMut(&K, &V) -> bool,
    {
        ExtractIf {
            walk: self.iter(),
            extract,
        }
    }

    /// The handle's pin, for a value or walk that keeps what this handle lent (`raw::held`).
    pub(super) fn into_guard(self) -> Guard<'m> {
        self.guard
    }

    /// Ends this handle's pin and starts a new one, so that a handle kept across many operations
    /// does not hold back memory retired meanwhile. Values borrowed from the handle must be
    /// gone first, which `&mut self` enforces.
    pub fn refresh(&mut self) {
        self.guard.refresh();
    }
}

impl<'r, K, V, S> IntoIterator for &'r MapRef<'_, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher,
{
    type Item = (ValueRef<'r, K>, ValueRef<'r, V>);
    type IntoIter = Iter<'r, K, V, S>;

    fn into_iter(self) -> Iter<'r, K, V, S> {
        self.iter()
    }
}

/// The borrowing iterator of [`MapRef::iter`]: weakly consistent, lazy.
pub struct Iter<'g, K: 'static, V: 'static, S> {
    raw: &'g RawMap<K, V, S>,
    guard: &'g Guard<'g>,
    walk: Walk<'g>,
}

impl<'g, K, V, S> Iterator for Iter<'g, K, V, S>
where
    K: Hash + Eq + 'static,
    V: 'static,
    S: BuildHasher,
{
    type Item = (ValueRef<'g, K>, ValueRef<'g, V>);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, value) = self.raw.walk_next(self.guard, &mut self.walk)?;
        Some((key.get(), value.get()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.walk.slots_left()))
    }
}

/// A copy of the walk at its current position; both go on independently under the same pin.
impl<K, V, S> Clone for Iter<'_, K, V, S> {
    fn clone(&self) -> Self {
        Iter {
            raw: self.raw,
            guard: self.guard,
            walk: self.walk.clone(),
        }
    }
}

impl<K, V, S> fmt::Debug for Iter<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("slots_left", &self.walk.slots_left())
            .finish_non_exhaustive()
    }
}

/// The iterator of [`MapRef::extract_if`] and [`MapRef::drain`]: removes the entries it
/// reaches that its closure accepts, and yields them.
pub struct ExtractIf<'g, K: 'static, V: 'static, S, F> {
    walk: Iter<'g, K, V, S>,
    extract: F,
}

impl<'g, K, V, S, F> Iterator for ExtractIf<'g, K, V, S, F>
where
    K: Hash + Eq + 'static,
    V: 'static,
    S: BuildHasher,
    F: FnMut(&K, &V) -> bool,
{
    type Item = (ValueRef<'g, K>, ValueRef<'g, V>);

    fn next(&mut self) -> Option<Self::Item> {
        let Iter { raw, guard, walk } = &mut self.walk;
        while let Some((key, _)) = raw.walk_next(guard, walk) {
            let extract = &mut self.extract;
            let written = key.with(|key_item| {
                raw.write_borrowed(guard, key_item, |current| {
                    current?
                        .with(|value| extract(key_item, value))
                        .then_some(Staged::REMOVE)
                })
            });
            if written.committed {
                let removed = written.previous.expect("a committed remove had a value");
                return Some((key.get(), removed.get()));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, self.walk.size_hint().1)
    }
}

impl<K, V, S, F> fmt::Debug for ExtractIf<'_, K, V, S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtractIf")
            .field("slots_left", &self.walk.walk.slots_left())
            .finish_non_exhaustive()
    }
}

/// Another handle on the same map with a pin of its own (pins nest: the thread stays pinned
/// until both are dropped), so each can be refreshed on its own.
impl<K, V, S> Clone for MapRef<'_, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher,
{
    fn clone(&self) -> Self {
        MapRef::new(self.map)
    }
}

impl<K, V, S> fmt::Debug for MapRef<'_, K, V, S>
where
    K: Hash + Eq + Send + Sync + fmt::Debug + 'static,
    V: Send + Sync + fmt::Debug + 'static,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.map.fmt(f)
    }
}
