//! A subscriber: its shared state, the backpressure policies, and the receiving end.
//!
//! # Protocol
//! A subscriber's events live in the stripes (module `stripe`): one queue per stripe, pushed
//! to by writers that hold the stripe, drained by the reader, which takes each stripe's mutex
//! just long enough to swap the queue out. Each queue keeps its keys' events in commit order.
//! [`SubscriberState`] is what writers and the reader share besides the queues:
//! * `dirty[i]`: set by a writer that pushed into stripe `i`'s queue (a load first, a store
//!   only if it was clear, so a busy stripe does not keep writing the line); cleared by the
//!   reader under stripe `i`'s mutex when it drains it. The reader visits only dirty stripes
//!   while events flow; flags are hints, so before sleeping it visits every stripe.
//! * `lagged`, `reader_gone`, `map_gone`: one-way flags. Lagged (policy [`Backpressure::Lag`](super::Backpressure::Lag),
//!   a push found the queue full) and reader-gone subscribers lose their queues: writers drop
//!   each one as they meet it and count its events as missed; the reader drops the rest.
//! * Sleeping. The reader, finding nothing, yields up to [`IDLE_SPINS`] times watching the
//!   dirty flags, then sets `reader_idle`, visits every stripe under its mutex, and only if
//!   all are empty sleeps on `readable` until `wake_pending`. A writer that pushes and sees
//!   `reader_idle` sets `wake_pending` under `sleep` and notifies. No wake-up is lost: the
//!   reader stores `reader_idle` before it locks each stripe for the final visit, so a writer
//!   that takes a stripe after that visit sees it (the stripe mutex orders them), and a writer
//!   that took it before left its event for the visit to find.
//! * Waiting writers ([`Backpressure::Wait`](super::Backpressure::Wait)). A writer whose key's stripe queue is full
//!   reads `drains` (under the stripe, so before any drain that could make room), releases
//!   the stripe *before* committing anything, and sleeps on `writable` until `drains` moves or
//!   the subscriber goes away, then starts its operation over. The reader increments `drains`
//!   after each drain, under `sleep`, and notifies if `writers_waiting` (also under `sleep`)
//!   is non-zero. The writer counts itself and checks `drains` under `sleep` too, so the two
//!   cannot miss each other: no store-load race on atomics is involved.
//!
//! Lock order: a stripe, then `sleep` (writers notify while holding their stripe). The reader
//! never holds `sleep` while it takes a stripe, so no cycle can form.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{PoisonError, TryLockError};
use std::time::{Duration, Instant};

use super::event::ChangeEvent;
use super::state::SubscriberState;
use super::stripe::{lock, Stripes};
use crate::sync::{yield_now, Arc, AtomicUsize, Mutex, Ordering};

/// Times an idle reader yields before it sleeps (module docs); 1 under loom, which explores
/// the path without multiplying the model's states.
const IDLE_SPINS: usize = if cfg!(loom) { 1 } else { 64 };

