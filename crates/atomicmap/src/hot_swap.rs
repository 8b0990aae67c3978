//! [`HotSwap`]: a cell holding an immutable value that readers load without any
//! read-modify-write, and [`RcuMap`]: a whole map published through it, for configuration
//! that is read constantly and replaced now and then.
//!
//! # Protocol
//! The cell is one atomic pointer to a *publication*: a box holding the value (an
//! `Arc<T>`) and its version. Nothing in a publication ever changes after it is published.
//!
//! * **Readers** pin the cell's collector and load the pointer through the guard
//!   ([`HotSwap::load`]). That is two plain stores, a compiler fence and two loads on Linux
//!   (see `reclaim`): no lock, no read-modify-write, no waiting. The publication cannot be
//!   freed while the guard is held, so the reader dereferences it freely.
//!   [`HotSwap::load_full`] additionally clones the `Arc<T>` (one read-modify-write on the
//!   value's reference count) for a value that outlives the guard or crosses threads.
//! * **Writers** (`store`, `swap`, `rcu`, `compare_and_swap`) all run the same loop: load
//!   the current publication through the guard, build the next one with version
//!   `current + 1`, and CAS the pointer from the current to the next. A failed CAS means
//!   another writer published first; the loop starts again from the newer publication (`rcu`
//!   recomputes the value from it, `compare_and_swap` gives up). Writers never block readers
//!   and never wait for each other, and versions go up by exactly one per publication: the
//!   CAS succeeds only against the publication whose version it incremented.
//! * **Reclamation**: the writer whose CAS replaced a publication retires it to the cell's
//!   collector, which frees it once no pinned reader can hold it; freeing a publication
//!   drops its `Arc<T>`, so the value itself is freed when the last `Arc` (from
//!   `load_full`) is gone too. After each publication the writer runs a reclamation pass, so
//!   garbage is bounded by the collector's epoch granularity, not by the publication rate.
//!
//! # Memory orderings
//! The CAS that publishes is `AcqRel`: its release half makes the fully built publication
//! visible to any reader whose `Acquire` load sees the pointer. The version lives inside the
//! publication, so a reader always sees the version of exactly the value it holds. A
//! protected pointer is never reused while pinned, so a writer's CAS cannot succeed against
//! a recycled address (no ABA).

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use equivalent::Equivalent;

use crate::reclaim::{self, Collector};
use crate::snapshot::MapSnapshot;
use crate::stats::MapStats;
use crate::sync::{AtomicPtr, Ordering};
// std's atomic even under loom: the snapshot counter orders nothing, so the models need not
// explore it.
use std::sync::atomic::AtomicU64;

pub use crate::hash::DefaultHashBuilder;

pub use crate::persistent::{
    IntoIter as PersistentIntoIter, Iter as PersistentIter, PersistentMap,
};

/// One published value; immutable once the CAS publishes it.
struct Publication<T> {
    value: Arc<T>,
    /// 0 for the initial value, then +1 per publication.
    version: u64,
    /// Epoch at which this box was allocated, for the collector.
    birth: u64,
}

/// A cell holding an `Arc<T>` value that can be replaced atomically while readers keep
/// reading the old one. See the [module docs](self) for the protocol and costs.
///
/// ```
/// use atomicmap::HotSwap;
///
/// #[derive(Debug, PartialEq)]
/// struct Config { timeout_ms: u64 }
///
/// let config = HotSwap::new(Config { timeout_ms: 100 });
/// let reader = config.load(); // pinned: this reader keeps the value it loaded
/// let version = config.rcu(|old| Config { timeout_ms: old.timeout_ms * 2 });
/// assert_eq!((reader.timeout_ms, reader.version()), (100, 0));
/// assert_eq!((config.load().timeout_ms, version), (200, 1));
/// ```
pub struct HotSwap<T> {
    /// The current [`Publication`]; never null.
    current: AtomicPtr<Publication<T>>,
    /// Frees replaced publications once no reader holds them.
    collector: Collector,
}

// SAFETY: the cell shares `Arc<T>` values between threads (readers deref them, any thread
// may drop the last `Arc`), exactly what `Arc<T>: Send + Sync` requires of `T`.
unsafe impl<T: Send + Sync> Send for HotSwap<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for HotSwap<T> {}

