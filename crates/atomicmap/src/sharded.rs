//! [`ShardedMap`]: N `RwLock`-guarded `HashMap` shards, each on its own cache lines.
//!
//! The simple, fast baseline. A key's hash picks its shard; the operation takes that shard's
//! lock (shared for reads, exclusive for writes) and runs on a plain single-threaded
//! `HashMap` that stores each key with that hash. Threads working on different shards never touch the
//! same cache line, so contention falls roughly N-fold compared with one lock.
//!
//! [`ShardedSet`](crate::ShardedSet) is a set over this map, with the same guarantees.
//!
//! # Lookups by an equivalent key
//! Lookups take any `Q: Hash + Equivalent<K>` (the crate's [`Equivalent`],
//! which every `Q` with `K: Borrow<Q>` is): each shard's table stores keys with their hash
//! and is searched through a probe that compares with `Q::equivalent`, so a query type need
//! not be a borrowed form of the key. `Q`'s `Hash` must agree with `K`'s.
//!
//! # Shard selection
//! The shard is taken from the hash *after* skipping its top 7 bits, because hashbrown (std's
//! `HashMap`) stores those top bits as its per-slot tag: choosing shards from them would give
//! all keys of a shard the same tag prefix and weaken the in-shard filtering.
//!
//! # No deadlock by construction
//! Every method returns owned values or runs a caller's closure *under* the shard lock and
//! returns; no lock guard ever outlives a call. The one remaining hazard is a closure (given to
//! [`ShardedMap::get_with`], [`ShardedMap::get_mut`], [`ShardedMap::update`],
//! [`ShardedMap::upsert`], [`ShardedMap::compute`],
//! [`ShardedMap::retain`], [`ShardedMap::for_each`], ...) that uses the same map again: on the
//! same shard that deadlocks at once (std's `RwLock` is not re-entrant, even for two reads
//! when a writer is queued), and on another shard it can deadlock against a thread doing the
//! reverse. This is dashmap's most reported problem (held `Ref` + second access). Debug builds
//! therefore panic with an explanation as soon as a thread that holds a lock of a map asks for
//! any lock of the same map. So a thread waits for a shard lock only while it holds none of
//! the map's (a snapshot, which holds them all, takes them in index order), and no cycle can
//! form. Release builds skip the check.
//!
//! The `try_` reads ([`ShardedMap::try_get`], [`ShardedMap::try_get_with`],
//! [`ShardedMap::try_get_mut`]) never wait: when the key's shard is locked against them they
//! return [`WouldBlock`]. They cannot deadlock, so they are also allowed inside a closure
//! running under one of the same map's locks (they return `WouldBlock` for the shard that
//! closure holds for writing), and the debug check lets them through.
//!
//! # Consistency
//! Single-key operations are linearizable (one shard, one lock). [`ShardedMap::len`],
//! [`ShardedMap::iter`], [`ShardedMap::keys`], [`ShardedMap::values`],
//! [`ShardedMap::for_each`], [`ShardedMap::for_each_mut`], [`ShardedMap::retain`],
//! [`ShardedMap::capacity`], [`ShardedMap::stats`] and [`ShardedMap::clear`] visit shards one after another: each shard is seen at one instant,
//! different shards at different instants (weakly consistent). A key is never seen twice.
//! [`ShardedMap::snapshot`] is the whole map at one instant, and so are `clone` and `==`
//! (each side's own instant: comparing two maps is not atomic across both).
//!
//! # Panics in user code
//! A `Hash`, `Eq`, `Clone` or closure that panics leaves the map usable, with every entry it
//! had and nothing leaked:
//! * a panic under a shard lock poisons it; the map ignores the poison (every lock is taken
//!   with `PoisonError::into_inner`), which is sound because of the next two points;
//! * each key is stored with the hash the map computed for it, so a table that grows or
//!   re-hashes in place never runs `Hash` (std's `HashMap` drops the keys it has not re-hashed
//!   yet when `Hash` panics there); the hash is computed before any lock is taken;
//! * a single-key write runs its closure and clones what it returns before it changes the
//!   table, so a panic there leaves the entry as it was. [`ShardedMap::retain`] stops where its
//!   closure panicked: the entries it visited are decided, the others kept, as with std's
//!   `HashMap::retain`; [`ShardedMap::get_mut`] keeps what the closure did before panicking.
//!
//! # Copy-on-write shards
//! A shard's table sits behind an `Arc`. A snapshot read-locks all shards at once and clones
//! those `Arc`s (O(shards) under the locks); a writer that later finds its shard's table
//! shared copies it before writing, so the snapshot keeps the table as it was. Unshared, the
//! check costs the writer one uncontended atomic on a cache line it is about to write anyway.

use std::collections::hash_map;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, OnceLock, TryLockError};

use equivalent::Equivalent;

use crate::error::CapacityError;
use crate::hash::{shard_index, Hashed, HashedTable, Probe, StoredHash};
use crate::snapshot::MapSnapshot;
use crate::stats::MapStats;
use crate::sync::{CachePadded, RwLock, RwLockReadGuard, RwLockWriteGuard};
// std's atomic even under loom: the snapshot counter orders nothing, so the models need not
// explore it.
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::hash::DefaultHashBuilder;

/// Largest accepted shard count; more shards than this only waste memory.
pub const MAX_SHARDS: usize = 1 << 16;

/// Shards per available core in the default shard count: enough that two threads rarely pick
/// the same shard at random.
const SHARDS_PER_CORE: usize = 4;

/// Why a [`ShardedMap`] could not be built with the requested shard count. (A capacity that
/// cannot be allocated is a [`CapacityError`].)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardedMapError {
    /// A shard count of zero was requested.
    ZeroShards,
    /// More shards than [`MAX_SHARDS`] were requested.
    TooManyShards {
        /// The count asked for.
        requested: usize,
    },
}

impl fmt::Display for ShardedMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardedMapError::ZeroShards => write!(f, "a sharded map needs at least one shard"),
            ShardedMapError::TooManyShards { requested } => write!(
                f,
                "{requested} shards requested, at most {MAX_SHARDS} are supported"
            ),
        }
    }
}

