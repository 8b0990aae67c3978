//! [`AtomicSet`]: a lock-free concurrent hash set, an [`AtomicMap`] whose values are `()`.
//! `()` is stored inside the slot, so a set allocates no more than the map's keys need, and
//! every guarantee of [`AtomicMap`] holds for it unchanged.

use std::fmt;
use std::hash::{BuildHasher, Hash};

use equivalent::Equivalent;

use crate::atomic_map::{AtomicMap, ClonedIter};
use crate::error::CapacityError;
use crate::hash::DefaultHashBuilder;
use crate::snapshot::MapSnapshot;
use crate::stats::MapStats;

/// A lock-free concurrent hash set: [`AtomicMap<T, ()>`](AtomicMap) with a set's methods.
///
/// * `contains` takes no lock and performs no read-modify-write; `insert` and `remove` commit
///   with one CAS. Every single-element operation is linearizable.
/// * [`len`](Self::len) is exact when no write is in flight; [`iter`](Self::iter) is weakly
///   consistent (each element at most once, concurrent changes may or may not be seen);
///   [`snapshot`](Self::snapshot) is the whole set at one instant.
///
/// ```
/// use atomicmap::AtomicSet;
///
/// let seen: AtomicSet<u64> = AtomicSet::new();
/// std::thread::scope(|s| {
///     s.spawn(|| seen.insert(7));
///     s.spawn(|| seen.insert(7));
/// });
/// assert!(seen.contains(&7));
/// assert_eq!(seen.len(), 1);
/// assert!(!seen.insert(7), "already there");
/// ```
pub struct AtomicSet<T: 'static, S = DefaultHashBuilder> {
    map: AtomicMap<T, (), S>,
}

impl<T> AtomicSet<T, DefaultHashBuilder>
where
    T: Hash + Eq + Send + Sync + 'static,
{
    /// An empty set with a small table.
    pub fn new() -> Self {
        Self::with_hasher(DefaultHashBuilder::default())
    }

    /// An empty set that holds `capacity` elements without resizing, and that removes never
    /// shrink below that (see [`AtomicMap::with_capacity`]).
    ///
    /// # Panics
    /// If `capacity` overflows or cannot be allocated; see
    /// [`try_with_capacity`](Self::try_with_capacity).
    pub fn with_capacity(capacity: usize) -> Self {
        AtomicSet {
            map: AtomicMap::with_capacity(capacity),
        }
    }

    /// Like [`with_capacity`](Self::with_capacity), but reports an impossible capacity instead
    /// of panicking.
    pub fn try_with_capacity(capacity: usize) -> Result<Self, CapacityError> {
        AtomicMap::try_with_capacity(capacity).map(|map| AtomicSet { map })
    }
}

impl<T, S> AtomicSet<T, S>
where
    T: Hash + Eq + Send + Sync + 'static,
    S: BuildHasher,
{
    /// An empty set using `hasher`.
    pub fn with_hasher(hasher: S) -> Self {
        AtomicSet {
            map: AtomicMap::with_hasher(hasher),
        }
    }

    /// An empty set using `hasher` that holds `capacity` elements without resizing (see
    /// [`with_capacity`](AtomicSet::with_capacity)).
    ///
    /// # Panics
    /// If `capacity` overflows or cannot be allocated; see
    /// [`try_with_capacity_and_hasher`](Self::try_with_capacity_and_hasher).
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        AtomicSet {
            map: AtomicMap::with_capacity_and_hasher(capacity, hasher),
        }
    }

    /// Like [`with_capacity_and_hasher`](Self::with_capacity_and_hasher), but reports an
    /// impossible capacity instead of panicking.
    pub fn try_with_capacity_and_hasher(capacity: usize, hasher: S) -> Result<Self, CapacityError> {
        AtomicMap::try_with_capacity_and_hasher(capacity, hasher).map(|map| AtomicSet { map })
    }

    /// The set's hasher.
    pub fn hasher(&self) -> &S {
        self.map.hasher()
    }

    /// Adds `element`; true if it was not already in the set (then the set is unchanged and
    /// `element` is dropped), as std's `HashSet::insert`.
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

    /// Removes `element`; true if it was in the set.
    pub fn remove<Q>(&self, element: &Q) -> bool
    where
        Q: Hash + Equivalent<T> + ?Sized,
    {
        self.map.remove(element).is_some()
    }

    /// Number of elements: exact when no write is in flight.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the set has no elements (see [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Elements the set holds without growing (see [`AtomicMap::capacity`]).
    pub fn capacity(&self) -> usize {
        self.map.capacity()
    }

    /// Makes room for `additional` more elements without further resizing; removes never
    /// shrink the table below that room afterwards (see [`AtomicMap::reserve`]).
    ///
    /// # Panics
    /// If the capacity overflows or cannot be allocated; see [`try_reserve`](Self::try_reserve).
    pub fn reserve(&self, additional: usize) {
        self.map.reserve(additional);
    }

    /// Makes room for `additional` more elements, or says why it cannot.
    pub fn try_reserve(&self, additional: usize) -> Result<(), CapacityError> {
        self.map.try_reserve(additional)
    }

    /// Shrinks the table to hold the current elements, or `min_capacity` if that is more, and
    /// lowers the room that removes keep to `min_capacity` (see [`AtomicMap::shrink_to`]).
    ///
    /// ```
    /// use atomicmap::AtomicSet;
    ///
    /// let ids: AtomicSet<u64> = AtomicSet::with_capacity(100_000);
    /// (0..1_000).for_each(|id| { ids.insert(id); });
    /// (0..1_000).for_each(|id| { ids.remove(&id); });
    /// assert!(ids.capacity() >= 100_000, "removes keep the room asked for");
    /// ids.shrink_to(10);
    /// assert!(ids.capacity() < 100_000 && ids.capacity() >= 10);
    /// ```
    pub fn shrink_to(&self, min_capacity: usize) {
        self.map.shrink_to(min_capacity);
    }

    /// [`shrink_to(0)`](Self::shrink_to): shrinks the table to its elements, and lets removes
    /// shrink it as far as they empty it.
    pub fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    /// The set's internals, as [`AtomicMap::stats`] reports them (an O(capacity) walk).
    pub fn stats(&self) -> MapStats {
        self.map.stats()
    }

    /// Removes every element that `keep` rejects, each atomically on its own.
    pub fn retain(&self, mut keep: impl FnMut(&T) -> bool) {
        self.map.retain(|element, ()| keep(element));
    }

    /// Removes every element; not atomic (see [`AtomicMap::clear`]).
    pub fn clear(&self) {
        self.map.clear();
    }

    /// A weakly consistent iterator over clones of the elements, walking the table lazily
    /// under a pin it holds (see [`AtomicMap::iter`]).
    pub fn iter(&self) -> SetIter<'_, T, S>
    where
        T: Clone,
    {
        SetIter {
            entries: self.map.iter(),
        }
    }

    /// The set at one instant, as the keys of an immutable [`MapSnapshot`] (lock-free and
    /// linearizable; see [`AtomicMap::snapshot`]).
    ///
    /// ```
    /// use atomicmap::AtomicSet;
    ///
    /// let set: AtomicSet<&str> = ["a", "b"].into_iter().collect();
    /// let before = set.snapshot();
    /// set.insert("c");
    /// assert_eq!(before.sorted_keys(), [&"a", &"b"]);
    /// assert_eq!(set.snapshot().len(), 3);
    /// ```
    pub fn snapshot(&self) -> MapSnapshot<T, (), S>
    where
        T: Clone,
        S: Clone,
    {
        self.map.snapshot()
    }
}