/// A reader's pinned view of one published value (arc-swap's `Guard`): derefs to `T`. Holding
/// it pins the cell (it is not `Send`); drop it promptly, since a pinned reader delays the
/// freeing of values replaced meanwhile (never anything published after it stalls).
pub struct Guard<'a, T> {
    /// Keeps `publication` allocated.
    _pin: reclaim::Guard<'a>,
    publication: NonNull<Publication<T>>,
    _value: PhantomData<&'a T>,
}

impl<T> Guard<'_, T> {
    fn publication(&self) -> &Publication<T> {
        // SAFETY: loaded through `_pin`, which keeps it allocated while `self` lives.
        unsafe { self.publication.as_ref() }
    }

    /// The version of this value.
    pub fn version(&self) -> u64 {
        self.publication().version
    }

    /// An owned handle on this value (one reference-count increment).
    pub fn to_arc(&self) -> Arc<T> {
        Arc::clone(&self.publication().value)
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.publication().value
    }
}

impl<T: fmt::Debug> fmt::Debug for Guard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("version", &self.version())
            .field("value", &**self)
            .finish()
    }
}

/// Why [`HotSwap::compare_and_swap`] did not publish.
#[derive(Debug, PartialEq, Eq)]
pub struct VersionMismatch<T> {
    /// The version that was current when the comparison failed.
    pub current_version: u64,
    /// The value that was not published, handed back.
    pub rejected: Arc<T>,
}

impl<T> Clone for VersionMismatch<T> {
    /// Shares the rejected value (an `Arc` clone), so `T` need not be `Clone`.
    fn clone(&self) -> Self {
        VersionMismatch {
            current_version: self.current_version,
            rejected: Arc::clone(&self.rejected),
        }
    }
}

impl<T> fmt::Display for VersionMismatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "value not published: the current version is {}",
            self.current_version
        )
    }
}

impl<T: fmt::Debug> std::error::Error for VersionMismatch<T> {}

/// What a writer's step decided given the current value.
enum Step<T, E> {
    Publish(Arc<T>),
    GiveUp(E),
}

impl<T> HotSwap<T> {
    /// A cell whose first value (version 0) is `initial`.
    pub fn new(initial: T) -> Self {
        Self::from_arc(Arc::new(initial))
    }

    /// A cell whose first value (version 0) is the shared `initial`.
    pub fn from_arc(initial: Arc<T>) -> Self {
        let collector = Collector::new();
        let birth = {
            let guard = collector.enter();
            collector.birth_epoch(&guard)
        };
        let first = Box::new(Publication {
            value: initial,
            version: 0,
            birth,
        });
        HotSwap {
            current: AtomicPtr::new(Box::into_raw(first)),
            collector,
        }
    }

