//! A subscriber's bounded buffer, the backpressure policies, and the receiving end.
//!
//! # Protocol
//! Each subscriber owns one [`ChangeBuffer`]: a mutex-guarded queue with a capacity, shared
//! (by `Arc`) between the [`Subscription`] and every stripe of the map (see the parent
//! module). Writers push while holding their key's stripe lock, so the queue holds each key's
//! events in commit order; the reader drains it in batches.
//!
//! States of a buffer, all under its mutex:
//! * **open**: writers push; the reader pops.
//! * **lagged** (policy [`Backpressure::Lag`] only): a push found the queue full. The queue is
//!   emptied at once (its memory freed) and `missed` counts every event the reader will never
//!   see; pushes from then on only count. The reader gets [`RecvError::Lagged`] on every
//!   receive, before anything else, so it cannot miss events silently: it must resynchronise
//!   from a snapshot with a new subscription.
//! * **reader gone**: the [`Subscription`] was dropped; pushes are refused and writers drop
//!   the buffer from their stripe.
//! * **map gone**: the map was dropped; the reader drains what is queued, then gets
//!   [`RecvError::Closed`].
//!
//! Under [`Backpressure::Wait`] a push into a full queue waits on `writable` until the reader
//! makes room or goes away: lossless, bounded, and the writer (and its stripe) stall meanwhile.
//!
//! Wake-ups: a condition variable's notify is a system call even with no waiter, so the queue
//! records whether the reader or any writer is asleep and notifies only then. Every sleep
//! re-checks its condition under the mutex, so a notify can never be lost between the check
//! and the sleep.

use std::collections::VecDeque;
use std::fmt;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::event::ChangeEvent;
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

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
    /// Most events queued for the subscriber at once (at least 1).
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

/// Why a blocking receive returned no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The buffer overflowed under [`Backpressure::Lag`]; `missed` events were dropped.
    /// Resynchronise with [`CapturedMap::snapshot_and_subscribe`](super::CapturedMap::snapshot_and_subscribe).
    Lagged {
        /// Events committed that this subscription will never deliver.
        missed: u64,
    },
    /// The map was dropped and every queued event was delivered.
    Closed,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Lagged { missed } => write!(
                f,
                "subscriber lagged and missed {missed} events; resynchronise from a snapshot"
            ),
            RecvError::Closed => f.write_str("the map was dropped"),
        }
    }
}

impl std::error::Error for RecvError {}

/// Why [`Subscription::try_recv`] returned no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// No event is queued now.
    Empty,
    /// See [`RecvError::Lagged`].
    Lagged {
        /// Events committed that this subscription will never deliver.
        missed: u64,
    },
    /// See [`RecvError::Closed`].
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("no event queued"),
            TryRecvError::Lagged { missed } => RecvError::Lagged { missed: *missed }.fmt(f),
            TryRecvError::Closed => RecvError::Closed.fmt(f),
        }
    }
}

impl std::error::Error for TryRecvError {}

/// What a push did, so the writer knows whether to keep the buffer on its stripe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Queued (or, for a lagged buffer, counted as missed for the first time).
    Kept,
    /// The buffer will never deliver again (lagged or reader gone): drop it from the stripe.
    Detach,
}

struct Queue<K, V> {
    events: VecDeque<ChangeEvent<K, V>>,
    capacity: usize,
    backpressure: Backpressure,
    /// `Some(missed)` once lagged.
    lagged: Option<u64>,
    reader_gone: bool,
    map_gone: bool,
    reader_asleep: bool,
    writers_asleep: usize,
}

/// One subscriber's bounded queue, shared by its [`Subscription`] and the map's stripes.
pub(crate) struct ChangeBuffer<K, V> {
    queue: Mutex<Queue<K, V>>,
    /// The reader sleeps here while the queue is empty.
    readable: Condvar,
    /// `Wait` writers sleep here while the queue is full.
    writable: Condvar,
}

