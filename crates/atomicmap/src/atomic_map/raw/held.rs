//! Borrows that carry their own pin, for the map-level operations that must hand out what the
//! table holds without a [`MapRef`] to borrow from: the previous value of `AtomicMap::insert`
//! and `remove` (so they need no `V: Clone`), and the walk behind `AtomicMap::iter` and
//! `for (k, v) in &map`.
//!
//! Both move a [`Guard`] into the returned object together with what was loaded under it.
//! Moving a guard does not end its pin (the pin ends when the guard is dropped), and neither
//! object lets the guard be refreshed, so everything loaded under it stays allocated for the
//! object's whole life. That is the one invariant behind the `unsafe` here.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::ops::Deref;
use std::ptr::NonNull;

use super::super::pinned::MapRef;
use super::shared::{Shared, ValueRef};
use super::table::Table;
use super::{RawMap, Walk};
use crate::reclaim::Guard;

/// A value borrowed from an [`AtomicMap`](crate::AtomicMap) together with the pin that keeps
/// it alive: what `insert` and `remove` return, so that they work for values that are not
/// `Clone` (an `AtomicU64` counter, a `Mutex`). It reads like a `&V`; [`into_owned`]
/// (`GuardedRef::into_owned`) clones it when `V: Clone`.
///
/// While it lives, memory that writers retire is held back, as by a [`MapRef`]: drop it soon.
///
/// [`into_owned`]: GuardedRef::into_owned
pub struct GuardedRef<'m, V> {
    value: Held<V>,
    _pin: Guard<'m>,
}

enum Held<V> {
    Inline(V),
    Boxed(NonNull<V>),
}

impl<'m, K, V, S> MapRef<'m, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher,
{
    /// Runs `lend` on this handle and keeps what it lends together with the handle's pin.
    pub(in crate::atomic_map) fn keep_lent(
        self,
        lend: impl for<'r> FnOnce(&'r Self) -> Option<ValueRef<'r, V>>,
    ) -> Option<GuardedRef<'m, V>> {
        let value = match lend(&self)? {
            ValueRef::Inline(value) => Held::Inline(value),
            ValueRef::Borrowed(value) => Held::Boxed(NonNull::from(value)),
        };
        Some(GuardedRef {
            value,
            _pin: self.into_guard(),
        })
    }
}

impl<V> GuardedRef<'_, V> {
    /// The value itself: a clone of a boxed one, the decoded one as is.
    pub fn into_owned(self) -> V
    where
        V: Clone,
    {
        match self.value {
            Held::Inline(value) => value,
            Held::Boxed(_) => (*self).clone(),
        }
    }
}

impl<V> Deref for GuardedRef<'_, V> {
    type Target = V;

    fn deref(&self) -> &V {
        match &self.value {
            Held::Inline(value) => value,
            // SAFETY: a `MapRef` lent this reference under the pin `_pin` now holds (see the
            // module docs): the box stays allocated while `self` lives.
            Held::Boxed(value) => unsafe { value.as_ref() },
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for GuardedRef<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<V: PartialEq> PartialEq for GuardedRef<'_, V> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<V: PartialEq> PartialEq<V> for GuardedRef<'_, V> {
    fn eq(&self, other: &V) -> bool {
        **self == *other
    }
}

/// A walk of the map's entries ([`RawMap::walk`]) that owns its pin, for an iterator that
/// borrows only the map.
pub(in crate::atomic_map) struct PinnedWalk<'m, K: 'static, V: 'static, S> {
    raw: &'m RawMap<K, V, S>,
    table: NonNull<Table>,
    next: usize,
    guard: Guard<'m>,
}

impl<'m, K, V, S> PinnedWalk<'m, K, V, S>
where
    K: Hash + Eq + 'static,
    V: 'static,
    S: BuildHasher,
{
    pub(in crate::atomic_map) fn new(raw: &'m RawMap<K, V, S>) -> Self {
        let guard = raw.pin();
        let Walk { table, next } = raw.walk(&guard);
        let table = NonNull::from(table);
        PinnedWalk {
            raw,
            table,
            next,
            guard,
        }
    }

    /// Runs `read` on the walk's next entry.
    pub(in crate::atomic_map) fn next_with<R>(
        &mut self,
        read: impl FnOnce(Shared<'_, K>, Shared<'_, V>) -> R,
    ) -> Option<R> {
        // SAFETY: the table was loaded under `self.guard`, which has been pinned ever since and
        // is dropped with the walk (see the module docs).
        let table = unsafe { self.table.as_ref() };
        let mut walk = Walk {
            table,
            next: self.next,
        };
        let entry = self.raw.walk_next(&self.guard, &mut walk);
        self.next = walk.next;
        entry.map(|(key, value)| read(key, value))
    }

    /// Slots not yet passed: an upper bound on the entries still to come.
    pub(in crate::atomic_map) fn slots_left(&self) -> usize {
        // SAFETY: as in `next_with`.
        unsafe { self.table.as_ref() }.capacity() - self.next
    }
}