    fn current<'g>(&'g self, guard: &'g reclaim::Guard<'_>) -> &'g Publication<T> {
        let current = guard.protect(|| self.current.load(Ordering::Acquire));
        // SAFETY: never null (set in `new`, replaced only by boxes), and a protected pointer
        // stays allocated until `guard` drops.
        unsafe { &*current }
    }

    /// The current value, pinned, without any read-modify-write and without blocking.
    pub fn load(&self) -> Guard<'_, T> {
        let pin = self.collector.enter();
        let publication = NonNull::from(self.current(&pin));
        Guard {
            _pin: pin,
            publication,
            _value: PhantomData,
        }
    }

    /// The current value as an owned `Arc`: like [`HotSwap::load`] plus one atomic
    /// increment of the value's reference count (a read-modify-write on a line shared by
    /// all readers of this value, so prefer `load` on hot paths).
    pub fn load_full(&self) -> Arc<T> {
        let guard = self.collector.enter();
        Arc::clone(&self.current(&guard).value)
    }

    /// The version of the current value: 0 initially, +1 per publication.
    pub fn version(&self) -> u64 {
        let guard = self.collector.enter();
        self.current(&guard).version
    }

    /// The writers' loop (see the module docs): `step` sees the current value and its
    /// version and decides; on success returns the new version and the replaced value.
    fn publish<E>(
        &self,
        mut step: impl FnMut(&Arc<T>, u64) -> Step<T, E>,
    ) -> Result<(u64, Arc<T>), E> {
        let published = {
            let guard = self.collector.enter();
            loop {
                let current = self.current(&guard);
                let next = match step(&current.value, current.version) {
                    Step::Publish(next) => next,
                    Step::GiveUp(reason) => return Err(reason),
                };
                let version = current.version + 1;
                let birth = self.collector.birth_epoch(&guard);
                let next = Box::into_raw(Box::new(Publication {
                    value: next,
                    version,
                    birth,
                }));
                let current_ptr = ptr::from_ref(current).cast_mut();
                match self.current.compare_exchange(
                    current_ptr,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(unlinked) => {
                        let replaced = Arc::clone(&current.value);
                        // SAFETY: `current` was loaded through `guard` and our CAS unlinked
                        // it; only the winning CAS retires a publication; it is a box born at
                        // `current.birth`. `unlinked` is the pointer the cell held, with the
                        // provenance of its `Box::into_raw` (`current_ptr`, made from a shared
                        // reference, may not be used to free it).
                        unsafe {
                            guard.retire(
                                unlinked.cast(),
                                current.birth,
                                reclaim::free_box::<Publication<T>>,
                            )
                        };
                        break (version, replaced);
                    }
                    Err(_) => {
                        // SAFETY: `next` came from `Box::into_raw` and the CAS did not
                        // publish it.
                        drop(unsafe { Box::from_raw(next) });
                    }
                }
            }
        };
        // Our own pin covered what we just retired; a fresh pass can free publications
        // retired earlier that no reader holds any more.
        self.collector.enter().flush();
        Ok(published)
    }

    /// Publishes `next`; returns its version.
    pub fn store(&self, next: impl Into<Arc<T>>) -> u64 {
        let next = next.into();
        let Ok((version, _)) =
            self.publish::<std::convert::Infallible>(|_, _| Step::Publish(Arc::clone(&next)));
        version
    }

    /// Publishes `next`; returns the value it replaced.
    pub fn swap(&self, next: impl Into<Arc<T>>) -> Arc<T> {
        let next = next.into();
        let Ok((_, replaced)) =
            self.publish::<std::convert::Infallible>(|_, _| Step::Publish(Arc::clone(&next)));
        replaced
    }

    /// Read-copy-update: publishes `update(current)`, retrying with the newer value if
    /// another writer published meanwhile (so `update` may run more than once and should be
    /// a pure function of its argument). Returns the version it published.
    ///
    /// ```
    /// use atomicmap::HotSwap;
    ///
    /// let limits = HotSwap::new(vec![10u32]);
    /// assert_eq!(limits.rcu(|old| [old.as_slice(), &[20]].concat()), 1);
    /// assert_eq!(*limits.load(), vec![10, 20]);
    /// ```
    pub fn rcu(&self, mut update: impl FnMut(&T) -> T) -> u64 {
        let Ok((version, _)) = self.publish::<std::convert::Infallible>(|current, _| {
            Step::Publish(Arc::new(update(current)))
        });
        version
    }

    /// Publishes `next` only if the current version is `expected_version`; returns the new
    /// version, or why not (with `next` handed back).
    ///
    /// ```
    /// use atomicmap::HotSwap;
    ///
    /// let config = HotSwap::new("v0");
    /// let seen = config.version();
    /// config.store("changed by someone else");
    /// let refused = config.compare_and_swap(seen, "v1").unwrap_err();
    /// assert_eq!((refused.current_version, *refused.rejected), (1, "v1"));
    /// assert_eq!(config.compare_and_swap(1, "v2").ok(), Some(2));
    /// ```
    pub fn compare_and_swap(
        &self,
        expected_version: u64,
        next: impl Into<Arc<T>>,
    ) -> Result<u64, VersionMismatch<T>> {
        let next = next.into();
        self.publish(|_, current_version| {
            if current_version == expected_version {
                Step::Publish(Arc::clone(&next))
            } else {
                Step::GiveUp(current_version)
            }
        })
        .map(|(version, _)| version)
        .map_err(|current_version| VersionMismatch {
            current_version,
            rejected: next,
        })
    }
}

impl<T> Drop for HotSwap<T> {
    fn drop(&mut self) {
        let current = self.current.load(Ordering::Acquire);
        // SAFETY: `&mut self`: no reader is pinned, and the current publication was never
        // retired, so this is its only owner. The collector frees the retired ones after.
        drop(unsafe { Box::from_raw(current) });
    }
}

impl<T: Default> Default for HotSwap<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> From<T> for HotSwap<T> {
    fn from(initial: T) -> Self {
        Self::new(initial)
    }
}