impl std::error::Error for ShardedMapError {}

/// A `try_` operation of [`ShardedMap`] found the key's shard locked against it (by another
/// thread, or by a closure of this thread running under that shard's lock) and returned
/// instead of waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WouldBlock;

impl fmt::Display for WouldBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the key's shard is locked; the operation would have waited"
        )
    }
}

impl std::error::Error for WouldBlock {}

/// The default shard count: `4 × available cores`, rounded up to a power of two (a single
/// core gives 4 shards, 2 cores 8, 6 cores 32, 16 cores 64).
pub fn default_shard_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    (cores * SHARDS_PER_CORE)
        .next_power_of_two()
        .min(MAX_SHARDS)
}

type Shard<K, V> = CachePadded<RwLock<ShardState<K, V>>>;

/// What a shard lock guards.
struct ShardState<K, V> {
    /// Shared with snapshots taken since the last write (copy-on-write, module docs).
    table: Arc<HashedTable<K, V>>,
    /// Write operations on this shard so far; snapshots sum these into their version.
    writes: u64,
    /// Times a write found the table's capacity changed by it (std's `HashMap` grew).
    resizes: u64,
}

impl<K, V> ShardState<K, V> {
    fn new(table: HashedTable<K, V>) -> Self {
        ShardState {
            table: Arc::new(table),
            writes: 0,
            resizes: 0,
        }
    }
}

/// Copies a shard's table for a writer that finds it shared with a snapshot.
type CloneTable<K, V> = fn(&HashedTable<K, V>) -> HashedTable<K, V>;

/// A concurrent hash map made of cache-line-padded `RwLock<HashMap>` shards. See the
/// [module docs](self) for shard selection, the deadlock rule and consistency.
///
/// What sets it apart from the crate's other maps: values are changed in place under a lock
/// (`get_mut`, `for_each_mut`), so a value need not be `Clone` to be updated, and no reference
/// into the map outlives a call (where dashmap hands out guards that can deadlock).
///
/// ```
/// use std::sync::Arc;
/// use std::thread;
/// use atomicmap::ShardedMap;
///
/// let sessions: Arc<ShardedMap<u64, Vec<String>>> = Arc::new(ShardedMap::new());
/// let workers: Vec<_> = (0..4)
///     .map(|worker| {
///         let sessions = Arc::clone(&sessions);
///         thread::spawn(move || {
///             sessions.upsert(worker % 2, || vec![], |log| log.clone());
///             sessions.get_mut(&(worker % 2), |log| log.push(format!("worker {worker}")));
///         })
///     })
///     .collect();
/// for worker in workers {
///     worker.join().unwrap();
/// }
/// assert_eq!(sessions.len(), 2);
/// assert_eq!(sessions.values().map(|log| log.len()).sum::<usize>(), 4);
/// ```
pub struct ShardedMap<K, V, S = DefaultHashBuilder> {
    /// A power-of-two number of shards.
    shards: Box<[Shard<K, V>]>,
    /// Right shift that turns a (tag-stripped) hash into a shard index; 64 for one shard.
    shard_shift: u32,
    hasher: S,
    /// Set by the first snapshot, the only thing that shares tables (and the only place
    /// with the `Clone` bounds a copy needs).
    clone_table: OnceLock<CloneTable<K, V>>,
    /// Calls of [`ShardedMap::snapshot`], for [`ShardedMap::stats`]; relaxed, as it orders
    /// nothing.
    snapshots_taken: AtomicU64,
}

impl<K, V> ShardedMap<K, V> {
    /// An empty map with [`default_shard_count`] shards and the default hasher.
    pub fn new() -> Self {
        Self::with_hasher(DefaultHashBuilder::default())
    }

    /// An empty map with `shards` shards (rounded up to a power of two).
    pub fn with_shards(shards: usize) -> Result<Self, ShardedMapError> {
        Self::with_shards_and_hasher(shards, DefaultHashBuilder::default())
    }

    /// An empty map with room for `capacity` entries spread over the default shards.
    ///
    /// # Panics
    /// If `capacity` overflows or cannot be allocated; see
    /// [`try_with_capacity`](Self::try_with_capacity).
    pub fn with_capacity(capacity: usize) -> Self
    where
        K: Hash + Eq,
    {
        Self::with_capacity_and_hasher(capacity, DefaultHashBuilder::default())
    }

    /// Like [`with_capacity`](Self::with_capacity), but reports an impossible capacity
    /// instead of panicking.
    pub fn try_with_capacity(capacity: usize) -> Result<Self, CapacityError>
    where
        K: Hash + Eq,
    {
        Self::try_with_capacity_and_hasher(capacity, DefaultHashBuilder::default())
    }
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S> ShardedMap<K, V, S> {
    /// An empty map with [`default_shard_count`] shards that hashes with `hasher`.
    pub fn with_hasher(hasher: S) -> Self {
        Self::with_power_of_two_shards(default_shard_count(), hasher)
    }

    /// An empty map with `shards` shards (rounded up to a power of two) that hashes with
    /// `hasher`.
    pub fn with_shards_and_hasher(shards: usize, hasher: S) -> Result<Self, ShardedMapError> {
        if shards == 0 {
            return Err(ShardedMapError::ZeroShards);
        }
        if shards > MAX_SHARDS {
            return Err(ShardedMapError::TooManyShards { requested: shards });
        }
        Ok(Self::with_power_of_two_shards(
            shards.next_power_of_two(),
            hasher,
        ))
    }

    /// An empty map with room for `capacity` entries spread over the default shards, hashing
    /// with `hasher`.
    ///
    /// # Panics
    /// If `capacity` overflows or cannot be allocated; see
    /// [`try_with_capacity_and_hasher`](Self::try_with_capacity_and_hasher).
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self
    where
        K: Hash + Eq,
        S: BuildHasher,
    {
        match Self::try_with_capacity_and_hasher(capacity, hasher) {
            Ok(map) => map,
            Err(error) => panic!("ShardedMap::with_capacity({capacity}): {error}"),
        }
    }

    /// Like [`with_capacity_and_hasher`](Self::with_capacity_and_hasher), but reports an
    /// impossible capacity instead of panicking.
    pub fn try_with_capacity_and_hasher(capacity: usize, hasher: S) -> Result<Self, CapacityError>
    where
        K: Hash + Eq,
        S: BuildHasher,
    {
        let map = Self::with_hasher(hasher);
        map.try_reserve(capacity)?;
        Ok(map)
    }

    fn with_power_of_two_shards(shards: usize, hasher: S) -> Self {
        ShardedMap {
            shards: (0..shards)
                .map(|_| {
                    CachePadded(RwLock::new(ShardState::new(HashedTable::with_hasher(
                        StoredHash::default(),
                    ))))
                })
                .collect(),
            shard_shift: shard_shift(shards),
            hasher,
            clone_table: OnceLock::new(),
            snapshots_taken: AtomicU64::new(0),
        }
    }
}

/// The shift that maps a tag-stripped 64-bit hash onto `shards` (a power of two) shards.
fn shard_shift(shards: usize) -> u32 {
    u64::BITS - shards.trailing_zeros()
}

impl<K, V, S> ShardedMap<K, V, S> {
    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Identifies this map for the re-entrancy check (the shard array never moves).
    #[cfg(debug_assertions)]
    fn identity(&self) -> usize {
        self.shards.as_ptr() as usize
    }