/// Why a blocking receive returned no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The buffer overflowed under [`Backpressure::Lag`](super::Backpressure::Lag); at least `missed` events were lost
    /// (the ones queued or published before writers dropped the buffer; later ones are not
    /// counted).
    /// Resynchronise with [`CapturedMap::snapshot_and_subscribe`](super::CapturedMap::snapshot_and_subscribe).
    Lagged {
        /// A lower bound of the events this subscription will never deliver.
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

/// The receiving end of a subscription to a [`CapturedMap`](super::CapturedMap).
///
/// Receives every mutation committed after the subscription began, each key's in commit
/// order (see the [module docs](super) for the order across keys). Blocking calls are for
/// plain threads; from async code, receive on a dedicated thread (or `spawn_blocking`) and
/// forward batches into a channel.
pub struct Subscription<K, V> {
    state: Arc<SubscriberState>,
    stripes: Stripes<K, V>,
    /// Where the next collection starts, so every stripe gets its turn when batches are
    /// smaller than what is queued.
    next_stripe: AtomicUsize,
    /// The reader's half of the swap in [`Subscription::take_from`]: empty between calls,
    /// with the capacity of earlier batches.
    spare: Mutex<VecDeque<ChangeEvent<K, V>>>,
}

impl<K, V> Subscription<K, V> {
    pub(crate) fn new(state: Arc<SubscriberState>, stripes: Stripes<K, V>) -> Self {
        Subscription {
            state,
            stripes,
            next_stripe: AtomicUsize::new(0),
            spare: Mutex::new(VecDeque::new()),
        }
    }

    /// The next event, waiting as long as it takes.
    pub fn recv(&self) -> Result<ChangeEvent<K, V>, RecvError> {
        let mut one = Vec::with_capacity(1);
        self.receive(&mut one, 1, None).map_err(blocking_error)?;
        Ok(one.pop().expect("receive returns Ok only with an event"))
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Result<ChangeEvent<K, V>, TryRecvError> {
        let mut one = Vec::with_capacity(1);
        self.receive(&mut one, 1, Some(Duration::ZERO))?;
        Ok(one.pop().expect("receive returns Ok only with an event"))
    }

    /// Appends up to `max` queued events to `into`, waiting up to `timeout` for the first;
    /// returns how many it appended (0: the timeout passed). The fast way to drain a busy
    /// map: one visit per stripe that has events.
    pub fn recv_batch(
        &self,
        into: &mut Vec<ChangeEvent<K, V>>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        match self.receive(into, max, Some(timeout)) {
            Ok(taken) => Ok(taken),
            Err(TryRecvError::Empty) => Ok(0),
            Err(error) => Err(blocking_error(error)),
        }
    }

    /// Events queued now (visits every stripe).
    pub fn queued(&self) -> usize {
        self.stripes
            .iter()
            .map(|stripe| {
                lock(stripe)
                    .queues
                    .iter()
                    .find(|queue| Arc::ptr_eq(&queue.subscriber, &self.state))
                    .map_or(0, |queue| queue.events.len())
            })
            .sum()
    }

    /// The receive loop behind every public receive (module docs).
    fn receive(
        &self,
        into: &mut Vec<ChangeEvent<K, V>>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, TryRecvError> {
        let max = max.max(1);
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        loop {
            if self.state.lagged.load(Ordering::Relaxed) {
                self.drop_queues();
                let missed = self.state.missed.load(Ordering::Relaxed);
                return Err(TryRecvError::Lagged { missed });
            }
            let map_gone = self.state.map_gone.load(Ordering::SeqCst);
            let taken = self.collect(into, max, !map_gone);
            if taken > 0 {
                return Ok(taken);
            }
            if map_gone {
                return Err(TryRecvError::Closed);
            }
            let remaining = match deadline {
                None => None,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(remaining) if !remaining.is_zero() => Some(remaining),
                    _ => return Err(TryRecvError::Empty),
                },
            };
            if self.spin_until_dirty() {
                continue;
            }
            self.state.reader_idle.store(true, Ordering::SeqCst);
            let taken = self.collect(into, max, false);
            if taken > 0 {
                self.state.reader_idle.store(false, Ordering::SeqCst);
                return Ok(taken);
            }
            self.sleep_until_woken(remaining);
            self.state.reader_idle.store(false, Ordering::SeqCst);
        }
    }

    /// Moves up to `max` events into `into` from the stripes, starting at the rotating
    /// cursor. A `quick` pass visits only dirty stripes and skips those a writer holds (they
    /// stay dirty for the next pass): a reader that waited for a stripe mutex would make its
    /// writer pay a wake-up system call to release it. Otherwise it visits every stripe.
    fn collect(&self, into: &mut Vec<ChangeEvent<K, V>>, max: usize, quick: bool) -> usize {
        let count = self.stripes.len();
        let start = self.next_stripe.load(Ordering::Relaxed);
        let mut taken = 0;
        for offset in 0..count {
            let index = (start + offset) % count;
            if quick && !self.state.dirty[index].load(Ordering::Relaxed) {
                continue;
            }
            taken += self.take_from(index, into, max - taken, quick);
            if taken == max {
                self.next_stripe.store(index, Ordering::Relaxed);
                break;
            }
        }
        if taken > 0 {
            self.state.drained();
        }
        taken
    }

    /// Moves up to `max` of this subscriber's events in stripe `index` into `into`; with
    /// `skip_if_busy`, nothing if a writer holds the stripe.
    fn take_from(
        &self,
        index: usize,
        into: &mut Vec<ChangeEvent<K, V>>,
        max: usize,
        skip_if_busy: bool,
    ) -> usize {
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stripe = if skip_if_busy {
            match self.stripes[index].try_lock() {
                Ok(stripe) => stripe,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return 0,
            }
        } else {
            lock(&self.stripes[index])
        };
        let Some(queue) = stripe
            .queues
            .iter_mut()
            .find(|queue| Arc::ptr_eq(&queue.subscriber, &self.state))
        else {
            return 0;
        };
        let taken = max.min(queue.events.len());
        if taken == queue.events.len() {
            // O(1) under the stripe: the writers get the spare's capacity back.
            std::mem::swap(&mut queue.events, &mut *spare);
            self.state.dirty[index].store(false, Ordering::Relaxed);
        } else {
            spare.extend(queue.events.drain(..taken));
        }
        drop(stripe);
        into.extend(spare.drain(..));
        taken
    }

    /// Yields up to [`IDLE_SPINS`] times; true as soon as a stripe is dirty.
    fn spin_until_dirty(&self) -> bool {
        for _ in 0..IDLE_SPINS {
            yield_now();
            if self
                .state
                .dirty
                .iter()
                .any(|flag| flag.load(Ordering::Relaxed))
            {
                return true;
            }
        }
        false
    }

    fn sleep_until_woken(&self, timeout: Option<Duration>) {
        let state = &self.state;
        let mut sleep = state.lock_sleep();
        if !sleep.wake_pending {
            sleep = match timeout {
                None => state.readable.wait(sleep),
                Some(timeout) => state
                    .readable
                    .wait_timeout(sleep, timeout)
                    .map(|(guard, _)| guard)
                    .map_err(|poisoned| PoisonError::new(poisoned.into_inner().0)),
            }
            .unwrap_or_else(PoisonError::into_inner);
        }
        sleep.wake_pending = false;
    }

    /// Drops this subscriber's queues from every stripe, freeing their events at once.
    fn drop_queues(&self) {
        for stripe in self.stripes.iter() {
            let mut stripe = lock(stripe);
            stripe.queues.retain(|queue| {
                let mine = Arc::ptr_eq(&queue.subscriber, &self.state);
                if mine {
                    self.state.count_missed(queue.events.len() as u64);
                }
                !mine
            });
        }
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
        self.state.reader_gone.store(true, Ordering::SeqCst);
        self.drop_queues();
        self.state.wake_all();
    }
}

impl<K, V> fmt::Debug for Subscription<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("queued", &self.queued())
            .field("backpressure", &self.state.backpressure)
            .field("lagged", &self.state.lagged.load(Ordering::Relaxed))
            .finish()
    }
}
