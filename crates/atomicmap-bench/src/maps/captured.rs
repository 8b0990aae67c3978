//! atomicmap's maps with change capture on (`CapturedMap`), for the capture workload: each is
//! the same backend as its plain adapter, so the two rows differ only by capture. Between them
//! sits the backend alone holding [`Versioned`] values (no stripes, no clock, no events): what
//! storing a version with every entry costs by itself.

use ::atomicmap::capture::{
    CaptureBackend, CapturedMap, SubscribeOptions, Subscription, Version, Versioned,
};
use ::atomicmap::{AtomicMap, RcuMap, ShardedMap};

use crate::adapter::{BenchHasher, BenchKey, CapturingAdapter, MapAdapter, Replica, Worker};

/// Backend `M` used directly, every value stored with [`Version::ZERO`].
pub struct VersionedStorageAdapter<M>(M);

/// `AtomicMap` holding `Versioned` values.
pub type VersionedAtomicMapAdapter<K> =
    VersionedStorageAdapter<AtomicMap<K, Versioned<u64>, BenchHasher>>;
/// `ShardedMap` holding `Versioned` values.
pub type VersionedShardedAdapter<K> =
    VersionedStorageAdapter<ShardedMap<K, Versioned<u64>, BenchHasher>>;
/// `RcuMap` holding `Versioned` values.
pub type VersionedRcuMapAdapter<K> =
    VersionedStorageAdapter<RcuMap<K, Versioned<u64>, BenchHasher>>;

impl<K, M> MapAdapter<K> for VersionedStorageAdapter<M>
where
    K: BenchKey,
    M: CaptureBackend<K, u64> + BuildBackend,
{
    type Worker<'a>
        = &'a Self
    where
        Self: 'a;

    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self {
        VersionedStorageAdapter(M::build(capacity, hasher))
    }

    fn worker(&self) -> &Self {
        self
    }
}

fn unversioned(value: u64) -> Versioned<u64> {
    Versioned {
        value,
        version: Version::ZERO,
    }
}

impl<K, M> Worker<K> for &VersionedStorageAdapter<M>
where
    K: BenchKey,
    M: CaptureBackend<K, u64>,
{
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.0.read(key, |entry| entry.value)
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.0.put_replacing(key, unversioned(value));
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.0.take(key).is_some()
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        match self.0.read(key, |entry| entry.value) {
            Some(value) => {
                self.0.put_replacing(key.clone(), unversioned(value + 1));
                true
            }
            None => false,
        }
    }

    fn len(&self) -> usize {
        self.0.entry_count()
    }
}

/// A `CapturedMap` over backend `M`; one node, so versions come from one clock.
pub struct CapturedAdapter<K, M>(CapturedMap<K, u64, M>);

/// `AtomicMap` with capture on.
pub type CapturedAtomicMapAdapter<K> =
    CapturedAdapter<K, AtomicMap<K, Versioned<u64>, BenchHasher>>;
/// `ShardedMap` with capture on.
pub type CapturedShardedAdapter<K> = CapturedAdapter<K, ShardedMap<K, Versioned<u64>, BenchHasher>>;
/// `RcuMap` with capture on.
pub type CapturedRcuMapAdapter<K> = CapturedAdapter<K, RcuMap<K, Versioned<u64>, BenchHasher>>;

/// How each backend is built, as its plain adapter builds it.
pub trait BuildBackend: Sized {
    /// An empty backend, presized for `capacity` entries when given.
    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self;
}

impl<K: BenchKey> BuildBackend for AtomicMap<K, Versioned<u64>, BenchHasher> {
    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self {
        AtomicMap::with_capacity_and_hasher(capacity.unwrap_or(0), hasher)
    }
}

impl<K: BenchKey> BuildBackend for ShardedMap<K, Versioned<u64>, BenchHasher> {
    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self {
        ShardedMap::with_capacity_and_hasher(capacity.unwrap_or(0), hasher)
    }
}

impl<K: BenchKey> BuildBackend for RcuMap<K, Versioned<u64>, BenchHasher> {
    fn build(_capacity: Option<usize>, hasher: BenchHasher) -> Self {
        RcuMap::with_hasher(hasher)
    }
}

impl<K, M> MapAdapter<K> for CapturedAdapter<K, M>
where
    K: BenchKey,
    M: CaptureBackend<K, u64> + BuildBackend,
{
    type Worker<'a>
        = &'a Self
    where
        Self: 'a;

    fn build(capacity: Option<usize>, hasher: BenchHasher) -> Self {
        CapturedAdapter(CapturedMap::with_backend(M::build(capacity, hasher), 0))
    }

    fn worker(&self) -> &Self {
        self
    }
}

impl<K, M> CapturingAdapter<K> for CapturedAdapter<K, M>
where
    K: BenchKey,
    M: CaptureBackend<K, u64> + BuildBackend,
{
    fn snapshot_and_subscribe(&self) -> (Replica<K>, Subscription<K, u64>) {
        let (snapshot, subscription) = self.0.snapshot_and_subscribe(SubscribeOptions::default());
        (snapshot.to_map(), subscription)
    }

    fn contents(&self) -> Replica<K> {
        self.0.snapshot().to_map()
    }
}

impl<K, M> Worker<K> for &CapturedAdapter<K, M>
where
    K: BenchKey,
    M: CaptureBackend<K, u64>,
{
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        self.0.get(key)
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        self.0.store(key, value);
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        self.0.remove(key).is_some()
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        self.0.update(key, |v| v + 1).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}