    fn read_shard(&self, index: usize) -> ShardReadGuard<'_, K, V> {
        ShardReadGuard {
            #[cfg(debug_assertions)]
            _held: reentrancy::HeldLock::acquire(self.identity(), index),
            // A panic in user code poisons the lock but leaves the table whole (module docs),
            // so the lock is taken regardless.
            state: self.shards[index]
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    fn write_shard(&self, index: usize) -> ShardWriteGuard<'_, K, V> {
        ShardWriteGuard {
            #[cfg(debug_assertions)]
            _held: reentrancy::HeldLock::acquire(self.identity(), index),
            state: self.shards[index]
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            clone_table: &self.clone_table,
            capacity_before_write: None,
        }
    }

    /// The shard's read lock if it can be had without waiting. A try-lock cannot deadlock, so
    /// it is registered with the re-entrancy check without being refused by it.
    fn try_read_shard(&self, index: usize) -> Result<ShardReadGuard<'_, K, V>, WouldBlock> {
        let state = match self.shards[index].try_read() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(WouldBlock),
        };
        Ok(ShardReadGuard {
            #[cfg(debug_assertions)]
            _held: reentrancy::HeldLock::register(self.identity(), index),
            state,
        })
    }

    /// The shard's write lock if it can be had without waiting; see
    /// [`try_read_shard`](Self::try_read_shard).
    fn try_write_shard(&self, index: usize) -> Result<ShardWriteGuard<'_, K, V>, WouldBlock> {
        let state = match self.shards[index].try_write() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(WouldBlock),
        };
        Ok(ShardWriteGuard {
            #[cfg(debug_assertions)]
            _held: reentrancy::HeldLock::register(self.identity(), index),
            state,
            clone_table: &self.clone_table,
            capacity_before_write: None,
        })
    }

    /// Number of entries, summed shard by shard (weakly consistent).
    pub fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|index| self.read_shard(index).table().len())
            .sum()
    }

    /// Whether every shard is empty (weakly consistent).
    pub fn is_empty(&self) -> bool {
        (0..self.shards.len()).all(|index| self.read_shard(index).table().is_empty())
    }

    /// Removes every entry, shard by shard.
    pub fn clear(&self) {
        for index in 0..self.shards.len() {
            self.write_shard(index).table_mut().clear();
        }
    }

    /// Keeps only the entries for which `keep` returns `true`, shard by shard, each shard
    /// under its write lock. `keep` runs once per entry and must not use this map (module
    /// docs); if it panics, the entries it rejected so far are gone and the others stay.
    /// Unlike the lock-free maps' `retain`, `keep` sees each value once and may change it.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let stock: ShardedMap<&str, u32> = [("apples", 3), ("pears", 1)].into_iter().collect();
    /// stock.retain(|_, count| {
    ///     *count -= 1;
    ///     *count > 0
    /// });
    /// assert_eq!((stock.get("apples"), stock.get("pears")), (Some(2), None));
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for index in 0..self.shards.len() {
            self.write_shard(index)
                .table_mut()
                .retain(|stored, value| keep(&stored.key, value));
        }
    }

    /// Removes every entry and returns them, shard by shard, each shard emptied under its
    /// write lock (its capacity is kept). Entries inserted meanwhile into a shard already
    /// drained stay in the map; no entry is both returned and left.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let jobs: ShardedMap<u32, &str> = [(1, "index"), (2, "compact")].into_iter().collect();
    /// let mut taken = jobs.drain();
    /// taken.sort();
    /// assert_eq!(taken, [(1, "index"), (2, "compact")]);
    /// assert!(jobs.is_empty());
    /// ```
    pub fn drain(&self) -> Vec<(K, V)> {
        self.extract_if(|_, _| true)
    }

    /// Removes the entries for which `extract` returns `true` and returns them, shard by
    /// shard, each shard under its write lock (as [`retain`](Self::retain), with the removed
    /// entries handed back: `extract` runs once per entry, may change the value, and must not
    /// use this map). If `extract` panics, the entries it accepted so far are dropped and the
    /// others stay.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let sessions: ShardedMap<u32, u64> = [(1, 10), (2, 99), (3, 7)].into_iter().collect();
    /// let mut expired = sessions.extract_if(|_, idle_secs| *idle_secs > 60);
    /// expired.sort();
    /// assert_eq!(expired, [(2, 99)]);
    /// assert_eq!(sessions.len(), 2);
    /// ```
    pub fn extract_if(&self, mut extract: impl FnMut(&K, &mut V) -> bool) -> Vec<(K, V)> {
        let mut extracted = Vec::new();
        for index in 0..self.shards.len() {
            let mut shard = self.write_shard(index);
            extracted.extend(
                shard
                    .table_mut()
                    .extract_if(|stored, value| extract(&stored.key, value))
                    .map(|(stored, value)| (stored.key, value)),
            );
        }
        extracted
    }

    /// Calls `visit` on every entry, shard by shard, each shard under its read lock (weakly
    /// consistent, no cloning). `visit` runs once per entry and must not use this map (module
    /// docs).
    pub fn for_each(&self, mut visit: impl FnMut(&K, &V)) {
        for index in 0..self.shards.len() {
            for (stored, value) in self.read_shard(index).table().iter() {
                visit(&stored.key, value);
            }
        }
    }

    /// Calls `visit` on every entry with its value mutable in place: the map's `iter_mut`.
    /// Shard by shard, each shard under its write lock, one lock at a time (weakly
    /// consistent, as [`for_each`](Self::for_each)); `visit` runs once per entry.
    ///
    /// Deadlock rules: while `visit` runs this thread holds one shard's write lock, so
    /// `visit` must not use this map (a debug build panics if it does; the `try_` reads are
    /// allowed and return [`WouldBlock`] for the held shard). Other threads wait for that one
    /// shard only, and since no thread holds two shard locks, `for_each_mut` cannot deadlock
    /// with them. A panic in `visit` leaves the values it changed so far changed.
    ///
    /// It is a closure rather than an iterator because an iterator's items would outlive the
    /// shard lock that makes `&mut V` sound as soon as it moved on to the next shard.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<&str, Vec<u32>> = [("a", vec![1]), ("b", vec![])].into_iter().collect();
    /// map.for_each_mut(|_, log| log.push(9));
    /// assert_eq!(map.get("a"), Some(vec![1, 9]));
    /// assert_eq!(map.get("b"), Some(vec![9]));
    /// ```
    #[doc(alias = "iter_mut")]
    pub fn for_each_mut(&self, mut visit: impl FnMut(&K, &mut V)) {
        for index in 0..self.shards.len() {
            for (stored, value) in self.write_shard(index).table_mut().iter_mut() {
                visit(&stored.key, value);
            }
        }
    }

    /// Entries the map holds before one of its shards grows, summed shard by shard (weakly
    /// consistent). Keys spread unevenly over shards, so a shard may grow before `len()`
    /// reaches this figure.
    pub fn capacity(&self) -> usize {
        (0..self.shards.len())
            .map(|index| self.read_shard(index).table().capacity())
            .sum()
    }

    /// The map's internals as a [`MapStats`], read shard by shard (weakly consistent, one
    /// read lock at a time):
    /// * `len` and `capacity` are summed over the shards;
    /// * `resizes` counts the writes that changed a shard table's capacity (std's `HashMap`
    ///   growing; a copy-on-write copy for a snapshot is not a resize);
    /// * `snapshots_taken` counts calls of [`snapshot`](Self::snapshot) (`clone` and `==`
    ///   share tables the same way but are not counted);
    /// * `migrations_in_flight`, `tombstones`, `longest_probe` and `garbage_bytes` are 0: a
    ///   shard grows all at once under its write lock, std's `HashMap` keeps no tombstones a
    ///   caller could act on and does not report probe lengths, and nothing is retired (a
    ///   table shared with a snapshot is owned by that snapshot, not garbage).
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<u32, u32> = ShardedMap::with_shards(1).unwrap();
    /// for key in 0..100 {
    ///     map.insert(key, key);
    /// }
    /// let _ = map.snapshot();
    /// let stats = map.stats();
    /// assert_eq!((stats.len, stats.snapshots_taken), (100, 1));
    /// assert!(stats.capacity >= 100 && stats.resizes > 0);
    /// assert_eq!(stats.tombstones, 0);
    /// ```
    pub fn stats(&self) -> MapStats {
        let mut stats = MapStats {
            snapshots_taken: self.snapshots_taken.load(Ordering::Relaxed),
            ..MapStats::default()
        };
        for index in 0..self.shards.len() {
            let shard = self.read_shard(index);
            stats.len += shard.table().len();
            stats.capacity += shard.table().capacity();
            stats.resizes += shard.state.resizes;
        }
        stats
    }

    /// The map's contents at one instant, as an immutable [`MapSnapshot`] whose version is the
    /// number of write operations the map had seen (summed over shards), so it never goes
    /// back between snapshots.
    ///
    /// Copy-on-write: the snapshot read-locks every shard at once (in index order, so it
    /// cannot deadlock with another snapshot, and writers hold one lock at a time), which is
    /// its instant, and keeps each shard's table by reference count; writers are held only
    /// for those few lock operations. The first write to a shard while a snapshot (or a copy
    /// of its `Arc`) still shares that shard's table copies the table (O(shard size), paid by
    /// that writer, once per shard and snapshot). Unlike [`iter`](Self::iter), which visits
    /// shards one after another, a snapshot never mixes states that did not coexist.
    ///
    /// Must not be called from a closure running under one of this map's locks (module docs).
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<u32, u32> = (0..4).map(|key| (key, key)).collect();
    /// let before = map.snapshot();
    /// map.insert(0, 100); // copies shard 0's table: `before` keeps the old one
    /// assert_eq!((before.get(&0), map.get(&0)), (Some(&0), Some(100)));
    /// assert!(map.snapshot().version() > before.version());
    /// ```
    pub fn snapshot(&self) -> MapSnapshot<K, V, S>
    where
        K: Clone,
        V: Clone,
        S: Clone,
    {
        self.snapshots_taken.fetch_add(1, Ordering::Relaxed);
        let (tables, version) = self.share_tables();
        MapSnapshot::from_shards(tables, self.hasher.clone(), self.shard_shift, version)
    }

    /// Every shard's table at one instant, shared copy-on-write, with the number of writes
    /// the map had seen: what [`snapshot`](Self::snapshot), `clone` and `==` are made of.
    #[allow(clippy::type_complexity)]
    fn share_tables(&self) -> (Box<[Arc<HashedTable<K, V>>]>, u64)
    where
        K: Clone,
        V: Clone,
    {
        self.clone_table.get_or_init(|| HashedTable::clone);
        #[cfg(debug_assertions)]
        let _held = reentrancy::HeldLock::acquire(self.identity(), 0);
        let locked: Vec<_> = self
            .shards
            .iter()
            .map(|shard| {
                shard
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            })
            .collect();
        let version = locked.iter().map(|state| state.writes).sum();
        let tables = locked
            .iter()
            .map(|state| Arc::clone(&state.table))
            .collect();
        (tables, version)
    }

    /// Owned copies of all entries, cloned one shard at a time as the iterator reaches it:
    /// each shard is a snapshot of one instant, different shards of different instants
    /// (weakly consistent). No lock is held between `next` calls, so the loop body may use
    /// the map freely.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<u32, u32> = (0..3).map(|key| (key, key * 10)).collect();
    /// let mut total = 0;
    /// for (key, value) in &map {
    ///     map.insert(key, value + 1); // allowed: no lock is held here
    ///     total += value;
    /// }
    /// assert_eq!((total, map.get(&2)), (30, Some(21)));
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V, S>
    where
        K: Clone,
        V: Clone,
    {
        Iter {
            walk: ShardWalk::new(self, |key, value| (key.clone(), value.clone())),
        }
    }

    /// Owned copies of all keys, cloned shard by shard as [`iter`](Self::iter) does (weakly
    /// consistent; no lock held between `next` calls). Values are not cloned.
    pub fn keys(&self) -> Keys<'_, K, V, S>
    where
        K: Clone,
    {
        Keys {
            walk: ShardWalk::new(self, |key, _| key.clone()),
        }
    }

    /// Owned copies of all values, cloned shard by shard as [`iter`](Self::iter) does (weakly
    /// consistent; no lock held between `next` calls). Keys are not cloned.
    pub fn values(&self) -> Values<'_, K, V, S>
    where
        V: Clone,
    {
        Values {
            walk: ShardWalk::new(self, |_, value| value.clone()),
        }
    }
}

