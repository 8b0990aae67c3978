//! [`MapSnapshot`]: an immutable, point-in-time view of any map in this crate.
//!
//! # Snapshot versus iteration
//! Every map has two ways to look at all of its entries:
//! * **iteration** (`iter`, `for_each`, `range`) is *weakly consistent*: it never sees a key
//!   twice, but each key is read at its own moment while writers keep going, so the result
//!   may mix states that never coexisted (a key written after another one can appear newer
//!   than it);
//! * **`snapshot()`** returns the map's contents at *one* instant, its linearization point:
//!   every key that was present then, once, with the value it had then, and nothing else.
//!
//! A snapshot is a value: it does not pin, lock or otherwise hold back the map it came from,
//! and it can be kept, sent to another thread, queried and copied at leisure. Each map's
//! `snapshot` documentation says how the instant is obtained and who pays for it.
//!
//! # Versions
//! [`MapSnapshot::version`] grows with the history of the map it came from: a snapshot taken
//! after another one (in real time) never has a smaller version. What it counts depends on
//! the map (writes, publications, or tables); see each map's `snapshot`.

use std::collections::hash_map;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::sync::Arc;

pub use crate::hash::DefaultHashBuilder;
use equivalent::Equivalent;

use crate::hash::{shard_index, Hashed, HashedTable, Probe, StoredHash};
use crate::persistent::{self, PersistentMap};

/// An immutable view of a map's entries at one instant, with the version of the map at that
/// instant. See the [module docs](self) for how it differs from iteration.
///
/// ```
/// use atomicmap::AtomicMap;
///
/// let map: AtomicMap<u32, &str> = AtomicMap::new();
/// map.insert(2, "two");
/// map.insert(1, "one");
/// let snapshot = map.snapshot();
/// map.insert(3, "three");
/// assert_eq!(snapshot.len(), 2);
/// assert_eq!(snapshot.get(&1), Some(&"one"));
/// assert_eq!(snapshot.get(&3), None);
/// assert_eq!(snapshot.sorted_keys(), vec![&1, &2]);
/// let copy: std::collections::BTreeMap<u32, &str> = snapshot.to_map();
/// assert_eq!(copy.len(), 2);
/// ```
pub struct MapSnapshot<K, V, S = DefaultHashBuilder> {
    storage: Storage<K, V, S>,
    version: u64,
}

enum Storage<K, V, S> {
    /// Tables of keys stored with their hash: the shards of a `ShardedMap` (shared
    /// copy-on-write with the map), or one table built for the snapshot. Keys carry their hash
    /// so that `get` can match them by [`Equivalent`], which std's `HashMap` cannot.
    Shards {
        tables: Box<[Arc<HashedTable<K, V>>]>,
        /// The map's hasher, which computed the hashes stored with the keys.
        hasher: S,
        /// Shard selection of the map the tables came from (see [`shard_index`]).
        shard_shift: u32,
        len: usize,
    },
    /// An `RcuMap` publication: already immutable, shared as is.
    Persistent(PersistentMap<K, V, S>),
}

impl<K, V, S> MapSnapshot<K, V, S> {
    /// A snapshot of `entries`, hashed with `hasher`; of a repeated key, the last value stays.
    pub(crate) fn from_entries(
        entries: impl IntoIterator<Item = (K, V)>,
        hasher: S,
        version: u64,
    ) -> Self
    where
        K: Hash + Eq,
        S: BuildHasher,
    {
        let entries = entries.into_iter();
        let mut table =
            HashedTable::with_capacity_and_hasher(entries.size_hint().0, StoredHash::default());
        for (key, value) in entries {
            let hash = hasher.hash_one(&key);
            table.insert(Hashed { hash, key }, value);
        }
        // One table is one shard: `shard_index` with a shift of 64 picks shard 0.
        Self::from_shards(Box::new([Arc::new(table)]), hasher, u64::BITS, version)
    }