impl<T> Clone for HotSwap<T> {
    /// A new cell whose first value is the current value of `self`, shared (one `Arc`
    /// clone), not copied. The copy starts at version 0 and its publications are its own:
    /// versions count a cell's publications, and the copy has made none.
    ///
    /// ```
    /// use atomicmap::HotSwap;
    ///
    /// let config = HotSwap::new("v1");
    /// config.store("v2");
    /// let copy = config.clone();
    /// assert_eq!((*copy.load(), copy.version()), ("v2", 0));
    /// copy.store("v3");
    /// assert_eq!(*config.load(), "v2");
    /// ```
    fn clone(&self) -> Self {
        Self::from_arc(self.load_full())
    }
}

impl<T: PartialEq> PartialEq for HotSwap<T> {
    /// Whether the current values are equal; versions are not compared (they count each
    /// cell's own publications). Each side is loaded at its own moment: not atomic across
    /// both cells.
    fn eq(&self, other: &Self) -> bool {
        *self.load() == *other.load()
    }
}

impl<T: Eq> Eq for HotSwap<T> {}

impl<T: fmt::Debug> fmt::Debug for HotSwap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HotSwap").field(&self.load()).finish()
    }
}

/// A map published whole through a [`HotSwap`]: readers see one immutable [`PersistentMap`]
/// and never block; each write publishes a new map that shares all untouched structure with
/// the old one (O(log n) per key).
///
/// Consistency: every read, and every iteration of a [`RcuMap::snapshot`], sees one published
/// version of the whole map, never a half-applied update. Writers serialize through the CAS
/// of the cell: concurrent writes retry, so every single-key operation is linearizable, and
/// [`RcuMap::update_map`] applies a batch of changes as one publication.
///
/// Panics in user code: a write builds its next map off to the side and publishes it with one
/// CAS, so a `Hash`, `Eq`, `Clone` or closure that panics publishes nothing; the map keeps
/// every entry and leaks nothing (a [`PersistentMap`] runs no user `Hash` or `Eq` while it
/// changes, see there).
///
/// ```
/// use atomicmap::RcuMap;
///
/// let routes: RcuMap<String, String> = RcuMap::new();
/// routes.insert("/api".into(), "backend-a".into());
/// let before = routes.load(); // one whole version, unchanged by later writes
/// routes.update_map(|map| {
///     map.insert("/api".into(), "backend-b".into());
///     map.insert("/static".into(), "cdn".into());
/// });
/// assert_eq!(before.get("/api").map(String::as_str), Some("backend-a"));
/// assert_eq!(before.len(), 1);
/// assert_eq!(routes.get("/api").as_deref(), Some("backend-b"));
/// assert_eq!(routes.version(), 2, "one publication per insert, one for the batch");
/// ```
pub struct RcuMap<K, V, S = DefaultHashBuilder> {
    cell: HotSwap<PersistentMap<K, V, S>>,
    /// Calls of `snapshot`, for `stats`; relaxed, as it orders nothing.
    snapshots_taken: AtomicU64,
}

impl<K, V> RcuMap<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// An empty map with the default hasher.
    pub fn new() -> Self {
        Self::with_hasher(DefaultHashBuilder::default())
    }
}