impl<K, V, S> ShardedMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// The hash of `key` (by the map's hasher, once per operation) and its shard.
    fn locate<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        (hash, shard_index(hash, self.shard_shift))
    }

    /// The value for `key`, cloned.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
        V: Clone,
    {
        self.get_with(key, V::clone)
    }

    /// Runs `read` on the value for `key` under the shard's read lock, without cloning.
    /// `read` runs at most once and must not use this map (module docs).
    pub fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        self.read_shard(shard)
            .table()
            .get(Probe { hash, key }.lookup())
            .map(read)
    }

    /// The value for `key`, cloned, if its shard can be read-locked without waiting;
    /// [`WouldBlock`] if a writer holds it. Never waits, so it cannot deadlock, even inside a
    /// closure running under this map's locks (module docs).
    ///
    /// ```
    /// use atomicmap::sharded::WouldBlock;
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<&str, u32> = ShardedMap::new();
    /// map.insert("hits", 1);
    /// assert_eq!(map.try_get("hits"), Ok(Some(1)));
    /// assert_eq!(map.try_get("misses"), Ok(None));
    /// // Under the shard's own write lock, a blocking `get` would deadlock; `try_get` returns.
    /// map.get_mut("hits", |_| assert_eq!(map.try_get("hits"), Err(WouldBlock)));
    /// ```
    pub fn try_get<Q>(&self, key: &Q) -> Result<Option<V>, WouldBlock>
    where
        Q: Hash + Equivalent<K> + ?Sized,
        V: Clone,
    {
        self.try_get_with(key, V::clone)
    }

    /// [`get_with`](Self::get_with) if the key's shard can be read-locked without waiting;
    /// [`WouldBlock`] (and `read` not run) if a writer holds it. `read` runs at most once,
    /// under the read lock.
    pub fn try_get_with<Q, R>(
        &self,
        key: &Q,
        read: impl FnOnce(&V) -> R,
    ) -> Result<Option<R>, WouldBlock>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        Ok(self
            .try_read_shard(shard)?
            .table()
            .get(Probe { hash, key }.lookup())
            .map(read))
    }

    /// [`get_mut`](Self::get_mut) if the key's shard can be write-locked without waiting;
    /// [`WouldBlock`] (and `modify` not run) if any reader or writer holds it.
    pub fn try_get_mut<Q, R>(
        &self,
        key: &Q,
        modify: impl FnOnce(&mut V) -> R,
    ) -> Result<Option<R>, WouldBlock>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        Ok(self
            .try_write_shard(shard)?
            .table_mut()
            .get_mut(Probe { hash, key }.lookup())
            .map(modify))
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        self.read_shard(shard)
            .table()
            .contains_key(Probe { hash, key }.lookup())
    }

    /// Sets the value for `key`; returns the previous one.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        let (hash, shard) = self.locate(&key);
        self.write_shard(shard)
            .table_mut()
            .insert(Hashed { hash, key }, value)
    }

    /// Removes `key`; returns its value.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        self.write_shard(shard)
            .table_mut()
            .remove(Probe { hash, key }.lookup())
    }

    /// Inserts `key` with `value` only if the key has no value; returns whether it did.
    /// Otherwise the stored value stays and `key` and `value` come back in the `Err`
    /// (unlike [`insert`](Self::insert), which replaces). Both lookups happen under one write
    /// lock, so the check and the insert are one linearizable step.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<&str, u32> = ShardedMap::new();
    /// assert_eq!(map.try_insert("port", 80), Ok(()));
    /// assert_eq!(map.try_insert("port", 8080), Err(("port", 8080)));
    /// assert_eq!(map.get("port"), Some(80));
    /// ```
    pub fn try_insert(&self, key: K, value: V) -> Result<(), (K, V)> {
        let (hash, shard) = self.locate(&key);
        let mut shard = self.write_shard(shard);
        let table = shard.table_mut();
        if table.contains_key(Probe { hash, key: &key }.lookup()) {
            return Err((key, value));
        }
        table.insert(Hashed { hash, key }, value);
        Ok(())
    }

    /// Removes `key` if `condition(&value)` holds; returns the removed value. The check
    /// and the removal are one linearizable step under the shard's write lock; `condition`
    /// runs at most once (not at all if the key is absent) and must not use this map (module
    /// docs). If it panics, the entry stays.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<&str, u32> = [("idle", 0), ("busy", 3)].into_iter().collect();
    /// assert_eq!(map.remove_if("busy", |users| *users == 0), None);
    /// assert_eq!(map.remove_if("idle", |users| *users == 0), Some(0));
    /// assert_eq!(map.len(), 1);
    /// ```
    pub fn remove_if<Q>(&self, key: &Q, condition: impl FnOnce(&V) -> bool) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        let mut shard = self.write_shard(shard);
        let table = shard.table_mut();
        let probe = Probe { hash, key };
        if !condition(table.get(probe.lookup())?) {
            return None;
        }
        table.remove(probe.lookup())
    }

    /// Runs `modify` on the value for `key` in place, under the shard's write lock; returns
    /// its result, or `None` (without running it) if the key is absent.
    ///
    /// `modify` runs at most once. It cannot deadlock as long as it does not use this map
    /// (module docs). If it panics, the lock is released and the map stays usable; the value
    /// keeps whatever `modify` did to it before panicking.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<&str, Vec<u32>> = ShardedMap::new();
    /// map.insert("log", vec![1]);
    /// assert_eq!(map.get_mut("log", |log| { log.push(2); log.len() }), Some(2));
    /// assert_eq!(map.get_mut("missing", |log| log.len()), None);
    /// assert_eq!(map.get("log"), Some(vec![1, 2]));
    /// ```
    pub fn get_mut<Q, R>(&self, key: &Q, modify: impl FnOnce(&mut V) -> R) -> Option<R>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        self.write_shard(shard)
            .table_mut()
            .get_mut(Probe { hash, key }.lookup())
            .map(modify)
    }

    /// Replaces the value for `key` with `change(&value)` and returns the new value; `None`
    /// (and nothing stored) if the key is absent.
    ///
    /// `change` runs at most once, under the shard's write lock, so it must not use this map
    /// (module docs). If it panics, the old value stays.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<&str, u32> = ShardedMap::new();
    /// map.insert("hits", 1);
    /// assert_eq!(map.update("hits", |hits| hits + 1), Some(2));
    /// assert_eq!(map.update("misses", |misses| misses + 1), None);
    /// assert!(!map.contains_key("misses"));
    /// ```
    pub fn update<Q>(&self, key: &Q, mut change: impl FnMut(&V) -> V) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
        V: Clone,
    {
        self.get_mut(key, |value| {
            let new = change(value);
            *value = new.clone();
            new
        })
    }

    /// Sets `key` to `insert()` if it has no value, or to `update(&value)` if it has; returns
    /// the value stored.
    ///
    /// Exactly one of the closures runs, once, under the shard's write lock, so neither may
    /// use this map (module docs). If it panics, the map is as before the call.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<&str, u32> = ShardedMap::new();
    /// assert_eq!(map.upsert("hits", || 1, |hits| hits + 1), 1);
    /// assert_eq!(map.upsert("hits", || 1, |hits| hits + 1), 2);
    /// ```
    pub fn upsert(&self, key: K, insert: impl FnOnce() -> V, mut update: impl FnMut(&V) -> V) -> V
    where
        V: Clone,
    {
        let (hash, shard) = self.locate(&key);
        match self
            .write_shard(shard)
            .table_mut()
            .entry(Hashed { hash, key })
        {
            hash_map::Entry::Occupied(mut occupied) => {
                let new = update(occupied.get());
                *occupied.get_mut() = new.clone();
                new
            }
            hash_map::Entry::Vacant(vacant) => {
                let new = insert();
                vacant.insert(new.clone());
                new
            }
        }
    }

    /// Inserts, replaces or removes the value for `key` in one linearizable step: `compute`
    /// sees the current value (`None` if absent) and returns the value to store (`None`
    /// removes the key, or leaves it absent). Returns what the key holds afterwards.
    ///
    /// `compute` runs exactly once, under the shard's write lock, so it must not use this map
    /// (module docs). If it panics, the map is as before the call.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<&str, u32> = ShardedMap::new();
    /// let count_down = |value: Option<&u32>| match value {
    ///     None => Some(2),
    ///     Some(1) => None,
    ///     Some(n) => Some(n - 1),
    /// };
    /// assert_eq!(map.compute("ttl", count_down), Some(2));
    /// assert_eq!(map.compute("ttl", count_down), Some(1));
    /// assert_eq!(map.compute("ttl", count_down), None);
    /// assert!(!map.contains_key("ttl"));
    /// ```
    pub fn compute(&self, key: K, mut compute: impl FnMut(Option<&V>) -> Option<V>) -> Option<V>
    where
        V: Clone,
    {
        // The closure only looks at the entry, and the returned value is cloned before the
        // table changes: a panicking closure or `Clone` leaves the entry as it was.
        let (hash, shard) = self.locate(&key);
        match self
            .write_shard(shard)
            .table_mut()
            .entry(Hashed { hash, key })
        {
            hash_map::Entry::Occupied(mut occupied) => match compute(Some(occupied.get())) {
                Some(new) => {
                    *occupied.get_mut() = new.clone();
                    Some(new)
                }
                None => {
                    occupied.remove();
                    None
                }
            },
            hash_map::Entry::Vacant(vacant) => {
                let new = compute(None)?;
                vacant.insert(new.clone());
                Some(new)
            }
        }
    }

    /// The value for `key`, inserting `make()` first if there is none.
    ///
    /// `make` runs at most once (only if the key is absent), under the shard's write lock, so
    /// it must not use this map (module docs). If it panics, nothing is inserted.
    ///
    /// ```
    /// use atomicmap::ShardedMap;
    ///
    /// let map: ShardedMap<&str, u32> = ShardedMap::new();
    /// assert_eq!(map.get_or_insert_with("answer", || 42), 42);
    /// assert_eq!(map.get_or_insert_with("answer", || unreachable!()), 42);
    /// ```
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V
    where
        V: Clone,
    {
        let (hash, shard) = self.locate(&key);
        match self
            .write_shard(shard)
            .table_mut()
            .entry(Hashed { hash, key })
        {
            hash_map::Entry::Occupied(occupied) => occupied.get().clone(),
            hash_map::Entry::Vacant(vacant) => {
                // Cloned before it is stored: a panicking `Clone` inserts nothing.
                let new = make();
                vacant.insert(new.clone());
                new
            }
        }
    }

    /// Makes room for `additional` more entries, spread evenly over the shards.
    ///
    /// # Panics
    /// If the room overflows or cannot be allocated; see [`try_reserve`](Self::try_reserve).
    pub fn reserve(&self, additional: usize) {
        if let Err(error) = self.try_reserve(additional) {
            panic!("ShardedMap::reserve({additional}): {error}");
        }
    }

    /// Makes room for `additional` more entries, spread evenly over the shards, shard by
    /// shard; on failure, the shards reserved before the failing one keep their room.
    pub fn try_reserve(&self, additional: usize) -> Result<(), CapacityError> {
        let per_shard = additional.div_ceil(self.shards.len());
        for index in 0..self.shards.len() {
            let mut shard = self.write_shard(index);
            let table = shard.table_mut();
            if table.try_reserve(per_shard).is_err() {
                return Err(
                    if table_size_overflows::<Hashed<K>, V>(table.len(), per_shard) {
                        CapacityError::Overflow
                    } else {
                        CapacityError::AllocationFailed
                    },
                );
            }
        }
        Ok(())
    }
}