    /// A snapshot made of the shards of a `ShardedMap`.
    pub(crate) fn from_shards(
        tables: Box<[Arc<HashedTable<K, V>>]>,
        hasher: S,
        shard_shift: u32,
        version: u64,
    ) -> Self {
        let len = tables.iter().map(|table| table.len()).sum();
        MapSnapshot {
            storage: Storage::Shards {
                tables,
                hasher,
                shard_shift,
                len,
            },
            version,
        }
    }

    /// A snapshot that is an `RcuMap` publication.
    pub(crate) fn from_persistent(map: PersistentMap<K, V, S>, version: u64) -> Self {
        MapSnapshot {
            storage: Storage::Persistent(map),
            version,
        }
    }

    /// The version of the map at the snapshot's instant; see the [module docs](self).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match &self.storage {
            Storage::Shards { len, .. } => *len,
            Storage::Persistent(map) => map.len(),
        }
    }

    /// Whether the snapshot has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry once, in no particular order.
    pub fn iter(&self) -> SnapshotIter<'_, K, V, S> {
        let inner = match &self.storage {
            Storage::Shards { tables, .. } => {
                let mut tables = tables.iter();
                let current = tables.next().map(|table| table.iter());
                IterInner::Shards { tables, current }
            }
            Storage::Persistent(map) => IterInner::Persistent(map.iter()),
        };
        SnapshotIter {
            inner,
            remaining: self.len(),
            _hasher: PhantomData,
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

    /// The keys in ascending order.
    pub fn sorted_keys(&self) -> Vec<&K>
    where
        K: Ord,
    {
        let mut keys: Vec<&K> = self.iter().map(|(key, _)| key).collect();
        keys.sort_unstable();
        keys
    }

    /// The entries in ascending key order.
    pub fn iter_sorted(&self) -> std::vec::IntoIter<(&K, &V)>
    where
        K: Ord,
    {
        let mut entries: Vec<(&K, &V)> = self.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        entries.into_iter()
    }

    /// Copies every entry into `target` (any map, or any collection of pairs) and returns it.
    pub fn copy_into<M: Extend<(K, V)>>(&self, target: &mut M)
    where
        K: Clone,
        V: Clone,
    {
        target.extend(self.iter().map(|(key, value)| (key.clone(), value.clone())));
    }

    /// A new map of any type holding a copy of every entry: a `HashMap`, a `BTreeMap`, or any
    /// of this crate's maps.
    pub fn to_map<M: FromIterator<(K, V)>>(&self) -> M
    where
        K: Clone,
        V: Clone,
    {
        self.iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

impl<K, V, S> MapSnapshot<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher + Clone,
{
    /// The value `key` had at the snapshot's instant. `key` may be any [`Equivalent`] form of
    /// `K` (not only a `Borrow` form): every snapshot's tables store keys with their hash.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        match &self.storage {
            Storage::Shards {
                tables,
                hasher,
                shard_shift,
                ..
            } => {
                let hash = hasher.hash_one(key);
                tables[shard_index(hash, *shard_shift)].get(Probe { hash, key }.lookup())
            }
            Storage::Persistent(map) => map.get(key),
        }
    }

    /// Whether `key` was present at the snapshot's instant.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.get(key).is_some()
    }
}

impl<'a, K, V, S> IntoIterator for &'a MapSnapshot<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = SnapshotIter<'a, K, V, S>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K, V, S> FromIterator<(K, V)> for MapSnapshot<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher + Default,
{
    /// A snapshot of the given entries with version 0, not taken from any map (for a test's
    /// expected contents, or a deserialized one); of a repeated key, the last value stays.
    ///
    /// ```
    /// use atomicmap::{MapSnapshot, ShardedMap};
    ///
    /// let expected: MapSnapshot<&str, u32> = [("a", 1), ("b", 2)].into_iter().collect();
    /// let map: ShardedMap<&str, u32> = [("b", 2), ("a", 1)].into_iter().collect();
    /// assert_eq!(map.snapshot(), expected);
    /// assert_eq!(expected.version(), 0);
    /// ```
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        Self::from_entries(entries, S::default(), 0)
    }
}

