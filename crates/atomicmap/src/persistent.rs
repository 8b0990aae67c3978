//! [`PersistentMap`]: the immutable map an [`RcuMap`](crate::RcuMap) publishes, a hash array
//! mapped trie (imbl's) whose copies share structure, so a changed copy costs O(log n), not a
//! copy of the map.
//!
//! How it keeps a panicking `Hash` or `Eq` from leaking entries is on [`PersistentMap`].
//!
//! Lookups take any `Q: Hash + Equivalent<K>` ([`Equivalent`]): the trie stores each key with
//! its hash and is searched through a probe that compares with `Q::equivalent`, so a query
//! type need not be a borrowed form of the key. [`RcuMap`](crate::RcuMap)'s lookups are these.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::Index;

use equivalent::Equivalent;

use crate::hash::{DefaultHashBuilder, Lookup, Probe, StoredHash};

type Trie<K, V> = imbl::GenericHashMap<Slot<K>, V, StoredHash, imbl::shared_ptr::DefaultSharedPtr>;

/// Names one stored key within its map: its hash (by the map's hasher) and its id.
#[derive(Clone, Copy, PartialEq, Eq)]
struct SlotId {
    hash: u64,
    id: u64,
}

impl Hash for SlotId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A stored key. Slots hash and compare by [`SlotId`] alone, without running the key's `Hash`
/// or `Eq`; within one map no two slots hold equal keys, so that is the key's equality there.
#[derive(Clone)]
struct Slot<K> {
    ident: SlotId,
    key: K,
}

impl<K> Hash for Slot<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ident.hash(state);
    }
}

impl<K> PartialEq for Slot<K> {
    fn eq(&self, other: &Self) -> bool {
        self.ident == other.ident
    }
}

impl<K> Eq for Slot<K> {}

impl<K> Borrow<SlotId> for Slot<K> {
    fn borrow(&self) -> &SlotId {
        &self.ident
    }
}

impl<K: Eq> Lookup<K> for Slot<K> {
    fn hash(&self) -> u64 {
        self.ident.hash
    }

    fn stored_key(&self) -> Option<&K> {
        Some(&self.key)
    }

    fn matches(&self, stored: &K) -> bool {
        self.key == *stored
    }
}

impl<'a, K: Eq + 'a> Borrow<dyn Lookup<K> + 'a> for Slot<K> {
    fn borrow(&self) -> &(dyn Lookup<K> + 'a) {
        self
    }
}

/// A hash map whose clones are O(1): a clone changes apart from the original, sharing every
/// node neither has changed.
///
/// # Panics in user code
/// The trie is imbl's `GenericHashMap`, which runs the keys' `Eq` inside its changes; when that
/// `Eq` panics while imbl moves entries into a new node (built in memory it does not drop on
/// unwind), the entries moved so far leak: up to 16 per panic on keys that share a hash, with
/// `GenericHashMap::insert` alone. So the trie never sees the user's `Hash` or `Eq`. It stores
/// each key with the hash this map's hasher computed for it and an id unique within the map,
/// and hashes and compares stored keys by that pair only. A change first finds the key with a read-only search
/// (the user's `Hash` and `Eq` run there, before anything changes), then changes the trie by id.
/// The one user code the trie still runs while it changes is `Clone`, when it copies a node
/// shared with an older version; a node copy drops what it cloned if a `Clone` panics. A
/// panic in an `insert`, `remove` or `retain` leaves the map as it was (`extend` keeps the
/// entries it inserted before the panic).
///
/// ```
/// use atomicmap::PersistentMap;
///
/// let mut v1: PersistentMap<&str, u32> = PersistentMap::new();
/// v1.insert("a", 1);
/// let mut v2 = v1.clone(); // O(1)
/// v2.insert("b", 2);
/// assert_eq!((v1.len(), v2.len()), (1, 2));
/// for (key, value) in &v2 {
///     assert_eq!(v2[key], *value);
/// }
/// ```
pub struct PersistentMap<K, V, S = DefaultHashBuilder> {
    trie: Trie<K, V>,
    hasher: S,
    /// The id of the next key this map (or a copy of it) stores.
    next_id: u64,
}

impl<K, V, S: Default> PersistentMap<K, V, S> {
    /// An empty map.
    pub fn new() -> Self {
        Self::with_hasher(S::default())
    }
}

impl<K, V, S: Default> Default for PersistentMap<K, V, S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S> PersistentMap<K, V, S> {
    /// An empty map that hashes with `hasher`.
    pub fn with_hasher(hasher: S) -> Self {
        PersistentMap {
            trie: Trie::with_hasher(StoredHash::default()),
            hasher,
            next_id: 0,
        }
    }

    /// The map's hasher.
    pub fn hasher(&self) -> &S {
        &self.hasher
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }

    /// Every entry once, in no particular order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            entries: self.trie.iter(),
        }
    }

    /// Every key once, in no particular order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &K> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// Every value once, in no particular order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> + '_ {
        self.iter().map(|(_, value)| value)
    }
}

