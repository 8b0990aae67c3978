//! Change capture: a map whose every mutation gets a version and is streamed, in per-key
//! commit order, to subscribers with bounded buffers.
//!
//! [`CapturedMap`] wraps one of the crate's maps (its *backend*: [`AtomicMap`] by default,
//! [`ShardedMap`](crate::ShardedMap) or [`RcuMap`](crate::RcuMap)) whose values carry their
//! [`Version`]. A wrapper, not a construction option of each map, because it is then free when
//! off in the strongest sense: a map built without it runs not one extra instruction or
//! branch, and one implementation of the protocol below serves every backend. At the call site
//! the type says what the map does: `CapturedMap<K, V>` streams its changes, `AtomicMap<K, V>`
//! does not.
//!
//! # Protocol: commit, version, publish
//! Keys are spread by hash over a power-of-two number of *stripes*; each stripe is a mutex
//! that guards the list of subscriber buffers (module `subscriber`) registered on it. Every
//! mutation of a key runs, in one critical section of the key's stripe:
//! 1. read the key's current entry if the operation needs it (conditional operations);
//! 2. **version**: take a tick of the map's [`HybridClock`];
//! 3. **commit**: write or remove the entry in the backend, with that version, using the
//!    backend's own linearizable single-key operation (for `AtomicMap`, its one CAS);
//! 4. **publish**: if the stripe lists subscribers, push the event to each buffer.
//!
//! Readers bypass the stripes: they read the backend as they would without capture (for
//! `AtomicMap`, lock-free with no RMW atomic) and see each entry's version with its value.
//!
//! Who may write what: only a thread holding a stripe's mutex mutates that stripe's keys in
//! the backend or its subscriber list; registering a subscriber takes every stripe's mutex (in
//! index order, so two registrations cannot deadlock; a writer holds one stripe at a time).
//!
//! Why that is enough, with no memory ordering beyond the mutexes':
//! * **Per-key order.** All mutations of a key hold the same mutex through steps 2-4, so their
//!   commits, their ticks and their pushes into each buffer happen in one order. Ticks strictly
//!   increase (one RMW on the clock), so a key's versions strictly increase in commit order,
//!   and each buffer (FIFO) holds a key's events in that order too.
//! * **Versions respect causality.** A tick is taken before the commit is visible, so a thread
//!   that reads the committed value and then writes any key ticks later and gets a larger
//!   version. Versions are unique across the map (one clock) and, with distinct node ids,
//!   across processes.
//! * **Snapshot plus stream has no gap.** [`CapturedMap::snapshot_and_subscribe`] registers
//!   the buffer first (under every stripe mutex), then takes the backend's linearizable
//!   snapshot. A commit whose critical section ran before the registration locked its stripe
//!   happened before the snapshot, so the snapshot shows it or a later state of its key; a
//!   commit whose critical section ran after sees the buffer and publishes into it. Commits
//!   between the registration and the snapshot's instant appear in both, which is harmless:
//!   their version is not newer than the snapshot's entry.
//!
//! # Order across keys
//! A buffer receives each key's events in commit order, and one thread's mutations in its
//! program order (it pushes them one after another into the same FIFO). Nothing else is
//! promised across keys: two threads writing different keys may have their events queued in
//! either order, whatever their versions. A consumer that needs one order across keys sorts
//! by version within a window.
//!
//! # Costs
//! With capture on, a mutation adds: one hash for the stripe, one uncontended mutex, one
//! clock tick (an RMW on a shared line, and a read of the wall clock), and per subscriber a
//! clone of key and value and one more mutex (the buffer's). With no subscriber the event is
//! never built. Values are cloned into events: store `Arc<T>` for large values.
//!
//! # Backpressure and deadlock
//! A [`Backpressure::Wait`] subscriber whose buffer is full makes writers wait *inside* their
//! stripe's critical section. So the thread that drains a waiting subscription must not write
//! to the map or subscribe to it while it may be the one everybody waits for. A
//! [`Backpressure::Lag`] subscriber never makes anyone wait.

mod backend;
mod event;
mod snapshot;
mod subscriber;
mod version;

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::PoisonError;

pub use backend::CaptureBackend;
pub use event::{ChangeEvent, Versioned};
pub use snapshot::VersionedSnapshot;
pub use subscriber::{Backpressure, RecvError, SubscribeOptions, Subscription, TryRecvError};
pub use version::{HybridClock, Version};

