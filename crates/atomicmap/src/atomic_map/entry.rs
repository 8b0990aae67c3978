//! [`Entry`]: `map.entry(key)` for inserting or modifying a key in one linearizable step, on top
//! of the pinned handle's `get_or_insert_with`, `upsert` and `update` (no locking: each
//! terminal method is one write, committed by one CAS, see `raw`).

use std::fmt;
use std::hash::{BuildHasher, Hash};

use super::pinned::MapRef;
use super::raw::GuardedRef;

/// The entry of a key, from [`AtomicMap::entry`](crate::AtomicMap::entry). Nothing happens
/// until a terminal method (`or_insert`, `or_insert_with`, `or_default`, and on
/// [`ModifyEntry`] also `apply`) runs; each terminal method is one linearizable write and
/// returns the value stored, lent with its own pin ([`GuardedRef`]).
///
/// Unlike std's entry there is no occupied/vacant split: whether the key has a value can change
/// at any moment, so the decision is made inside the write.
///
/// **Which closures may run more than once:** the closure that makes a value to insert
/// (`or_insert_with`, `or_default`'s `Default::default`) runs at most once, and not at all if
/// the key has a value; if another writer inserts the key between that call and the commit,
/// the value made is dropped and the entry takes the winner's value (modifying it, after
/// `and_modify`). The closure of [`and_modify`](Self::and_modify) sees the current value
/// and returns its replacement; when another writer changes the key between the read and the
/// commit, it runs again on the newer value, so it must not have side effects that cannot
/// repeat. Only its last result is stored.
pub struct Entry<'m, K: 'static, V: 'static, S> {
    pinned: MapRef<'m, K, V, S>,
    key: K,
}

/// An [`Entry`] with a modification for a key that has a value, from
/// [`Entry::and_modify`]; its terminal methods say what to do when the key has none.
#[must_use = "nothing is modified until `or_insert`, `or_insert_with`, `or_default` or `apply` runs"]
pub struct ModifyEntry<'m, K: 'static, V: 'static, S, F> {
    entry: Entry<'m, K, V, S>,
    modify: F,
}

impl<'m, K, V, S> Entry<'m, K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher,
{
    pub(super) fn new(pinned: MapRef<'m, K, V, S>, key: K) -> Self {
        Entry { pinned, key }
    }

    /// The entry's key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The key's value, inserting `value` first if it has none (then `value` is dropped).
    pub fn or_insert(self, value: V) -> GuardedRef<'m, V> {
        self.or_insert_with(|| value)
    }

    /// The key's value, inserting `make()` first if it has none. `make` runs at most once, and
    /// not at all if the key has a value.
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> GuardedRef<'m, V> {
        let Entry { pinned, key } = self;
        pinned
            .keep_lent(|pinned| Some(pinned.get_or_insert_with(key, make)))
            .expect("get_or_insert_with always lends a value")
    }

    /// The key's value, inserting `V::default()` first if it has none.
    pub fn or_default(self) -> GuardedRef<'m, V>
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }

    /// Replaces a present value by `modify(&value)` when a terminal method of the returned
    /// [`ModifyEntry`] runs, in the same linearizable step that inserts an absent one. `modify`
    /// may run more than once when writers race (see [`Entry`]).
    pub fn and_modify<F: FnMut(&V) -> V>(self, modify: F) -> ModifyEntry<'m, K, V, S, F> {
        ModifyEntry {
            entry: self,
            modify,
        }
    }
}

impl<'m, K, V, S, F> ModifyEntry<'m, K, V, S, F>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher,
    F: FnMut(&V) -> V,
{
    /// Modifies the key's value if it has one, or inserts `value`; returns the value stored.
    pub fn or_insert(self, value: V) -> GuardedRef<'m, V> {
        self.or_insert_with(|| value)
    }

    /// Modifies the key's value if it has one, or inserts `make()`; returns the value stored.
    /// `make` runs at most once; the modification may run more than once (see [`Entry`]).
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> GuardedRef<'m, V> {
        let ModifyEntry {
            entry: Entry { pinned, key },
            modify,
        } = self;
        pinned
            .keep_lent(|pinned| Some(pinned.upsert(key, make, modify)))
            .expect("upsert always lends a value")
    }

    /// Modifies the key's value if it has one, or inserts `V::default()`.
    pub fn or_default(self) -> GuardedRef<'m, V>
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }

    /// Modifies the key's value if it has one and returns the new value; leaves an absent key
    /// absent (`None`).
    pub fn apply(self) -> Option<GuardedRef<'m, V>> {
        let ModifyEntry {
            entry: Entry { pinned, key },
            modify,
        } = self;
        pinned.keep_lent(|pinned| pinned.update(&key, modify))
    }
}

impl<K: fmt::Debug, V, S> fmt::Debug for Entry<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<K: fmt::Debug, V, S, F> fmt::Debug for ModifyEntry<'_, K, V, S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModifyEntry")
            .field("key", &self.entry.key)
            .finish_non_exhaustive()
    }
}
