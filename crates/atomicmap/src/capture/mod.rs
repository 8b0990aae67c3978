//! Change capture: a map whose every mutation gets a version and is streamed, in per-key
//! commit order, to subscribers with bounded buffers.
//!
//! [`CapturedMap`] wraps one of the crate's maps (its *backend*: [`AtomicMap`] by default,
//! [`ShardedMap`] or [`RcuMap`]) whose values carry their
//! [`Version`]. A wrapper, not a construction option of each map, because it is then free when
//! off in the strongest sense: a map built without it runs not one extra instruction or
//! branch, and one implementation of the protocol below serves every backend. At the call site
//! the type says what the map does: `CapturedMap<K, V>` streams its changes, `AtomicMap<K, V>`
//! does not.
//!
//! # Protocol: commit, version, publish
//! Keys are spread by hash over a power-of-two number of *stripes* (module `stripe`); each
//! stripe is a mutex over one event queue per subscriber. Every mutation of a key runs, in one
//! critical section of the key's stripe:
//! 1. **room**: if a [`Backpressure::Wait`] subscriber's queue in this stripe is full, release
//!    the stripe, wait until that subscriber drains, and start over: nothing is committed yet;
//! 2. read the key's current entry if the operation needs it (conditional operations);
//! 3. **version**: take a tick of the map's [`HybridClock`];
//! 4. **commit**: write or remove the entry in the backend, with that version, using the
//!    backend's own linearizable single-key operation (for `AtomicMap`, its one CAS);
//! 5. **publish**: if the stripe has subscribers, append the event to each one's queue.
//!
//! Readers bypass the stripes: they read the backend as they would without capture (for
//! `AtomicMap`, lock-free with no RMW atomic) and see each entry's version with its value.
//! Subscribers collect from the stripes' queues (module `subscriber`).
//!
//! Who may write what: only a thread holding a stripe's mutex mutates that stripe's keys in
//! the backend or its queues; registering a subscriber takes every stripe's mutex (in index
//! order, so two registrations cannot deadlock; a writer holds one stripe at a time and never
//! waits while holding it).
//!
//! Why that is enough, with no memory ordering beyond the mutexes':
//! * **Per-key order.** All mutations of a key hold the same mutex through steps 2-5, so their
//!   commits, their ticks and their appends to each queue happen in one order. Ticks strictly
//!   increase (one RMW on the clock), so a key's versions strictly increase in commit order,
//!   and each queue (FIFO, drained whole or from the front) keeps a key's events in that order.
//! * **Versions respect causality.** A tick is taken before the commit is visible, so a thread
//!   that reads the committed value and then writes any key ticks later and gets a larger
//!   version. Versions are unique across the map (one clock) and, with distinct node ids,
//!   across processes.
//! * **Snapshot plus stream has no gap.** [`CapturedMap::snapshot_and_subscribe`] registers
//!   the subscriber's queues first (under every stripe mutex), then takes the backend's
//!   linearizable snapshot. A commit whose critical section ran before the registration locked
//!   its stripe happened before the snapshot, so the snapshot shows it or a later state of its
//!   key; a commit whose critical section ran after finds the queue and publishes into it.
//!   Commits between the registration and the snapshot's instant appear in both, which is
//!   harmless: their version is not newer than the snapshot's entry.
//!
//! # Order across keys
//! Only per key. Events of keys in different stripes are collected stripe by stripe, so a
//! subscriber may receive a later commit of key `b` before an earlier commit of key `a`, even
//! when one thread made both. Versions order them: a consumer that needs one order across keys
//! sorts by version within a window (events of one collection pass are at most one pass old).
//!
//! # Costs
//! With capture on, a mutation adds: one hash for the stripe, one uncontended mutex, one
//! clock tick (an RMW on a shared line and a read of the coarse wall clock), and per
//! subscriber a clone of key and value appended to a queue the writer already holds (no other
//! lock, no shared counter). With no subscriber the event is never built. Values are cloned
//! into events: store `Arc<T>` for large values. The backend stores [`Versioned`] values: an
//! `AtomicMap` keeps 64-bit values inside its slots but boxes a value with a version, so a
//! captured `AtomicMap<K, u64>` allocates per write and its reads follow a pointer (the
//! capture workload of the benchmark shows that storage cost on its own).
//!
//! # Backpressure and deadlock
//! A [`Backpressure::Wait`] subscriber whose queue is full makes writers of that stripe wait
//! before they commit, holding no lock. So the thread that drains a waiting subscription must
//! not write to the map while it may be the one everybody waits for: its own write could wait
//! for itself. A [`Backpressure::Lag`] subscriber never makes anyone wait.