impl<K, V> ChangeBuffer<K, V> {
    pub(crate) fn new(options: SubscribeOptions) -> Self {
        ChangeBuffer {
            queue: Mutex::new(Queue {
                events: VecDeque::new(),
                capacity: options.capacity.max(1),
                backpressure: options.backpressure,
                lagged: None,
                reader_gone: false,
                map_gone: false,
                reader_asleep: false,
                writers_asleep: 0,
            }),
            readable: Condvar::new(),
            writable: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<K, V>> {
        // The queue's invariants hold between statements that can panic (only allocation
        // can), so a poisoned lock still guards a consistent queue.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `event` for the reader, applying the backpressure policy when full.
    pub(crate) fn push(&self, event: ChangeEvent<K, V>) -> Delivery {
        let mut queue = self.lock();
        loop {
            if queue.reader_gone {
                return Delivery::Detach;
            }
            if let Some(missed) = &mut queue.lagged {
                *missed += 1;
                return Delivery::Detach;
            }
            if queue.events.len() < queue.capacity {
                break;
            }
            match queue.backpressure {
                Backpressure::Lag => {
                    queue.lagged = Some(queue.events.len() as u64 + 1);
                    queue.events = VecDeque::new();
                    if queue.reader_asleep {
                        self.readable.notify_one();
                    }
                    return Delivery::Detach;
                }
                Backpressure::Wait => {
                    queue.writers_asleep += 1;
                    queue = self
                        .writable
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                    queue.writers_asleep -= 1;
                }
            }
        }
        queue.events.push_back(event);
        if queue.reader_asleep {
            self.readable.notify_one();
        }
        Delivery::Kept
    }

    /// Marks the map gone and wakes the reader, which drains the queue and then sees `Closed`.
    pub(crate) fn close(&self) {
        let mut queue = self.lock();
        queue.map_gone = true;
        if queue.reader_asleep {
            self.readable.notify_one();
        }
    }

    /// Moves up to `max` queued events into `into`, waiting up to `timeout` (forever: `None`)
    /// for the first.
    fn pop_batch(
        &self,
        into: &mut Vec<ChangeEvent<K, V>>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, TryRecvError> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut queue = self.lock();
        loop {
            if let Some(missed) = queue.lagged {
                return Err(TryRecvError::Lagged { missed });
            }
            if !queue.events.is_empty() {
                let taken = max.min(queue.events.len());
                into.extend(queue.events.drain(..taken));
                if queue.writers_asleep > 0 {
                    self.writable.notify_all();
                }
                return Ok(taken);
            }
            if queue.map_gone {
                return Err(TryRecvError::Closed);
            }
            let remaining = match deadline {
                None => None,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(remaining) if !remaining.is_zero() => Some(remaining),
                    _ => return Err(TryRecvError::Empty),
                },
            };
            queue.reader_asleep = true;
            queue = match remaining {
                None => self.readable.wait(queue),
                Some(remaining) => self
                    .readable
                    .wait_timeout(queue, remaining)
                    .map(|(queue, _)| queue)
                    .map_err(|poisoned| PoisonError::new(poisoned.into_inner().0)),
            }
            .unwrap_or_else(PoisonError::into_inner);
            queue.reader_asleep = false;
        }
    }

    fn reader_dropped(&self) {
        let mut queue = self.lock();
        queue.reader_gone = true;
        queue.events = VecDeque::new();
        if queue.writers_asleep > 0 {
            self.writable.notify_all();
        }
    }
}

/// The receiving end of a subscription to a [`CapturedMap`](super::CapturedMap).
///
/// Receives every mutation committed after the subscription began, each key's in commit
/// order (see the [module docs](super) for the order across keys). Blocking calls are for
/// plain threads; from async code, receive on a dedicated thread (or `spawn_blocking`) and
/// forward batches into a channel.
pub struct Subscription<K, V> {
    buffer: Arc<ChangeBuffer<K, V>>,
}

impl<K, V> Subscription<K, V> {
    pub(crate) fn new(buffer: Arc<ChangeBuffer<K, V>>) -> Self {
        Subscription { buffer }
    }

    /// The next event, waiting as long as it takes.
    pub fn recv(&self) -> Result<ChangeEvent<K, V>, RecvError> {
        let mut one = Vec::with_capacity(1);
        self.buffer
            .pop_batch(&mut one, 1, None)
            .map_err(blocking_error)?;
        Ok(one.pop().expect("pop_batch returns Ok only with an event"))
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Result<ChangeEvent<K, V>, TryRecvError> {
        let mut one = Vec::with_capacity(1);
        self.buffer.pop_batch(&mut one, 1, Some(Duration::ZERO))?;
        Ok(one.pop().expect("pop_batch returns Ok only with an event"))
    }

    /// Appends up to `max` queued events to `into`, waiting up to `timeout` for the first;
    /// returns how many it appended (0: the timeout passed). One lock for the whole batch, so
    /// this is the fast way to drain a busy map.
    pub fn recv_batch(
        &self,
        into: &mut Vec<ChangeEvent<K, V>>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        match self.buffer.pop_batch(into, max, Some(timeout)) {
            Ok(taken) => Ok(taken),
            Err(TryRecvError::Empty) => Ok(0),
            Err(error) => Err(blocking_error(error)),
        }
    }

    /// Events queued now.
    pub fn queued(&self) -> usize {
        self.buffer.lock().events.len()
    }
}

fn blocking_error(error: TryRecvError) -> RecvError {
    match error {
        TryRecvError::Lagged { missed } => RecvError::Lagged { missed },
        TryRecvError::Closed | TryRecvError::Empty => RecvError::Closed,
    }
}

impl<K, V> Drop for Subscription<K, V> {
    fn drop(&mut self) {
        self.buffer.reader_dropped();
    }
}

impl<K, V> fmt::Debug for Subscription<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.buffer.lock();
        f.debug_struct("Subscription")
            .field("queued", &queue.events.len())
            .field("capacity", &queue.capacity)
            .field("backpressure", &queue.backpressure)
            .field("lagged", &queue.lagged)
            .finish()
    }
}