impl<K, V> Default for RcuMap<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S> RcuMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// An empty map that hashes with `hasher`.
    pub fn with_hasher(hasher: S) -> Self {
        Self::from_persistent(PersistentMap::with_hasher(hasher))
    }

    /// A map whose first publication (version 0) is `map`.
    pub fn from_persistent(map: PersistentMap<K, V, S>) -> Self {
        RcuMap {
            cell: HotSwap::new(map),
            snapshots_taken: AtomicU64::new(0),
        }
    }

    /// The current map, pinned (no read-modify-write); see [`HotSwap::load`].
    pub fn load(&self) -> Guard<'_, PersistentMap<K, V, S>> {
        self.cell.load()
    }

    /// The current map as an owned `Arc`, iterable at leisure; see [`HotSwap::load_full`].
    pub fn load_full(&self) -> Arc<PersistentMap<K, V, S>> {
        self.cell.load_full()
    }

    /// The current map as a [`MapSnapshot`] whose version is the publication's version.
    ///
    /// Every publication already is a point-in-time map, so this is one pinned load and an
    /// O(1) clone of the persistent map's root: no copy, no lock, nothing for writers to do.
    /// Reads and iteration of an `RcuMap` are consistent in the same way.
    pub fn snapshot(&self) -> MapSnapshot<K, V, S> {
        self.snapshots_taken.fetch_add(1, Ordering::Relaxed);
        let current = self.load();
        MapSnapshot::from_persistent(PersistentMap::clone(&current), current.version())
    }

    /// The version of the current map: +1 per publication.
    pub fn version(&self) -> u64 {
        self.cell.version()
    }

    /// Owned copies of every entry of the current map: one pinned load and an O(1) copy of
    /// the map's root, then entries cloned as the iterator reaches them. Every item comes
    /// from the same publication (unlike the other maps' iteration, this is consistent), and
    /// nothing is held that writers wait for.
    ///
    /// ```
    /// use atomicmap::RcuMap;
    ///
    /// let map: RcuMap<u32, u32> = (0..3).map(|key| (key, key)).collect();
    /// let mut total = 0;
    /// for (key, value) in &map {
    ///     map.insert(key + 10, value); // a new publication; this loop keeps the old one
    ///     total += value;
    /// }
    /// assert_eq!((total, map.len()), (3, 6));
    /// ```
    pub fn iter(&self) -> PersistentIntoIter<K, V> {
        PersistentMap::clone(&self.load()).into_iter()
    }

    /// The map's internals as a [`MapStats`]: `len` of the current publication and
    /// `snapshots_taken` (calls of [`snapshot`](Self::snapshot)). The other figures are 0: a
    /// persistent trie has no capacity and is never resized or migrated (a write publishes a
    /// new root), it keeps no tombstones and probes nothing, and the cell's collector does not
    /// count the bytes of the publications it holds.
    pub fn stats(&self) -> MapStats {
        MapStats {
            len: self.len(),
            snapshots_taken: self.snapshots_taken.load(Ordering::Relaxed),
            ..MapStats::default()
        }
    }

    /// The value for `key`, cloned.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.load().get(key).cloned()
    }

    /// Runs `read` on the value for `key` without cloning it; `read` runs at most once.
    pub fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.load().get(key).map(read)
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.load().contains_key(key)
    }

    /// Number of keys in the current map.
    pub fn len(&self) -> usize {
        self.load().len()
    }

    /// Whether the current map is empty.
    pub fn is_empty(&self) -> bool {
        self.load().is_empty()
    }

    /// Publishes `change(current)` as one new version (a batch of edits, or a whole new
    /// configuration), retrying if another writer published first; returns the version.
    /// `change` may run more than once (once per attempt, on a fresh copy of the newer map);
    /// if it panics, nothing is published.
    ///
    /// ```
    /// use atomicmap::RcuMap;
    ///
    /// let flags: RcuMap<&str, bool> = RcuMap::new();
    /// let version = flags.update_map(|map| {
    ///     map.insert("dark-mode", true);
    ///     map.insert("beta", false);
    /// });
    /// assert_eq!((version, flags.len()), (1, 2), "two inserts, one publication");
    /// ```
    pub fn update_map(&self, mut change: impl FnMut(&mut PersistentMap<K, V, S>)) -> u64 {
        self.cell.rcu(|current| {
            let mut next = current.clone();
            change(&mut next);
            next
        })
    }

    /// Replaces the whole map; returns the version.
    pub fn replace(&self, map: PersistentMap<K, V, S>) -> u64 {
        self.cell.store(map)
    }

    /// Sets the value for `key`; returns the previous one.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        let mut previous = None;
        self.update_map(|map| previous = map.insert(key.clone(), value.clone()));
        previous
    }

    /// Removes `key`; returns its value. Publishes nothing if the key is absent.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let mut removed = None;
        let _ = self.cell.publish(|current, _| {
            removed = None;
            if !current.contains_key(key) {
                return Step::GiveUp(());
            }
            let mut next = PersistentMap::clone(current);
            removed = next.remove(key);
            Step::Publish(Arc::new(next))
        });
        removed
    }

    /// Replaces the value for `key` with `change(&value)` and returns the new value; `None`
    /// (and nothing published) if the key is absent.
    ///
    /// `change` may run more than once: when another writer publishes first, it runs again on
    /// the newer value (see [`HotSwap::rcu`]), so it should be a pure function of its argument.
    ///
    /// ```
    /// use atomicmap::RcuMap;
    ///
    /// let map: RcuMap<&str, u32> = RcuMap::new();
    /// map.insert("hits", 1);
    /// assert_eq!(map.update("hits", |hits| hits + 1), Some(2));
    /// let version = map.version();
    /// assert_eq!(map.update("misses", |misses| misses + 1), None);
    /// assert_eq!(map.version(), version, "nothing published");
    /// ```
    pub fn update<Q>(&self, key: &Q, mut change: impl FnMut(&V) -> V) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let mut result = None;
        let _ = self.cell.publish(|current, _| {
            result = None;
            let Some((existing_key, existing)) = current.get_key_value(key) else {
                return Step::GiveUp(());
            };
            let new = change(existing);
            result = Some(new.clone());
            Step::Publish(with_entry(current, existing_key.clone(), new))
        });
        result
    }

    /// Sets `key` to `insert()` if it has no value, or to `update(&value)` if it has; returns
    /// the value stored, in one publication.
    ///
    /// `insert` runs at most once (its value is kept for a retry); `update` may run more than
    /// once: when another writer publishes first, it runs again on the newer value (see
    /// [`HotSwap::rcu`]), so it should be a pure function of its argument.
    ///
    /// ```
    /// use atomicmap::RcuMap;
    ///
    /// let map: RcuMap<&str, u32> = RcuMap::new();
    /// assert_eq!(map.upsert("hits", || 1, |hits| hits + 1), 1);
    /// assert_eq!(map.upsert("hits", || 1, |hits| hits + 1), 2);
    /// ```
    pub fn upsert(&self, key: K, insert: impl FnOnce() -> V, mut update: impl FnMut(&V) -> V) -> V {
        let mut insert = Some(insert);
        let mut fresh: Option<V> = None;
        let mut result = None;
        let _ = self.cell.publish::<std::convert::Infallible>(|current, _| {
            let new = match current.get(&key) {
                Some(existing) => update(existing),
                None => match &fresh {
                    Some(fresh) => fresh.clone(),
                    None => {
                        let make = insert.take().expect("insert runs at most once");
                        fresh.insert(make()).clone()
                    }
                },
            };
            result = Some(new.clone());
            Step::Publish(with_entry(current, key.clone(), new))
        });
        result.expect("a publication decided a value")
    }

    /// Inserts, replaces or removes the value for `key` in one linearizable step: `compute`
    /// sees the current value (`None` if absent) and returns the value to store (`None`
    /// removes the key, or leaves it absent, publishing nothing). Returns what the key holds
    /// afterwards.
    ///
    /// `compute` may run more than once: when another writer publishes first, it runs again
    /// on the newer value (see [`HotSwap::rcu`]), so it should be a pure function of its
    /// argument.
    ///
    /// ```
    /// use atomicmap::RcuMap;
    ///
    /// let map: RcuMap<&str, u32> = RcuMap::new();
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
    pub fn compute(&self, key: K, mut compute: impl FnMut(Option<&V>) -> Option<V>) -> Option<V> {
        let mut result = None;
        let _ = self.cell.publish(|current, _| {
            let existing = current.get(&key);
            let was_present = existing.is_some();
            result = compute(existing);
            match &result {
                Some(new) => Step::Publish(with_entry(current, key.clone(), new.clone())),
                None if was_present => {
                    let mut next = PersistentMap::clone(current);
                    next.remove(&key);
                    Step::Publish(Arc::new(next))
                }
                None => Step::GiveUp(()),
            }
        });
        result
    }

    /// The value for `key`, inserting `make()` first if there is none (publishing only
    /// then).
    ///
    /// `make` runs at most once, and only if the key is absent when the call starts; its
    /// value is kept for a retry, and dropped unused if another writer inserts the key first.
    ///
    /// ```
    /// use atomicmap::RcuMap;
    ///
    /// let map: RcuMap<&str, u32> = RcuMap::new();
    /// assert_eq!(map.get_or_insert_with("answer", || 42), 42);
    /// assert_eq!(map.get_or_insert_with("answer", || unreachable!()), 42);
    /// ```
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V {
        if let Some(existing) = self.get(&key) {
            return existing;
        }
        let fresh = make();
        let mut result = None;
        let _ = self.cell.publish(|current, _| match current.get(&key) {
            Some(existing) => {
                result = Some(existing.clone());
                Step::GiveUp(())
            }
            None => {
                result = Some(fresh.clone());
                Step::Publish(with_entry(current, key.clone(), fresh.clone()))
            }
        });
        result.unwrap_or(fresh)
    }

    /// Keeps only the keys for which `keep` returns `true`, as one publication. `keep` runs
    /// once per entry per attempt, so it may run more than once on an entry when another
    /// writer publishes first; if it panics, nothing is published.
    ///
    /// ```
    /// use atomicmap::RcuMap;
    ///
    /// let map: RcuMap<u32, u32> = (0..10).map(|key| (key, key)).collect();
    /// let before = map.version();
    /// map.retain(|key, _| key % 2 == 0);
    /// assert_eq!((map.len(), map.version()), (5, before + 1));
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.update_map(|map| map.retain(|key, value| keep(key, value)));
    }

    /// Removes every key (one publication of an empty map with the same hasher).
    pub fn clear(&self) {
        self.update_map(|map| map.clear());
    }

    /// Removes every key in one publication and returns the entries of the version it
    /// replaced (clones: readers may still hold that version).
    ///
    /// ```
    /// use atomicmap::RcuMap;
    ///
    /// let pending: RcuMap<u32, &str> = [(1, "a"), (2, "b")].into_iter().collect();
    /// let mut taken = pending.drain();
    /// taken.sort();
    /// assert_eq!(taken, [(1, "a"), (2, "b")]);
    /// assert!(pending.is_empty());
    /// ```
    pub fn drain(&self) -> Vec<(K, V)> {
        let mut drained = Vec::new();
        self.update_map(|map| {
            drained = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            map.clear();
        });
        drained
    }

    /// Removes, in one publication, the entries for which `extract` returns `true`, and
    /// returns them. `extract` may run more than once per entry when writers race (each
    /// attempt starts from the newest version); the entries returned are those of the attempt
    /// that was published.
    ///
    /// ```
    /// use atomicmap::RcuMap;
    ///
    /// let limits: RcuMap<&str, u32> = [("a", 0), ("b", 5)].into_iter().collect();
    /// assert_eq!(limits.extract_if(|_, limit| *limit == 0), [("a", 0)]);
    /// assert_eq!(limits.len(), 1);
    /// ```
    pub fn extract_if(&self, mut extract: impl FnMut(&K, &V) -> bool) -> Vec<(K, V)> {
        let mut extracted = Vec::new();
        self.update_map(|map| {
            extracted.clear();
            map.retain(|key, value| {
                let take = extract(key, value);
                if take {
                    extracted.push((key.clone(), value.clone()));
                }
                !take
            });
        });
        extracted
    }
}