/// Whether a `HashMap<K, V>` table for `len + additional` entries needs more bytes than an
/// allocation can have: hashbrown keeps a power of two of buckets at most 7/8 full, each an
/// entry plus one control byte.
fn table_size_overflows<K, V>(len: usize, additional: usize) -> bool {
    len.checked_add(additional)
        .and_then(|entries| entries.checked_mul(8))
        .and_then(|eighths| (eighths / 7).checked_next_power_of_two())
        .and_then(|buckets| buckets.checked_mul(std::mem::size_of::<(K, V)>() + 1))
        .is_none_or(|bytes| bytes > isize::MAX as usize)
}

/// A shard's read lock, registered with the debug-build re-entrancy check.
struct ShardReadGuard<'a, K, V> {
    #[cfg(debug_assertions)]
    _held: reentrancy::HeldLock,
    state: RwLockReadGuard<'a, ShardState<K, V>>,
}

impl<K, V> ShardReadGuard<'_, K, V> {
    fn table(&self) -> &HashedTable<K, V> {
        &self.state.table
    }
}

/// A shard's write lock, registered with the debug-build re-entrancy check.
struct ShardWriteGuard<'a, K, V> {
    #[cfg(debug_assertions)]
    _held: reentrancy::HeldLock,
    state: RwLockWriteGuard<'a, ShardState<K, V>>,
    clone_table: &'a OnceLock<CloneTable<K, V>>,
    /// The table's capacity when [`table_mut`](Self::table_mut) handed it out, compared on
    /// drop to count resizes.
    capacity_before_write: Option<usize>,
}