use crate::sync::{Arc, CachePadded, Mutex, MutexGuard};
use crate::{AtomicMap, RcuMap, ShardedMap};
use subscriber::{ChangeBuffer, Delivery};

/// A [`CapturedMap`] over a [`ShardedMap`].
pub type CapturedShardedMap<K, V> = CapturedMap<K, V, ShardedMap<K, Versioned<V>>>;

/// A [`CapturedMap`] over an [`RcuMap`].
pub type CapturedRcuMap<K, V> = CapturedMap<K, V, RcuMap<K, Versioned<V>>>;

/// Seed of the hash that picks a key's stripe. Fixed so that loom's replays pick the same
/// stripes; a hostile key set can only crowd stripes (slower writers), never break the order.
const STRIPE_SEED: u64 = 0x5f0c_a9e1_7b3d_2468;

/// Stripes per available core: enough that two writers rarely share one.
const STRIPES_PER_CORE: usize = 64;

/// A stripe behind its mutex, on its own cache lines.
type StripeLock<K, V> = CachePadded<Mutex<Stripe<K, V>>>;

/// One stripe: the subscriber buffers its keys' events go to.
struct Stripe<K, V> {
    subscribers: Vec<Arc<ChangeBuffer<K, V>>>,
}

/// A concurrent map that versions every mutation and streams it to subscribers.
///
/// See the [module docs](self) for the protocol, the guarantees and the costs. Reads cost
/// what the backend's reads cost; writes serialise per key on a striped mutex.
///
/// ```
/// use atomicmap::capture::{CapturedMap, ChangeEvent, SubscribeOptions};
///
/// let prices: CapturedMap<String, u64> = CapturedMap::new();
/// prices.insert("apple".into(), 3);
/// let (snapshot, changes) = prices.snapshot_and_subscribe(SubscribeOptions::default());
/// prices.insert("apple".into(), 4);
/// prices.remove("apple");
/// assert_eq!(snapshot.get("apple").map(|entry| entry.value), Some(3));
/// assert!(matches!(changes.recv(), Ok(ChangeEvent::Update { value: 4, .. })));
/// assert!(matches!(changes.recv(), Ok(ChangeEvent::Remove { .. })));
/// ```
pub struct CapturedMap<K, V, M = AtomicMap<K, Versioned<V>>> {
    map: M,
    clock: HybridClock,
    stripes: Box<[StripeLock<K, V>]>,
    stripe_hasher: foldhash::quality::FixedState,
}

impl<K, V> CapturedMap<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty map over an [`AtomicMap`], versioned as node 0.
    pub fn new() -> Self {
        Self::with_node(0)
    }

    /// An empty map over an [`AtomicMap`] whose versions carry `node`: give every process
    /// whose versions are compared (replication, last-writer-wins) its own node id.
    pub fn with_node(node: u16) -> Self {
        Self::with_backend(AtomicMap::new(), node)
    }
}