impl<K, V, S> PersistentMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// The stored key equal to `key`, with its value.
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        self.trie
            .get_key_value(Probe { hash, key }.lookup())
            .map(|(slot, value)| (&slot.key, value))
    }

    /// The value for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.get_key_value(key).map(|(_, value)| value)
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.get(key).is_some()
    }

    /// The id of the slot holding `key`, whose hash is `hash`, found with a read-only search
    /// (the only place the user's `Eq` runs).
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<SlotId>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.trie
            .get_key_value(Probe { hash, key }.lookup())
            .map(|(slot, _)| slot.ident)
    }
}

impl<K, V, S> PersistentMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Sets the value for `key`; returns the previous one.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = self.hasher.hash_one(&key);
        let ident = match self.find(hash, &key) {
            Some(ident) => ident,
            None => {
                let ident = SlotId {
                    hash,
                    id: self.next_id,
                };
                self.next_id += 1;
                ident
            }
        };
        self.trie.insert(Slot { ident, key }, value)
    }

    /// Removes `key`; returns its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let ident = self.find(self.hasher.hash_one(key), key)?;
        self.trie.remove(&ident)
    }

    /// Keeps only the entries for which `keep` returns `true`. `keep` sees every entry before
    /// anything is removed, so if it panics, the map is as before the call.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let rejected: Vec<SlotId> = self
            .trie
            .iter()
            .filter(|(slot, value)| !keep(&slot.key, value))
            .map(|(slot, _)| slot.ident)
            .collect();
        for ident in rejected {
            self.trie.remove(&ident);
        }
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.trie.clear();
    }
}

impl<K: Clone, V: Clone, S: Clone> Clone for PersistentMap<K, V, S> {
    /// O(1): the copy shares every node with `self` until one of them changes it.
    fn clone(&self) -> Self {
        PersistentMap {
            trie: self.trie.clone(),
            hasher: self.hasher.clone(),
            next_id: self.next_id,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for PersistentMap<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K, V, S> PartialEq for PersistentMap<K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    /// Same keys with equal values (whatever the hashers and the order of insertion).
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .all(|(key, value)| other.get(key) == Some(value))
    }
}

impl<K, V, S> Eq for PersistentMap<K, V, S>
where
    K: Hash + Eq,
    V: Eq,
    S: BuildHasher,
{
}

impl<K, V, S, Q> Index<&Q> for PersistentMap<K, V, S>
where
    K: Hash + Eq,
    Q: Hash + Equivalent<K> + ?Sized,
    S: BuildHasher,
{
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry found for key")
    }
}

impl<K, V, S> Extend<(K, V)> for PersistentMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        for (key, value) in entries {
            self.insert(key, value);
        }
    }
}

impl<K, V, S> FromIterator<(K, V)> for PersistentMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Default,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = Self::new();
        map.extend(entries);
        map
    }
}

impl<'a, K, V, S> IntoIterator for &'a PersistentMap<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

impl<K, V, S> IntoIterator for PersistentMap<K, V, S>
where
    K: Clone,
    V: Clone,
{
    type Item = (K, V);
    type IntoIter = IntoIter<K, V>;

    /// Every entry once, owned: moved out of nodes this map alone holds, cloned out of nodes
    /// it shares with copies.
    fn into_iter(self) -> IntoIter<K, V> {
        IntoIter {
            entries: self.trie.into_iter(),
        }
    }
}

/// Owning iterator of a [`PersistentMap`]: every entry once.
pub struct IntoIter<K: Clone, V: Clone> {
    entries: imbl::hashmap::ConsumingIter<(Slot<K>, V), imbl::shared_ptr::DefaultSharedPtr>,
}

impl<K: Clone, V: Clone> Clone for IntoIter<K, V> {
    fn clone(&self) -> Self {
        IntoIter {
            entries: self.entries.clone(),
        }
    }
}

impl<K: Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for IntoIter<K, V> {
    /// The entries not yet handed out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.clone()).finish()
    }
}

impl<K: Clone, V: Clone> Iterator for IntoIter<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        self.entries.next().map(|(slot, value)| (slot.key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl<K: Clone, V: Clone> ExactSizeIterator for IntoIter<K, V> {}

/// Iterator of [`PersistentMap::iter`]: every entry once, borrowed from the map.
pub struct Iter<'a, K, V> {
    entries: imbl::hashmap::Iter<'a, Slot<K>, V, imbl::shared_ptr::DefaultSharedPtr>,
}

impl<K, V> Clone for Iter<'_, K, V> {
    fn clone(&self) -> Self {
        Iter {
            entries: self.entries.clone(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Iter<'_, K, V> {
    /// The entries not yet handed out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.clone()).finish()
    }
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<(&'a K, &'a V)> {
        self.entries.next().map(|(slot, value)| (&slot.key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}