impl<K, V> ShardWriteGuard<'_, K, V> {
    /// The shard's table for a write operation (counted in the shard's `writes`); copied
    /// first if a snapshot still shares it.
    fn table_mut(&mut self) -> &mut HashedTable<K, V> {
        let state = &mut *self.state;
        state.writes += 1;
        if Arc::get_mut(&mut state.table).is_none() {
            let copy = self
                .clone_table
                .get()
                .expect("only a snapshot shares a shard's table, and it registers the copy");
            state.table = Arc::new(copy(&state.table));
        }
        let table =
            Arc::get_mut(&mut state.table).expect("a table this writer just copied is unshared");
        self.capacity_before_write.get_or_insert(table.capacity());
        table
    }
}

impl<K, V> Drop for ShardWriteGuard<'_, K, V> {
    fn drop(&mut self) {
        if let Some(before) = self.capacity_before_write {
            if self.state.table.capacity() != before {
                self.state.resizes += 1;
            }
        }
    }
}

/// Debug-build detection of a thread asking for a lock of a map it already holds one of.
#[cfg(debug_assertions)]
mod reentrancy {
    use std::cell::RefCell;

    crate::sync::thread_local! {
        // `(map identity, shard)` of every shard lock this thread holds: at most one per map,
        // which is what the check enforces.
        // A `const` initializer would be cheaper, but loom's `thread_local!` rejects it.
        #[allow(clippy::missing_const_for_thread_local)]
        static HELD: RefCell<Vec<(usize, usize)>> = RefCell::new(Vec::new());
    }