impl<K, V> Default for CapturedMap<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, M> CapturedMap<K, V, M>
where
    K: Hash + Eq + Clone,
    V: Clone,
    M: CaptureBackend<K, V>,
{
    /// Captures the changes of `map` (which may hold entries already, e.g. a presized or
    /// restored map), versioning them as `node`. The clock starts above every version in it.
    pub fn with_backend(map: M, node: u16) -> Self {
        let stripe_count = stripe_count();
        let captured = CapturedMap {
            map,
            clock: HybridClock::new(node),
            stripes: (0..stripe_count)
                .map(|_| {
                    CachePadded(Mutex::new(Stripe {
                        subscribers: Vec::new(),
                    }))
                })
                .collect(),
            stripe_hasher: foldhash::quality::FixedState::with_seed(STRIPE_SEED),
        };
        if captured.map.entry_count() > 0 {
            captured
                .clock
                .observe(VersionedSnapshot::new(captured.map.snapshot()).max_version());
        }
        captured
    }

    /// The clock that versions this map's mutations. [`HybridClock::observe`] a version
    /// received from another node so that later local writes order after it.
    pub fn clock(&self) -> &HybridClock {
        &self.clock
    }

    /// The value for `key`, cloned.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.read(key, |entry| entry.value.clone())
    }

    /// The value for `key` with its version, cloned.
    pub fn get_versioned<Q>(&self, key: &Q) -> Option<Versioned<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.read(key, Versioned::clone)
    }

    /// Runs `read` on the value for `key` (the backend's rules for the closure apply: for a
    /// `ShardedMap` it must not use the map).
    pub fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.read(key, |entry| read(&entry.value))
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.read(key, |_| ()).is_some()
    }

    /// Number of entries (as exact as the backend's `len`).
    pub fn len(&self) -> usize {
        self.map.entry_count()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the value of `key`, returning the value it replaced. Publishes `Insert` or
    /// `Update`.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        let mut stripe = self.lock_stripe(&key);
        let version = self.clock.tick();
        let event_parts = stripe.wants_events().then(|| (key.clone(), value.clone()));
        let previous = self.map.put(key, Versioned { value, version });
        if let Some((key, value)) = event_parts {
            stripe.publish(ChangeEvent::of_commit(
                key,
                previous.is_some(),
                Some(value),
                version,
            ));
        }
        previous.map(|entry| entry.value)
    }

    /// Removes `key`, returning its value. Publishes `Remove` if the key had a value.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut stripe = self.lock_stripe(key);
        let version = self.clock.tick();
        let removed = self.map.take(key)?;
        if stripe.wants_events() {
            stripe.publish(Some(ChangeEvent::Remove {
                key: key.to_owned(),
                version,
            }));
        }
        Some(removed.value)
    }

    /// Replaces the value of `key` with `change(current)`; returns the new value, or `None`
    /// (and changes nothing) if the key has no value. `change` runs exactly once, outside
    /// every lock of the backend but inside the key's stripe, so it must not write to this map.
    pub fn update<Q>(&self, key: &Q, change: impl FnOnce(&V) -> V) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.compute_in(key.to_owned(), |current| current.map(change))
    }

    /// General read-modify-write of one key in one linearizable step: `compute` sees the
    /// current value (`None`: absent) and returns the new one (`None`: remove). Returns the
    /// value the key holds afterwards. `compute` runs exactly once, inside the key's stripe,
    /// and must not write to this map.
    pub fn compute(&self, key: K, compute: impl FnOnce(Option<&V>) -> Option<V>) -> Option<V> {
        self.compute_in(key, compute)
    }

    /// The value for `key`, inserting `make()` first if there is none. `make` runs at most
    /// once, inside the key's stripe, and must not write to this map.
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> V {
        if let Some(present) = self.get(&key) {
            return present;
        }
        let made = self.compute_in(key, |current| Some(current.cloned().unwrap_or_else(make)));
        made.expect("compute_in returns the value it was given")
    }

    /// Keeps only the entries for which `keep` returns `true`, publishing a `Remove` for each
    /// other. Weakly consistent: each key is decided at its own instant. `keep` runs inside
    /// the key's stripe and under the backend's read (for a `ShardedMap`, its shard lock), so
    /// it must not use this map.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        for key in self.map.keys() {
            let mut stripe = self.lock_stripe(&key);
            let doomed = self.map.read(&key, |entry| !keep(&key, &entry.value));
            if doomed != Some(true) {
                continue;
            }
            let version = self.clock.tick();
            self.map.take(&key);
            if stripe.wants_events() {
                stripe.publish(Some(ChangeEvent::Remove { key, version }));
            }
        }
    }

    /// Removes every entry, publishing a `Remove` for each. Not atomic: entries inserted
    /// during the call may survive it.
    pub fn clear(&self) {
        self.retain(|_, _| false);
    }

    /// A new subscription that receives every mutation committed after this call returns.
    pub fn subscribe(&self, options: SubscribeOptions) -> Subscription<K, V> {
        let buffer = Arc::new(ChangeBuffer::new(options));
        let mut stripes: Vec<_> = self.stripes.iter().map(|stripe| lock(stripe)).collect();
        for stripe in &mut stripes {
            stripe.subscribers.push(Arc::clone(&buffer));
        }
        drop(stripes);
        Subscription::new(buffer)
    }

    /// Every entry with its version, at one instant (the backend's `snapshot`).
    pub fn snapshot(&self) -> VersionedSnapshot<K, V, M::Hasher> {
        VersionedSnapshot::new(self.map.snapshot())
    }

    /// A snapshot and a subscription with no gap between them: applying the subscription's
    /// events to the snapshot, keeping per key whatever has the newer version (and removals
    /// as versioned tombstones), gives the map's later states. Events the snapshot already
    /// reflects may be delivered too; their versions are not newer than the snapshot's.
    ///
    /// Writers wait only while the subscription registers (every stripe's mutex, briefly),
    /// never for the snapshot, which costs what the backend's `snapshot` costs.
    pub fn snapshot_and_subscribe(
        &self,
        options: SubscribeOptions,
    ) -> (VersionedSnapshot<K, V, M::Hasher>, Subscription<K, V>) {
        let subscription = self.subscribe(options);
        (self.snapshot(), subscription)
    }

    fn compute_in(&self, key: K, compute: impl FnOnce(Option<&V>) -> Option<V>) -> Option<V> {
        let mut stripe = self.lock_stripe(&key);
        let current = self.map.read(&key, |entry| entry.value.clone());
        let next = compute(current.as_ref());
        if current.is_none() && next.is_none() {
            return None;
        }
        let version = self.clock.tick();
        let event = stripe
            .wants_events()
            .then(|| ChangeEvent::of_commit(key.clone(), current.is_some(), next.clone(), version))
            .flatten();
        match &next {
            Some(value) => {
                self.map.put(
                    key,
                    Versioned {
                        value: value.clone(),
                        version,
                    },
                );
            }
            None => {
                self.map.take(&key);
            }
        }
        stripe.publish(event);
        next
    }

    fn lock_stripe<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, Stripe<K, V>> {
        let hash = self.stripe_hasher.hash_one(key);
        // The top bits: independent of the low bits the backends use for their own slots.
        let index = (hash >> (u64::BITS - self.stripes.len().trailing_zeros()))
            .try_into()
            .unwrap_or(0);
        lock(&self.stripes[index])
    }
}