mod backend;
mod event;
mod snapshot;
mod state;
mod stripe;
mod subscriber;
mod version;

use equivalent::Equivalent;
use std::fmt;
use std::hash::{BuildHasher, Hash};

pub use backend::CaptureBackend;
pub use event::{ChangeEvent, Versioned};
pub use snapshot::VersionedSnapshot;
pub use state::{Backpressure, SubscribeOptions};
pub use subscriber::{RecvError, Subscription, TryRecvError};
pub use version::{HybridClock, Version};

use crate::atomic_map::AtomicMap;
use crate::hot_swap::RcuMap;
use crate::sharded::ShardedMap;
use crate::stats::MapStats;
use crate::sync::{Arc, MutexGuard};
use state::SubscriberState;
use stripe::{lock, new_stripes, stripe_index, Stripe, StripeQueue, Stripes, STRIPE_SEED};

/// A [`CapturedMap`] over a [`ShardedMap`].
pub type CapturedShardedMap<K, V> = CapturedMap<K, V, ShardedMap<K, Versioned<V>>>;

/// A [`CapturedMap`] over an [`RcuMap`].
pub type CapturedRcuMap<K, V> = CapturedMap<K, V, RcuMap<K, Versioned<V>>>;

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
    stripes: Stripes<K, V>,
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
        let captured = CapturedMap {
            map,
            clock: HybridClock::new(node),
            stripes: new_stripes(),
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
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.map.read(key, |entry| entry.value.clone())
    }

    /// The value for `key` with its version, cloned.
    pub fn get_versioned<Q>(&self, key: &Q) -> Option<Versioned<V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.map.read(key, Versioned::clone)
    }

    /// Runs `read` on the value for `key` (the backend's rules for the closure apply: for a
    /// `ShardedMap` it must not use the map).
    pub fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Option<R>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.map.read(key, |entry| read(&entry.value))
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
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

    /// The internals figures of the map underneath (its `stats()`, with the versioned
    /// entries it holds); subscriber queues are not counted.
    ///
    /// ```
    /// use atomicmap::CapturedMap;
    ///
    /// let prices: CapturedMap<&str, u32> = CapturedMap::new();
    /// prices.insert("tea", 3);
    /// let _ = prices.snapshot();
    /// let stats = prices.stats();
    /// assert_eq!((stats.len, stats.snapshots_taken), (1, 1));
    /// ```
    pub fn stats(&self) -> MapStats {
        self.map.stats()
    }

    /// Sets the value of `key`, returning the value it replaced. Publishes `Insert` or
    /// `Update`.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        let (index, mut stripe) = self.lock_stripe(&key);
        let version = self.clock.tick();
        let event_parts = stripe.wants_events().then(|| (key.clone(), value.clone()));
        let previous = self.map.put(key, Versioned { value, version });
        if let Some((key, value)) = event_parts {
            stripe.publish(
                index,
                ChangeEvent::of_commit(key, previous.is_some(), Some(value), version),
            );
        }
        previous.map(|entry| entry.value)
    }

    /// Sets the value of `key`, like [`insert`](Self::insert) but without returning the value
    /// it replaced: the replaced value (for a boxed backend entry, a dependent cache miss) is
    /// never read. Publishes `Insert` or `Update`.
    pub fn store(&self, key: K, value: V) {
        let (index, mut stripe) = self.lock_stripe(&key);
        let version = self.clock.tick();
        let event_parts = stripe.wants_events().then(|| (key.clone(), value.clone()));
        let replaced = self.map.put_replacing(key, Versioned { value, version });
        if let Some((key, value)) = event_parts {
            stripe.publish(
                index,
                ChangeEvent::of_commit(key, replaced, Some(value), version),
            );
        }
    }

    /// Removes `key`, returning its value. Publishes `Remove` if the key had a value.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + ?Sized,
    {
        let (index, mut stripe) = self.lock_stripe(key);
        let version = self.clock.tick();
        let removed = self.map.take(key)?;
        if stripe.wants_events() {
            stripe.publish(
                index,
                Some(ChangeEvent::Remove {
                    key: key.to_owned(),
                    version,
                }),
            );
        }
        Some(removed.value)
    }

    /// Replaces the value of `key` with `change(current)`; returns the new value, or `None`
    /// (and changes nothing) if the key has no value. `change` runs exactly once, outside
    /// every lock of the backend but inside the key's stripe, so it must not write to this map.
    pub fn update<Q>(&self, key: &Q, change: impl FnOnce(&V) -> V) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ToOwned<Owned = K> + ?Sized,
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
            let (index, mut stripe) = self.lock_stripe(&key);
            let doomed = self.map.read(&key, |entry| !keep(&key, &entry.value));
            if doomed != Some(true) {
                continue;
            }
            let version = self.clock.tick();
            self.map.take(&key);
            if stripe.wants_events() {
                stripe.publish(index, Some(ChangeEvent::Remove { key, version }));
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
        let subscriber = Arc::new(SubscriberState::new(options, self.stripes.len()));
        let mut stripes: Vec<_> = self.stripes.iter().map(|stripe| lock(stripe)).collect();
        for stripe in &mut stripes {
            stripe.queues.push(StripeQueue::new(&subscriber));
        }
        drop(stripes);
        Subscription::new(subscriber, std::sync::Arc::clone(&self.stripes))
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
        let (index, mut stripe) = self.lock_stripe(&key);
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
        stripe.publish(index, event);
        next
    }

    /// Locks the stripe of `key` once every waiting subscriber has room in it, so that the
    /// commit that follows can publish without waiting inside the stripe.
    fn lock_stripe<Q: Hash + ?Sized>(&self, key: &Q) -> (usize, MutexGuard<'_, Stripe<K, V>>) {
        let index = stripe_index(self.stripe_hasher.hash_one(key), self.stripes.len());
        loop {
            let stripe = lock(&self.stripes[index]);
            match stripe.full_waiting_subscriber() {
                None => return (index, stripe),
                Some((subscriber, drains)) => {
                    drop(stripe);
                    subscriber.wait_for_room(drains);
                }
            }
        }
    }
}

impl<K, V, M> Drop for CapturedMap<K, V, M> {
    fn drop(&mut self) {
        for stripe in self.stripes.iter() {
            for queue in &lock(stripe).queues {
                queue.subscriber.close_map();
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

impl<K, V, M> PartialEq for CapturedMap<K, V, M>
where
    K: Hash + Eq + Clone,
    V: Clone + PartialEq,
    M: CaptureBackend<K, V>,
    M::Hasher: BuildHasher + Clone,
{
    /// Same keys with equal values, comparing a snapshot of each side; versions are not
    /// compared, so two nodes that hold the same data are equal whatever their clocks. Each
    /// snapshot is its own map's instant: not atomic across both maps.
    ///
    /// `CapturedMap` has no `Clone`: a copy would need a node id of its own (its versions
    /// must not collide with the original's) and would start with no subscribers; build one
    /// with [`CapturedMap::with_backend`] from a copy of the entries instead.
    fn eq(&self, other: &Self) -> bool {
        let (mine, theirs) = (self.snapshot(), other.snapshot());
        mine.len() == theirs.len()
            && mine.iter().all(|(key, entry)| {
                theirs
                    .get(key)
                    .is_some_and(|their| their.value == entry.value)
            })
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
