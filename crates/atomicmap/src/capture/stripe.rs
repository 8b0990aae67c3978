//! The stripes: per-key serialisation of writers, and the per-stripe queues that hold each
//! subscriber's events.
//!
//! Each stripe is a mutex over one [`StripeQueue`] per subscriber. A writer publishes into
//! the queues of its key's stripe while it still holds the stripe for its commit, so
//! publishing takes no lock or atomic read-modify-write beyond the stripe's own; readers
//! collect from the stripes (module `subscriber`). A subscriber's capacity is split evenly
//! over the stripes ([`SubscriberState::stripe_capacity`]).

use std::collections::VecDeque;
use std::sync::PoisonError;

use super::event::ChangeEvent;
use super::state::{Backpressure, SubscriberState};
use crate::sync::{Arc, CachePadded, Mutex, MutexGuard};

/// Seed of the hash that picks a key's stripe. Fixed so that loom's replays pick the same
/// stripes; a hostile key set can only crowd stripes (slower writers), never break the order.
pub(crate) const STRIPE_SEED: u64 = 0x5f0c_a9e1_7b3d_2468;

/// Stripes per available core: enough that two writers rarely share one.
const STRIPES_PER_CORE: usize = 64;

/// One subscriber's events of one stripe's keys, oldest first.
pub(crate) struct StripeQueue<K, V> {
    pub(crate) subscriber: Arc<SubscriberState>,
    pub(crate) events: VecDeque<ChangeEvent<K, V>>,
}

/// What a stripe's mutex guards.
pub(crate) struct Stripe<K, V> {
    pub(crate) queues: Vec<StripeQueue<K, V>>,
}

/// All stripes of a map, shared with its subscriptions (which collect from them, also after
/// the map is gone). A `std` `Arc` even under loom: it only owns the stripes, it takes part in
/// no protocol (and loom's `Arc` cannot hold a slice).
pub(crate) type Stripes<K, V> = std::sync::Arc<[CachePadded<Mutex<Stripe<K, V>>>]>;

/// A power of two: [`STRIPES_PER_CORE`] per core, 2 under loom (small models).
pub(crate) fn new_stripes<K, V>() -> Stripes<K, V> {
    let count = if cfg!(loom) {
        2
    } else {
        let cores = std::thread::available_parallelism().map_or(4, usize::from);
        (cores * STRIPES_PER_CORE).next_power_of_two().min(1 << 14)
    };
    (0..count)
        .map(|_| CachePadded(Mutex::new(Stripe { queues: Vec::new() })))
        .collect()
}

/// The stripe of a key whose stripe hash is `hash`: its top bits, independent of the low bits
/// the backends use for their own slots.
pub(crate) fn stripe_index(hash: u64, stripe_count: usize) -> usize {
    (hash >> (u64::BITS - stripe_count.trailing_zeros()))
        .try_into()
        .unwrap_or(0)
}

/// Locks a stripe. A panic in user code (`Hash`, `Eq`, `Clone`, a closure) while a stripe was
/// held leaves nothing half-done in it: the backend's operations are atomic and a queue is
/// only pushed to, drained or dropped whole, so a poisoned stripe is still consistent.
pub(crate) fn lock<K, V>(stripe: &Mutex<Stripe<K, V>>) -> MutexGuard<'_, Stripe<K, V>> {
    stripe.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K, V> StripeQueue<K, V> {
    /// A new subscriber's empty queue.
    pub(crate) fn new(subscriber: &Arc<SubscriberState>) -> Self {
        StripeQueue {
            subscriber: Arc::clone(subscriber),
            events: VecDeque::new(),
        }
    }
}

impl<K, V> Stripe<K, V> {
    /// Whether a mutation's event would go anywhere (the event is not even built otherwise).
    pub(crate) fn wants_events(&self) -> bool {
        !self.queues.is_empty()
    }

    /// A waiting subscriber whose queue in this stripe is full, with the reader's drain count
    /// seen now: the writer must not commit until that subscriber makes room.
    pub(crate) fn full_waiting_subscriber(&self) -> Option<(Arc<SubscriberState>, u64)> {
        self.queues
            .iter()
            .find(|queue| {
                queue.subscriber.backpressure() == Backpressure::Wait
                    && queue.subscriber.is_live()
                    && queue.events.len() >= queue.subscriber.stripe_capacity()
            })
            .map(|queue| {
                let drains = queue.subscriber.drains();
                (Arc::clone(&queue.subscriber), drains)
            })
    }

    /// Appends `event` to every live subscriber's queue of stripe `index`, and drops the
    /// queues of subscribers that will never read again. A lagging subscriber whose queue is
    /// full is marked lagged and loses its queue. Wakes idle readers.
    pub(crate) fn publish(&mut self, index: usize, event: Option<ChangeEvent<K, V>>)
    where
        K: Clone,
        V: Clone,
    {
        let Some(event) = event else { return };
        let mut event = Some(event);
        let last = self.queues.len().saturating_sub(1);
        let mut position = 0;
        self.queues.retain_mut(|queue| {
            let this = if position == last {
                event.take()
            } else {
                event.clone()
            };
            position += 1;
            let Some(this) = this else { return true };
            let subscriber = &queue.subscriber;
            if !subscriber.is_live() {
                subscriber.count_missed(queue.events.len() as u64 + 1);
                return false;
            }
            if queue.events.len() >= subscriber.stripe_capacity() {
                // A waiting subscriber had room when this writer checked under the same hold
                // of the stripe, so only a lagging one can be full here.
                subscriber.mark_lagged(queue.events.len() as u64 + 1);
                return false;
            }
            queue.events.push_back(this);
            subscriber.mark_dirty(index);
            true
        });
    }
}