/// The iterator of [`AtomicSet::iter`] and `for element in &set`.
pub struct SetIter<'s, T: 'static, S> {
    entries: ClonedIter<'s, T, (), S>,
}

impl<T, S> Iterator for SetIter<'_, T, S>
where
    T: Hash + Eq + Clone + 'static,
    S: BuildHasher,
{
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.entries.next().map(|(element, ())| element)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl<T, S> fmt::Debug for SetIter<'_, T, S>
where
    T: Hash + Eq + 'static,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SetIter").field(&self.entries).finish()
    }
}

impl<'s, T, S> IntoIterator for &'s AtomicSet<T, S>
where
    T: Hash + Eq + Send + Sync + Clone + 'static,
    S: BuildHasher,
{
    type Item = T;
    type IntoIter = SetIter<'s, T, S>;

    fn into_iter(self) -> SetIter<'s, T, S> {
        self.iter()
    }
}

impl<T> Default for AtomicSet<T, DefaultHashBuilder>
where
    T: Hash + Eq + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

/// A new set with the elements of a snapshot of this one, and a clone of its hasher.
impl<T, S> Clone for AtomicSet<T, S>
where
    T: Hash + Eq + Send + Sync + Clone + 'static,
    S: BuildHasher + Clone,
{
    fn clone(&self) -> Self {
        AtomicSet {
            map: self.map.clone(),
        }
    }
}

/// Compares a snapshot of each set; not atomic across the two (see [`AtomicMap`]'s
/// `PartialEq`).
impl<T, S> PartialEq for AtomicSet<T, S>
where
    T: Hash + Eq + Send + Sync + Clone + 'static,
    S: BuildHasher + Clone,
{
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<T, S> Eq for AtomicSet<T, S>
where
    T: Hash + Eq + Send + Sync + Clone + 'static,
    S: BuildHasher + Clone,
{
}

impl<T, S> fmt::Debug for AtomicSet<T, S>
where
    T: Hash + Eq + Send + Sync + Clone + fmt::Debug + 'static,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<T, S> FromIterator<T> for AtomicSet<T, S>
where
    T: Hash + Eq + Send + Sync + 'static,
    S: BuildHasher + Default,
{
    fn from_iter<I: IntoIterator<Item = T>>(elements: I) -> Self {
        AtomicSet {
            map: elements.into_iter().map(|element| (element, ())).collect(),
        }
    }
}

impl<T, S> Extend<T> for AtomicSet<T, S>
where
    T: Hash + Eq + Send + Sync + 'static,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = T>>(&mut self, elements: I) {
        (&*self).extend(elements);
    }
}

impl<T, S> Extend<T> for &AtomicSet<T, S>
where
    T: Hash + Eq + Send + Sync + 'static,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = T>>(&mut self, elements: I) {
        (&self.map).extend(elements.into_iter().map(|element| (element, ())));
    }
}