/// `map` with `key` set to `value`, as a new publication (`map` itself is shared, so the copy
/// is O(1) and the insert copies one path of the trie).
fn with_entry<K, V, S>(
    map: &PersistentMap<K, V, S>,
    key: K,
    value: V,
) -> Arc<PersistentMap<K, V, S>>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    let mut next = map.clone();
    next.insert(key, value);
    Arc::new(next)
}

impl<K, V, S> fmt::Debug for RcuMap<K, V, S>
where
    K: Hash + Eq + Clone + fmt::Debug,
    V: Clone + fmt::Debug,
    S: BuildHasher + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.load();
        f.debug_struct("RcuMap")
            .field("version", &current.version())
            .field("map", &*current)
            .finish()
    }
}

impl<K, V, S> IntoIterator for &RcuMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    type Item = (K, V);
    type IntoIter = PersistentIntoIter<K, V>;

    /// [`RcuMap::iter`]: owned copies of the current publication's entries.
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K, V, S> Clone for RcuMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// A new map whose first publication (version 0) is the current map of `self`, shared
    /// in O(1): the two maps share the trie's nodes until either writes.
    fn clone(&self) -> Self {
        Self::from_persistent(PersistentMap::clone(&self.load()))
    }
}

impl<K, V, S> PartialEq for RcuMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: PartialEq + Clone,
    S: BuildHasher + Clone,
{
    /// Same keys with equal values in the current publications (versions are not compared).
    /// Each side is loaded at its own moment: not atomic across both maps.
    fn eq(&self, other: &Self) -> bool {
        *self.load() == *other.load()
    }
}

impl<K, V, S> Eq for RcuMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Eq + Clone,
    S: BuildHasher + Clone,
{
}

impl<K, V, S> FromIterator<(K, V)> for RcuMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone + Default,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = PersistentMap::with_hasher(S::default());
        map.extend(iter);
        Self::from_persistent(map)
    }
}

impl<K, V, S> Extend<(K, V)> for RcuMap<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    /// Inserts everything as one publication.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let mut next = (*self.load()).clone();
        next.extend(iter);
        self.replace(next);
    }
}
