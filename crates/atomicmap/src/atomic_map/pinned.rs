//! [`MapRef`], the pinned handle on an [`AtomicMap`]: the one implementation of every
//! single-key operation. `AtomicMap`'s own methods pin, call the handle, and clone what it
//! lends (as papaya's do).

use std::fmt;
use std::hash::{BuildHasher, Hash};

use equivalent::Equivalent;

use super::raw::{RawMap, Shared, Staged, ValueRef};
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
        raw.find(&self.guard, raw.hash(key), key).map(Shared::get)
    }

    /// Runs `read` on the value of `key`.
    #[inline]
    pub fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let raw = self.raw();
        Some(raw.find(&self.guard, raw.hash(key), key)?.with(read))
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
            values[index] = value.map(Shared::get);
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
            visit(index, value.map(Shared::get).as_deref());
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
        let raw = self.raw();
        let mut pending = raw.pending_value(value);
        let written = raw.write_owned(&self.guard, key, |_| Some(pending.stage(&self.guard)));
        pending.published(&self.guard);
        written.previous.map(Shared::get)
    }

    /// Removes `key`; returns the value it had, borrowed.
    #[inline]
    pub fn remove<Q>(&self, key: &Q) -> Option<ValueRef<'_, V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let written = self
            .raw()
            .write_borrowed(&self.guard, key, |current| current.map(|_| Staged::REMOVE));
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
        let mut attempt = None;
        let written = raw.write_borrowed(&self.guard, key, |current| {
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
        let mut insert = Some(insert);
        let mut fresh = None;
        let mut updated = None;
        let written = raw.write_owned(&self.guard, key, |current| {
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

    /// Ends this handle's pin and starts a new one, so that a handle kept across many operations
    /// does not hold back memory retired meanwhile. Values borrowed from the handle must be
    /// gone first, which `&mut self` enforces.
    pub fn refresh(&mut self) {
        self.guard.refresh();
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
