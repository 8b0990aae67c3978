//! One interface over the four maps, so that a harness (the linearizability checker, the panic
//! injection sweeps) is written once and run on each. Each method calls the map's own operation
//! of that name; where a map has no such operation, the doc of its impl says what stands in.

#![allow(
    dead_code,
    reason = "the test files and fuzz targets that include this module each use part of it"
)]

use std::hash::{BuildHasher, Hash};

use atomicmap::{AtomicMap, RcuMap, ReadMostlyMap, ShardedMap};

/// The operations the harnesses drive, with std `HashMap`'s meaning.
pub trait TestMap<K, V>: Send + Sync + Sized {
    /// The map's type name, for messages.
    const NAME: &'static str;
    type Hasher;

    /// An empty map, as small as the map allows, hashing with `hasher`.
    fn with_hasher(hasher: Self::Hasher) -> Self;
    fn get(&self, key: &K) -> Option<V>;
    fn insert(&self, key: K, value: V) -> Option<V>;
    fn remove(&self, key: &K) -> Option<V>;
    fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V;
    /// Replaces the value of a present key with `change(value)` and returns the new value;
    /// `None` and nothing stored if the key is absent.
    fn update(&self, key: &K, change: impl Fn(&V) -> V) -> Option<V>;
    fn retain(&self, keep: impl FnMut(&K, &V) -> bool);
    fn clear(&self);
    fn len(&self) -> usize;
    /// The entries of one `snapshot()`, in no particular order.
    fn snapshot_entries(&self) -> Vec<(K, V)>;
}

/// The methods every map spells the same way: the constructor, `get_or_insert_with`, `clear`,
/// `len`, and the entries of a `snapshot()`.
macro_rules! shared_vocabulary {
    ($map:ident) => {
        fn with_hasher(hasher: S) -> Self {
            $map::with_hasher(hasher)
        }
        fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V {
            $map::get_or_insert_with(self, key, make)
        }
        fn clear(&self) {
            $map::clear(self)
        }
        fn len(&self) -> usize {
            $map::len(self)
        }
        fn snapshot_entries(&self) -> Vec<(K, V)> {
            let snapshot = self.snapshot();
            snapshot
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }
    };
}

impl<K, V, S> TestMap<K, V> for AtomicMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync,
{
    const NAME: &'static str = "AtomicMap";
    type Hasher = S;

    fn get(&self, key: &K) -> Option<V> {
        AtomicMap::get(self, key)
    }
    fn insert(&self, key: K, value: V) -> Option<V> {
        AtomicMap::insert(self, key, value).map(atomicmap::GuardedRef::into_owned)
    }
    fn remove(&self, key: &K) -> Option<V> {
        AtomicMap::remove(self, key).map(atomicmap::GuardedRef::into_owned)
    }
    fn update(&self, key: &K, change: impl Fn(&V) -> V) -> Option<V> {
        AtomicMap::update(self, key, change)
    }
    fn retain(&self, keep: impl FnMut(&K, &V) -> bool) {
        AtomicMap::retain(self, keep)
    }
    shared_vocabulary!(AtomicMap);
}

/// `update` is `ShardedMap::compute` that leaves an absent key absent: the map's general
/// read-modify-write.
impl<K, V, S> TestMap<K, V> for ShardedMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Clone + Send + Sync,
{
    const NAME: &'static str = "ShardedMap";
    type Hasher = S;

    fn get(&self, key: &K) -> Option<V> {
        ShardedMap::get(self, key)
    }
    fn insert(&self, key: K, value: V) -> Option<V> {
        ShardedMap::insert(self, key, value)
    }
    fn remove(&self, key: &K) -> Option<V> {
        ShardedMap::remove(self, key)
    }
    fn update(&self, key: &K, change: impl Fn(&V) -> V) -> Option<V> {
        ShardedMap::compute(self, key.clone(), |current| current.map(&change))
    }
    fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        ShardedMap::retain(self, |key, value| keep(key, value))
    }
    shared_vocabulary!(ShardedMap);
}

/// `update` is `RcuMap::compute` that leaves an absent key absent.
impl<K, V, S> TestMap<K, V> for RcuMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Clone + Send + Sync,
{
    const NAME: &'static str = "RcuMap";
    type Hasher = S;

    fn get(&self, key: &K) -> Option<V> {
        RcuMap::get(self, key)
    }
    fn insert(&self, key: K, value: V) -> Option<V> {
        RcuMap::insert(self, key, value)
    }
    fn remove(&self, key: &K) -> Option<V> {
        RcuMap::remove(self, key)
    }
    fn update(&self, key: &K, change: impl Fn(&V) -> V) -> Option<V> {
        RcuMap::compute(self, key.clone(), |current| current.map(&change))
    }
    fn retain(&self, keep: impl FnMut(&K, &V) -> bool) {
        RcuMap::retain(self, keep)
    }
    shared_vocabulary!(RcuMap);
}

/// `ReadMostlyMap` keeps Go's names: `get` is `load`, `insert` is `swap`, `remove` is
/// `load_and_delete`. It has no closure-taking update (Go's `sync.Map` has none): `update`
/// loads the value, runs `change` in the caller, and stores the result with `compare_and_swap`,
/// retrying when another writer came first.
impl<K, V, S> TestMap<K, V> for ReadMostlyMap<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + PartialEq + Send + Sync,
    S: BuildHasher + Clone + Send + Sync,
{
    const NAME: &'static str = "ReadMostlyMap";
    type Hasher = S;

    fn get(&self, key: &K) -> Option<V> {
        ReadMostlyMap::load(self, key)
    }
    fn insert(&self, key: K, value: V) -> Option<V> {
        ReadMostlyMap::swap(self, key, value)
    }
    fn remove(&self, key: &K) -> Option<V> {
        ReadMostlyMap::load_and_delete(self, key)
    }
    fn update(&self, key: &K, change: impl Fn(&V) -> V) -> Option<V> {
        loop {
            let current = ReadMostlyMap::load(self, key)?;
            let changed = change(&current);
            if self.compare_and_swap(key, &current, changed.clone()) {
                return Some(changed);
            }
        }
    }
    fn retain(&self, keep: impl FnMut(&K, &V) -> bool) {
        ReadMostlyMap::retain(self, keep)
    }
    shared_vocabulary!(ReadMostlyMap);
}