    /// Registration of one held shard lock; unregisters on drop.
    pub(super) struct HeldLock {
        map: usize,
        shard: usize,
    }

    impl HeldLock {
        /// Registers the lock about to be taken, or panics if this thread already holds a
        /// lock of the same map (which could deadlock).
        pub(super) fn acquire(map: usize, shard: usize) -> Self {
            let already = HELD.with(|held| {
                held.borrow()
                    .iter()
                    .find(|(held_map, _)| *held_map == map)
                    .map(|&(_, held_shard)| held_shard)
            });
            if let Some(held_shard) = already {
                panic!(
                    "ShardedMap re-entered: this thread holds the lock of shard {held_shard} \
                     (it is running a closure passed to get_with/get_mut/update/compute/\
                     upsert/get_or_insert_with/remove_if/retain/for_each/for_each_mut) and now \
                     asks for shard {shard} of the same map (only the try_ reads may). {} Finish the closure, then use the map.",
                    if held_shard == shard {
                        "This would deadlock now."
                    } else {
                        "This can deadlock against another thread doing the reverse."
                    }
                );
            }
            Self::register(map, shard)
        }

        /// Registers a lock this thread already took without waiting (a try-lock), which
        /// cannot deadlock and so is not checked.
        pub(super) fn register(map: usize, shard: usize) -> Self {
            HELD.with(|held| held.borrow_mut().push((map, shard)));
            HeldLock { map, shard }
        }
    }

