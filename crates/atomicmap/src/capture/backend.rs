//! The maps change capture can wrap: the few operations it needs from each.
//!
//! A [`CapturedMap`](super::CapturedMap) serialises the writers of each key itself (its
//! stripes), so a backend only has to offer plain reads, overwrites and removals of values
//! that carry their version; conditional operations become a read and a write under the
//! stripe lock.

use equivalent::Equivalent;
use std::hash::{BuildHasher, Hash};

use super::event::Versioned;
use crate::atomic_map::{AtomicMap, GuardedRef};
use crate::hot_swap::RcuMap;
use crate::sharded::ShardedMap;
use crate::snapshot::MapSnapshot;
use crate::stats::MapStats;

mod sealed {
    pub trait Sealed {}
}

/// A map of this crate that [`CapturedMap`](super::CapturedMap) can wrap: [`AtomicMap`],
/// [`ShardedMap`] and [`RcuMap`], each holding [`Versioned`] values.
///
/// [`ReadMostlyMap`](crate::ReadMostlyMap) is not one: Go's `sync.Map` design exists to store
/// to existing keys without a lock, and capture would add the per-key lock it avoids, while
/// its promotion and `misses` semantics would then describe the wrapper's traffic rather than
/// the user's.
pub trait CaptureBackend<K, V>: sealed::Sealed + Send + Sync {
    /// The hasher of the backend's snapshots.
    type Hasher;

    /// Runs `read` on the entry for `key`.
    #[doc(hidden)]
    fn read<Q, R>(&self, key: &Q, read: impl FnOnce(&Versioned<V>) -> R) -> Option<R>
    where
        Q: Hash + Equivalent<K> + ?Sized;

    /// Stores `entry` for `key`; returns the entry it replaced.
    #[doc(hidden)]
    fn put(&self, key: K, entry: Versioned<V>) -> Option<Versioned<V>>;

    /// Stores `entry` for `key`; true if it replaced one (a backend that can tell without
    /// reading the replaced entry says so here).
    #[doc(hidden)]
    fn put_replacing(&self, key: K, entry: Versioned<V>) -> bool {
        self.put(key, entry).is_some()
    }

    /// Removes `key`; returns its entry.
    #[doc(hidden)]
    fn take<Q>(&self, key: &Q) -> Option<Versioned<V>>
    where
        Q: Hash + Equivalent<K> + ?Sized;

    /// Every entry at one instant.
    #[doc(hidden)]
    fn snapshot(&self) -> MapSnapshot<K, Versioned<V>, Self::Hasher>;

    /// Number of entries (as exact as the backend's own `len`).
    #[doc(hidden)]
    fn entry_count(&self) -> usize;

    /// Every key with a value now (weakly consistent: each at its own instant).
    #[doc(hidden)]
    fn keys(&self) -> Vec<K>;

    /// The backend's own internals figures.
    #[doc(hidden)]
    fn stats(&self) -> MapStats;
}

impl<K, V, S> sealed::Sealed for AtomicMap<K, Versioned<V>, S> {}

impl<K, V, S> CaptureBackend<K, V> for AtomicMap<K, Versioned<V>, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync,
{
    type Hasher = S;

    fn read<Q, R>(&self, key: &Q, read: impl FnOnce(&Versioned<V>) -> R) -> Option<R>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.get_with(key, read)
    }

    fn put(&self, key: K, entry: Versioned<V>) -> Option<Versioned<V>> {
        self.insert(key, entry).map(GuardedRef::into_owned)
    }

    fn put_replacing(&self, key: K, entry: Versioned<V>) -> bool {
        self.insert_replacing(key, entry)
    }

    fn take<Q>(&self, key: &Q) -> Option<Versioned<V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.remove(key).map(GuardedRef::into_owned)
    }

    fn snapshot(&self) -> MapSnapshot<K, Versioned<V>, S> {
        AtomicMap::snapshot(self)
    }

    fn entry_count(&self) -> usize {
        AtomicMap::len(self)
    }

    fn keys(&self) -> Vec<K> {
        self.iter().map(|(key, _)| key).collect()
    }

    fn stats(&self) -> MapStats {
        AtomicMap::stats(self)
    }
}

/// The backend impl of a map whose plain methods already have the right shape (`get_with`,
/// `insert`, `remove`, `snapshot`, `len`); only how it lists its keys differs.
macro_rules! capture_backend_by_delegation {
    ($map:ident, keys(|$this:ident| $keys:expr)) => {
        impl<K, V, S> sealed::Sealed for $map<K, Versioned<V>, S> {}

        impl<K, V, S> CaptureBackend<K, V> for $map<K, Versioned<V>, S>
        where
            K: Hash + Eq + Clone + Send + Sync,
            V: Clone + Send + Sync,
            S: BuildHasher + Clone + Send + Sync,
        {
            type Hasher = S;

            fn read<Q, R>(&self, key: &Q, read: impl FnOnce(&Versioned<V>) -> R) -> Option<R>
            where
                Q: Hash + Equivalent<K> + ?Sized,
            {
                self.get_with(key, read)
            }

            fn put(&self, key: K, entry: Versioned<V>) -> Option<Versioned<V>> {
                self.insert(key, entry)
            }

            fn take<Q>(&self, key: &Q) -> Option<Versioned<V>>
            where
                Q: Hash + Equivalent<K> + ?Sized,
            {
                self.remove(key)
            }

            fn snapshot(&self) -> MapSnapshot<K, Versioned<V>, S> {
                $map::snapshot(self)
            }

            fn entry_count(&self) -> usize {
                $map::len(self)
            }

            fn keys(&self) -> Vec<K> {
                let $this = self;
                $keys
            }

            fn stats(&self) -> MapStats {
                $map::stats(self)
            }
        }
    };
}

capture_backend_by_delegation!(
    ShardedMap,
    keys(|map| {
        let mut keys = Vec::with_capacity(ShardedMap::len(map));
        map.for_each(|key, _| keys.push(key.clone()));
        keys
    })
);

capture_backend_by_delegation!(RcuMap, keys(|map| map.load().keys().cloned().collect()));
