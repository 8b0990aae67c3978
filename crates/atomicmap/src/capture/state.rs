//! What one subscription's writers and reader share besides the queues: its backpressure
//! policy, dirty flags, one-way flags and the sleep/wake machinery (the protocol is described
//! in `subscriber`). Both `stripe` (writers) and `subscriber` (the reader) build on it.

use std::sync::PoisonError;

use crate::sync::{AtomicBool, AtomicU64, Condvar, Mutex, MutexGuard, Ordering};

/// What a full subscriber buffer does to the writers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backpressure {
    /// Writers wait until the subscriber makes room: nothing is lost, and a stalled subscriber
    /// stalls the writers of the map (each on its next mutation).
    #[default]
    Wait,
    /// Writers never wait: a subscriber whose buffer overflows is marked lagged, its buffer is
    /// freed, and it must resynchronise from a snapshot (like tokio's `broadcast` `Lagged`,
    /// except that the subscription ends instead of skipping ahead).
    Lag,
}

/// How a new subscription buffers events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Most events queued for the subscriber at once (at least 1). The capacity is split
    /// evenly over the map's stripes (each holds up to `ceil(capacity / stripes)` events of
    /// its keys), so that writers publish without sharing a counter: keys that crowd into one
    /// stripe meet the limit sooner, and at most `capacity + stripes` events are queued.
    pub capacity: usize,
    /// What writers do when the queue is full.
    pub backpressure: Backpressure,
}

impl SubscribeOptions {
    /// The default capacity: 64 Ki events.
    pub const DEFAULT_CAPACITY: usize = 1 << 16;

    /// A lossless subscription whose writers wait when `capacity` events are queued.
    pub fn waiting(capacity: usize) -> Self {
        SubscribeOptions {
            capacity,
            backpressure: Backpressure::Wait,
        }
    }

    /// A subscription that is marked lagged when more than `capacity` events are queued.
    pub fn lagging(capacity: usize) -> Self {
        SubscribeOptions {
            capacity,
            backpressure: Backpressure::Lag,
        }
    }
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions::waiting(Self::DEFAULT_CAPACITY)
    }
}

/// Who sleeps on a subscriber, guarded by its `sleep` mutex.
#[derive(Default)]
pub(super) struct Sleepers {
    /// A writer published since the reader went idle.
    pub(super) wake_pending: bool,
    /// Writers asleep (or about to be) on `writable`.
    pub(super) writers_waiting: usize,
}

/// What writers and the reader of one subscription share, besides the queues.
pub(crate) struct SubscriberState {
    pub(super) backpressure: Backpressure,
    /// Most events of one stripe's queue.
    pub(super) stripe_capacity: usize,
    /// Per stripe: events may be queued there (module docs).
    pub(super) dirty: Box<[AtomicBool]>,
    pub(super) lagged: AtomicBool,
    pub(super) reader_gone: AtomicBool,
    pub(super) map_gone: AtomicBool,
    /// Events lost to lag (a lower bound, see [`RecvError::Lagged`](super::RecvError::Lagged)).
    pub(super) missed: AtomicU64,
    /// The reader is about to sleep or asleep.
    pub(super) reader_idle: AtomicBool,
    /// Drains so far: a waiting writer sleeps until it moves. Incremented under `sleep`.
    pub(super) drains: AtomicU64,
    pub(super) sleep: Mutex<Sleepers>,
    pub(super) readable: Condvar,
    pub(super) writable: Condvar,
}

impl SubscriberState {
    pub(crate) fn new(options: SubscribeOptions, stripe_count: usize) -> Self {
        SubscriberState {
            backpressure: options.backpressure,
            stripe_capacity: options.capacity.max(1).div_ceil(stripe_count),
            dirty: (0..stripe_count).map(|_| AtomicBool::new(false)).collect(),
            lagged: AtomicBool::new(false),
            reader_gone: AtomicBool::new(false),
            map_gone: AtomicBool::new(false),
            missed: AtomicU64::new(0),
            reader_idle: AtomicBool::new(false),
            drains: AtomicU64::new(0),
            sleep: Mutex::new(Sleepers::default()),
            readable: Condvar::new(),
            writable: Condvar::new(),
        }
    }

    pub(crate) fn backpressure(&self) -> Backpressure {
        self.backpressure
    }

    pub(crate) fn stripe_capacity(&self) -> usize {
        self.stripe_capacity
    }

    /// Whether the reader will still read (not lagged, not gone). Relaxed: a writer that sees
    /// a stale `true` queues one more event that nobody reads, which the next writer drops.
    pub(crate) fn is_live(&self) -> bool {
        !self.lagged.load(Ordering::Relaxed) && !self.reader_gone.load(Ordering::Relaxed)
    }

    pub(crate) fn drains(&self) -> u64 {
        // Read under the stripe whose queue is full; the drain that empties it takes that
        // stripe first, so a value read here is never already past that drain.
        self.drains.load(Ordering::Relaxed)
    }

    pub(crate) fn count_missed(&self, events: u64) {
        if self.lagged.load(Ordering::Relaxed) {
            self.missed.fetch_add(events, Ordering::Relaxed);
        }
    }

    /// Marks the subscriber lagged with `events` lost, and wakes everyone who waits on it.
    pub(crate) fn mark_lagged(&self, events: u64) {
        self.missed.fetch_add(events, Ordering::Relaxed);
        self.lagged.store(true, Ordering::Relaxed);
        self.wake_all();
    }

    /// Called by a writer that pushed into stripe `index`, under that stripe's mutex.
    pub(crate) fn mark_dirty(&self, index: usize) {
        let flag = &self.dirty[index];
        if !flag.load(Ordering::Relaxed) {
            flag.store(true, Ordering::Relaxed);
        }
        if self.reader_idle.load(Ordering::SeqCst) {
            self.lock_sleep().wake_pending = true;
            self.readable.notify_one();
        }
    }

    /// Marks the map gone and wakes the reader, which drains what is queued, then sees `Closed`.
    pub(crate) fn close_map(&self) {
        self.map_gone.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    /// Sleeps until the reader drained since `seen_drains` was read, or will never drain again.
    pub(crate) fn wait_for_room(&self, seen_drains: u64) {
        let mut sleep = self.lock_sleep();
        sleep.writers_waiting += 1;
        // `drains`, `lagged`, `reader_gone` and `map_gone` change under `sleep` or before a
        // `wake_all`, which takes it: Relaxed loads under it see them.
        while self.drains.load(Ordering::Relaxed) == seen_drains
            && self.is_live()
            && !self.map_gone.load(Ordering::Relaxed)
        {
            sleep = self
                .writable
                .wait(sleep)
                .unwrap_or_else(PoisonError::into_inner);
        }
        sleep.writers_waiting -= 1;
    }

    pub(super) fn drained(&self) {
        let sleep = self.lock_sleep();
        self.drains.fetch_add(1, Ordering::Relaxed);
        if sleep.writers_waiting > 0 {
            self.writable.notify_all();
        }
    }

    pub(super) fn wake_all(&self) {
        self.lock_sleep().wake_pending = true;
        self.readable.notify_one();
        self.writable.notify_all();
    }

    pub(super) fn lock_sleep(&self) -> MutexGuard<'_, Sleepers> {
        // Counters and a flag, each changed in one statement: consistent even if a holder
        // panicked.
        self.sleep.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