impl<K, V> Stripe<K, V> {
    fn wants_events(&self) -> bool {
        !self.subscribers.is_empty()
    }

    /// Pushes `event` to every buffer of the stripe, dropping buffers that will never
    /// deliver again.
    fn publish(&mut self, event: Option<ChangeEvent<K, V>>)
    where
        K: Clone,
        V: Clone,
    {
        let Some(event) = event else { return };
        let mut event = Some(event);
        let last = self.subscribers.len().saturating_sub(1);
        let mut index = 0;
        self.subscribers.retain(|buffer| {
            let this = if index == last {
                event.take()
            } else {
                event.clone()
            };
            index += 1;
            match this {
                Some(this) => buffer.push(this) == Delivery::Kept,
                None => true,
            }
        });
    }
}

/// Locks a stripe. A panic in user code (`Hash`, `Eq`, `Clone`, a closure) while a stripe was
/// held leaves nothing half-done in it: the backend's operations are atomic and the list is
/// only pushed to or filtered, so a poisoned stripe is still consistent.
fn lock<K, V>(stripe: &Mutex<Stripe<K, V>>) -> MutexGuard<'_, Stripe<K, V>> {
    stripe.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A power of two: [`STRIPES_PER_CORE`] per core, 2 under loom (small models).
fn stripe_count() -> usize {
    if cfg!(loom) {
        return 2;
    }
    let cores = std::thread::available_parallelism().map_or(4, usize::from);
    (cores * STRIPES_PER_CORE).next_power_of_two().min(1 << 14)
}

impl<K, V, M> Drop for CapturedMap<K, V, M> {
    fn drop(&mut self) {
        for stripe in self.stripes.iter() {
            for buffer in &lock(stripe).subscribers {
                buffer.close();
            }
        }
    }
}

impl<K, V, M> fmt::Debug for CapturedMap<K, V, M>
where
    K: Hash + Eq + Clone + fmt::Debug,
    V: Clone + fmt::Debug,
    M: CaptureBackend<K, V>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapturedMap")
            .field("clock", &self.clock)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<K, V> FromIterator<(K, V)> for CapturedMap<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let map = CapturedMap::new();
        for (key, value) in entries {
            map.insert(key, value);
        }
        map
    }
}

impl<K, V, M> Extend<(K, V)> for CapturedMap<K, V, M>
where
    K: Hash + Eq + Clone,
    V: Clone,
    M: CaptureBackend<K, V>,
{
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        for (key, value) in entries {
            self.insert(key, value);
        }
    }
}
