//! [`ShardedSet`]: a concurrent hash set, a [`ShardedMap`] whose values are `()`.
//!
//! Everything a [`ShardedMap`] guarantees holds here: shards locked one at a time (no
//! deadlock unless a closure uses the same set), linearizable single-element operations,
//! weakly consistent iteration and a point-in-time [`snapshot`](ShardedSet::snapshot).

use std::fmt;
use std::hash::{BuildHasher, Hash};

use equivalent::Equivalent;

use crate::error::CapacityError;
use crate::hash::DefaultHashBuilder;
use crate::sharded::{Keys, ShardedMap, ShardedMapError};
use crate::snapshot::MapSnapshot;
use crate::stats::MapStats;

/// A concurrent hash set over a [`ShardedMap<T, ()>`](ShardedMap), with its guarantees:
/// shards locked one at a time (no deadlock unless a closure uses the same set),
/// linearizable single-element operations, weakly consistent iteration and a point-in-time
/// [`snapshot`](ShardedSet::snapshot). Lookups take any [`Equivalent`] form of `T`.
///
/// ```
/// use atomicmap::ShardedSet;
///
/// let seen: ShardedSet<String> = ShardedSet::new();
/// assert!(seen.insert("alice".to_owned()));
/// assert!(!seen.insert("alice".to_owned()), "already there");
/// assert!(seen.contains("alice"));
/// let before = seen.snapshot();
/// assert!(seen.remove("alice"));
/// assert!(before.contains_key("alice") && !seen.contains("alice"));
/// ```
pub struct ShardedSet<T, S = DefaultHashBuilder> {
    map: ShardedMap<T, (), S>,
}

impl<T> ShardedSet<T> {
    /// An empty set with the default shard count and hasher.
    pub fn new() -> Self {
        ShardedSet {
            map: ShardedMap::new(),
        }
    }

    /// An empty set with `shards` shards (rounded up to a power of two).
    pub fn with_shards(shards: usize) -> Result<Self, ShardedMapError> {
        Ok(ShardedSet {
            map: ShardedMap::with_shards(shards)?,
        })
    }

    /// An empty set with room for `capacity` elements, or why that room cannot be had.
    pub fn try_with_capacity(capacity: usize) -> Result<Self, CapacityError>
    where
        T: Hash + Eq,
    {
        Ok(ShardedSet {
            map: ShardedMap::try_with_capacity(capacity)?,
        })
    }
}

impl<T> Default for ShardedSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, S> ShardedSet<T, S> {
    /// An empty set with the default shard count that hashes with `hasher`.
    pub fn with_hasher(hasher: S) -> Self {
        ShardedSet {
            map: ShardedMap::with_hasher(hasher),
        }
    }

    /// Number of elements, summed shard by shard (weakly consistent).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the set has no elements (weakly consistent).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Elements the set holds before one of its shards grows; see [`ShardedMap::capacity`].
    pub fn capacity(&self) -> usize {
        self.map.capacity()
    }

    /// The set's internals; the figures mean what they mean for [`ShardedMap::stats`].
    pub fn stats(&self) -> MapStats {
        self.map.stats()
    }

    /// Removes every element, shard by shard.
    pub fn clear(&self) {
        self.map.clear();
    }

    /// Keeps only the elements for which `keep` returns `true`; `keep` must not use this set
    /// (as for [`ShardedMap::retain`]).
    pub fn retain(&self, mut keep: impl FnMut(&T) -> bool) {
        self.map.retain(|element, ()| keep(element));
    }

    /// Owned copies of the elements, cloned shard by shard (weakly consistent); no lock is
    /// held between items, so the loop body may use the set.
    pub fn iter(&self) -> Keys<'_, T, (), S>
    where
        T: Clone,
    {
        self.map.keys()
    }

    /// The set at one instant, as a [`MapSnapshot`] whose keys are the elements (its
    /// `contains_key`, `keys` and `iter` read them); it costs what [`ShardedMap::snapshot`]
    /// costs.
    pub fn snapshot(&self) -> MapSnapshot<T, (), S>
    where
        T: Clone,
        S: Clone,
    {
        self.map.snapshot()
    }
}

impl<T, S> ShardedSet<T, S>
where
    T: Hash + Eq,
    S: BuildHasher,
{
    /// Adds `element`; returns whether it was absent (a present element is left as it is).
    pub fn insert(&self, element: T) -> bool {
        self.map.try_insert(element, ()).is_ok()
    }

    /// Whether `element` is in the set.
    pub fn contains<Q>(&self, element: &Q) -> bool
    where
        Q: Hash + Equivalent<T> + ?Sized,
    {
        self.map.contains_key(element)
    }

    /// Removes `element`; returns whether it was present.
    pub fn remove<Q>(&self, element: &Q) -> bool
    where
        Q: Hash + Equivalent<T> + ?Sized,
    {
        self.map.remove(element).is_some()
    }
}

impl<T: Clone, S: Clone> Clone for ShardedSet<T, S> {
    /// The set at one instant, sharing each shard's table copy-on-write (see
    /// [`ShardedMap`]'s `Clone`).
    fn clone(&self) -> Self {
        ShardedSet {
            map: self.map.clone(),
        }
    }
}

impl<T, S> PartialEq for ShardedSet<T, S>
where
    T: Hash + Eq + Clone,
    S: BuildHasher + Clone,
{
    /// Same elements, comparing a snapshot of each side: not atomic across both sets (see
    /// [`ShardedMap`]'s `PartialEq`).
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<T, S> Eq for ShardedSet<T, S>
where
    T: Hash + Eq + Clone,
    S: BuildHasher + Clone,
{
}

impl<T: fmt::Debug, S> fmt::Debug for ShardedSet<T, S> {
    /// Lists the elements shard by shard (weakly consistent).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut elements = f.debug_set();
        self.map.for_each(|element, ()| {
            elements.entry(element);
        });
        elements.finish()
    }
}

impl<T, S> FromIterator<T> for ShardedSet<T, S>
where
    T: Hash + Eq,
    S: BuildHasher + Clone + Default,
{
    fn from_iter<I: IntoIterator<Item = T>>(elements: I) -> Self {
        let set = Self::with_hasher(S::default());
        (&set).extend(elements);
        set
    }
}

impl<T, S> Extend<T> for ShardedSet<T, S>
where
    T: Hash + Eq,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = T>>(&mut self, elements: I) {
        (&*self).extend(elements);
    }
}

impl<T, S> Extend<T> for &ShardedSet<T, S>
where
    T: Hash + Eq,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = T>>(&mut self, elements: I) {
        for element in elements {
            self.insert(element);
        }
    }
}

impl<'a, T: Clone, S> IntoIterator for &'a ShardedSet<T, S> {
    type Item = T;
    type IntoIter = Keys<'a, T, (), S>;

    /// [`ShardedSet::iter`]: owned copies, no lock held between items.
    fn into_iter(self) -> Keys<'a, T, (), S> {
        self.iter()
    }
}