impl<K: Clone, V: Clone, S: Clone> Clone for MapSnapshot<K, V, S> {
    /// O(shards) at most: the entries are immutable and shared by reference count, not copied.
    fn clone(&self) -> Self {
        let storage = match &self.storage {
            Storage::Shards {
                tables,
                hasher,
                shard_shift,
                len,
            } => Storage::Shards {
                tables: tables.clone(),
                hasher: hasher.clone(),
                shard_shift: *shard_shift,
                len: *len,
            },
            Storage::Persistent(map) => Storage::Persistent(map.clone()),
        };
        MapSnapshot {
            storage,
            version: self.version,
        }
    }
}

impl<K, V, S> PartialEq for MapSnapshot<K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher + Clone,
{
    /// Same keys with equal values, as std's `HashMap` compares. The versions are not
    /// compared: they count different things on different maps (module docs), and two
    /// snapshots with the same entries are the same contents.
    ///
    /// ```
    /// use atomicmap::{RcuMap, ShardedMap};
    ///
    /// let sharded: ShardedMap<u32, u32> = (0..10).map(|key| (key, key)).collect();
    /// let rcu: RcuMap<u32, u32> = (0..10).map(|key| (key, key)).collect();
    /// let (a, b) = (sharded.snapshot(), rcu.snapshot());
    /// assert_eq!(a, b);
    /// assert_ne!(a.version(), b.version());
    /// ```
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .all(|(key, value)| other.get(key) == Some(value))
    }
}

impl<K, V, S> Eq for MapSnapshot<K, V, S>
where
    K: Hash + Eq,
    V: Eq,
    S: BuildHasher + Clone,
{
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for MapSnapshot<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapSnapshot")
            .field("version", &self.version)
            .field("entries", &DebugEntries(self))
            .finish()
    }
}

struct DebugEntries<'a, K, V, S>(&'a MapSnapshot<K, V, S>);

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for DebugEntries<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

/// Iterator of [`MapSnapshot::iter`]: every entry once, borrowed from the snapshot.
pub struct SnapshotIter<'a, K, V, S> {
    inner: IterInner<'a, K, V>,
    remaining: usize,
    /// The snapshot's hasher type, which iteration does not need.
    _hasher: PhantomData<fn() -> S>,
}

impl<K, V, S> Clone for SnapshotIter<'_, K, V, S> {
    /// An iterator at the same position (the entries are borrowed, not cloned).
    fn clone(&self) -> Self {
        SnapshotIter {
            inner: self.inner.clone(),
            remaining: self.remaining,
            _hasher: PhantomData,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for SnapshotIter<'_, K, V, S> {
    /// The entries not yet handed out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.clone()).finish()
    }
}

enum IterInner<'a, K, V> {
    Shards {
        tables: std::slice::Iter<'a, Arc<HashedTable<K, V>>>,
        current: Option<hash_map::Iter<'a, Hashed<K>, V>>,
    },
    Persistent(persistent::Iter<'a, K, V>),
}

impl<K, V> Clone for IterInner<'_, K, V> {
    fn clone(&self) -> Self {
        match self {
            IterInner::Shards { tables, current } => IterInner::Shards {
                tables: tables.clone(),
                current: current.clone(),
            },
            IterInner::Persistent(entries) => IterInner::Persistent(entries.clone()),
        }
    }
}

impl<'a, K, V, S> Iterator for SnapshotIter<'a, K, V, S> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let next = match &mut self.inner {
            IterInner::Shards { tables, current } => loop {
                let entries = current.as_mut()?;
                if let Some((stored, value)) = entries.next() {
                    break Some((&stored.key, value));
                }
                *current = tables.next().map(|table| table.iter());
            },
            IterInner::Persistent(entries) => entries.next(),
        };
        if next.is_some() {
            self.remaining -= 1;
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K, V, S> ExactSizeIterator for SnapshotIter<'_, K, V, S> {}

impl<K, V, S> FusedIterator for SnapshotIter<'_, K, V, S> {}