    impl Drop for HeldLock {
        fn drop(&mut self) {
            HELD.with(|held| {
                let mut held = held.borrow_mut();
                if let Some(position) = held
                    .iter()
                    .rposition(|&entry| entry == (self.map, self.shard))
                {
                    held.swap_remove(position);
                }
            });
        }
    }
}

/// A walk over a [`ShardedMap`]'s shards that copies each shard's entries, projected to `T`,
/// under the shard's read lock, and hands them out with no lock held.
struct ShardWalk<'a, K, V, S, T> {
    map: &'a ShardedMap<K, V, S>,
    next_shard: usize,
    buffered: std::vec::IntoIter<T>,
    project: fn(&K, &V) -> T,
}

impl<'a, K, V, S, T> ShardWalk<'a, K, V, S, T> {
    fn new(map: &'a ShardedMap<K, V, S>, project: fn(&K, &V) -> T) -> Self {
        ShardWalk {
            map,
            next_shard: 0,
            buffered: Vec::new().into_iter(),
            project,
        }
    }

    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.buffered.next() {
                return Some(item);
            }
            if self.next_shard == self.map.shards.len() {
                return None;
            }
            let shard = self.map.read_shard(self.next_shard);
            self.next_shard += 1;
            self.buffered = shard
                .table()
                .iter()
                .map(|(stored, value)| (self.project)(&stored.key, value))
                .collect::<Vec<_>>()
                .into_iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.buffered.len(), None)
    }
}

impl<K, V, S, T: fmt::Debug> fmt::Debug for ShardWalk<'_, K, V, S, T> {
    /// The walk's progress and the items copied from the current shard but not handed out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardWalk")
            .field("next_shard", &self.next_shard)
            .field("shard_count", &self.map.shards.len())
            .field("buffered", &self.buffered.as_slice())
            .finish()
    }
}

/// The public iterators over a [`ShardWalk`], one per projection.
macro_rules! shard_walk_iterator {
    ($(#[$doc:meta])* $name:ident, $item:ty, where $($bounds:tt)*) => {
        $(#[$doc])*
        pub struct $name<'a, K, V, S> {
            walk: ShardWalk<'a, K, V, S, $item>,
        }

        impl<K, V, S> Iterator for $name<'_, K, V, S>
        where
            $($bounds)*
        {
            type Item = $item;

            fn next(&mut self) -> Option<$item> {
                self.walk.next()
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                self.walk.size_hint()
            }
        }

        impl<K, V, S> std::iter::FusedIterator for $name<'_, K, V, S> where $($bounds)* {}

        impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for $name<'_, K, V, S> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.walk).finish()
            }
        }
    };
}

shard_walk_iterator!(
    /// Iterator of [`ShardedMap::iter`] and of `&ShardedMap`'s `IntoIterator`: owned
    /// entries, cloned shard by shard.
    Iter, (K, V), where K: Clone, V: Clone
);
shard_walk_iterator!(
    /// Iterator of [`ShardedMap::keys`]: owned keys, cloned shard by shard.
    Keys, K, where K: Clone
);
shard_walk_iterator!(
    /// Iterator of [`ShardedMap::values`]: owned values, cloned shard by shard.
    Values, V, where V: Clone
);

impl<'a, K: Clone, V: Clone, S> IntoIterator for &'a ShardedMap<K, V, S> {
    type Item = (K, V);
    type IntoIter = Iter<'a, K, V, S>;

    /// [`ShardedMap::iter`]: owned copies, no lock held between items.
    fn into_iter(self) -> Iter<'a, K, V, S> {
        self.iter()
    }
}

impl<K: Clone, V: Clone, S: Clone> Clone for ShardedMap<K, V, S> {
    /// A map with the entries of `self` at one instant (as [`ShardedMap::snapshot`]) and the
    /// same shard count and hasher. O(shards): the two maps share each shard's table until
    /// either writes to it, when the writer copies that shard (copy-on-write, module docs).
    fn clone(&self) -> Self {
        let (tables, _) = self.share_tables();
        let copy_table: CloneTable<K, V> = HashedTable::clone;
        ShardedMap {
            shards: tables
                .into_vec()
                .into_iter()
                .map(|table| {
                    CachePadded(RwLock::new(ShardState {
                        table,
                        writes: 0,
                        resizes: 0,
                    }))
                })
                .collect(),
            shard_shift: self.shard_shift,
            hasher: self.hasher.clone(),
            clone_table: OnceLock::from(copy_table),
            snapshots_taken: AtomicU64::new(0),
        }
    }
}

impl<K, V, S> PartialEq for ShardedMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: PartialEq + Clone,
    S: BuildHasher + Clone,
{
    /// Same keys with equal values, comparing a snapshot of each side (O(shards) each, see
    /// [`ShardedMap::snapshot`]). Each snapshot is its own map's instant: the comparison is
    /// not atomic across both maps, so with writers running it may compare states of the two
    /// that never coexisted.
    fn eq(&self, other: &Self) -> bool {
        let (mine, _) = self.share_tables();
        let (theirs, _) = other.share_tables();
        let mine = MapSnapshot::from_shards(mine, self.hasher.clone(), self.shard_shift, 0);
        let theirs = MapSnapshot::from_shards(theirs, other.hasher.clone(), other.shard_shift, 0);
        mine == theirs
    }
}

impl<K, V, S> Eq for ShardedMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Eq + Clone,
    S: BuildHasher + Clone,
{
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for ShardedMap<K, V, S> {
    /// Lists the entries shard by shard (weakly consistent).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut entries = f.debug_map();
        for index in 0..self.shards.len() {
            entries.entries(
                self.read_shard(index)
                    .table()
                    .iter()
                    .map(|(stored, value)| (&stored.key, value)),
            );
        }
        entries.finish()
    }
}

impl<K, V, S> FromIterator<(K, V)> for ShardedMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher + Clone + Default,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let map = Self::with_hasher(S::default());
        (&map).extend(iter);
        map
    }
}

impl<K, V, S> Extend<(K, V)> for ShardedMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        (&*self).extend(iter);
    }
}

impl<K, V, S> Extend<(K, V)> for &ShardedMap<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (key, value) in iter {
            self.insert(key, value);
        }
    }
}
