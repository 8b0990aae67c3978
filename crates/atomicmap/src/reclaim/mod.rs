//! Interval-based memory reclamation: when is it safe to free what a lock-free structure
//! unlinked?
//!
//! # The problem
//! A lock-free writer that replaces a pointer cannot free the old object at once: a reader that
//! loaded the pointer a moment earlier may still be reading it. Every map in this crate that
//! publishes heap objects through atomics (table arrays, boxed keys and values, published
//! snapshots) hands the old object to a [`Collector`] instead, which frees it once no reader can
//! hold it.
//!
//! # The algorithm (2GE interval-based reclamation, Wen et al., PPoPP 2018)
//! A global *epoch* counter ticks forward as objects are born. Every object records its
//! **birth** epoch (read when it is allocated, before it is published) and, once unlinked, gets a
//! **retire** epoch. Its lifetime is the interval `[birth, retire]`.
//!
//! A thread *pins* before touching shared memory ([`Collector::enter`] returns a [`Guard`]) and
//! publishes a *reservation* `[lower, upper]`: `lower` is the epoch when the pin began, `upper`
//! the latest epoch it has validated a load against. Every load of a pointer to a reclaimable
//! object goes through [`Guard::protect`]: load the pointer, then read the epoch; if the epoch is
//! beyond `upper`, raise `upper`, fence, and load again. So a reader holding object `o` has
//! `birth(o) <= upper` (it read an epoch after acquiring `o`, and `o`'s birth was read before
//! `o` was published) and `lower <= retire(o)` (see below).
//!
//! A reclaimer frees a retired object when, for every participant, the reservation is inactive or
//! does not intersect the object's lifetime (`upper < birth` or `retire < lower`).
//!
//! # Orderings, and why they suffice
//! * Birth to reader: an object's birth is written before the release store (or CAS) that
//!   publishes it; readers acquire the pointer and only then load the epoch, so by coherence
//!   they read an epoch `>= birth`.
//! * Reader reservation vs. reclaimer scan (store-buffering): the reader stores its reservation,
//!   issues [`barrier::light`], then loads pointers; the reclaimer has unlinked the object,
//!   issues [`barrier::heavy`], then loads the reservations. Together these act as two `SeqCst`
//!   fences, so either the reclaimer sees the reservation or the reader's load sees the unlink
//!   (and never gets the object).
//! * Retire epoch: assigned by the reclaimer as the epoch it reads *after* its heavy barrier, at
//!   the first pass that sees the object. A reader that got the object pinned before the
//!   unlink; its `lower` was read before its fence, the reclaimer's epoch after its own, so the
//!   retire epoch is `>= lower`. Choosing a later retire epoch than the unlink is always safe
//!   (it only widens the interval).
//! * The handshake above is about the location the object was unlinked from. A structure
//!   whose retired objects keep links to other objects (an old table's link to its successor)
//!   must not let a reader follow such a link to an object that may be retired without
//!   re-checking that location after its reservation covers the object: `AtomicMap`'s
//!   `next_table` re-reads the root for this reason.
//! * Unpin is a release store of `INACTIVE`; the reclaimer reads it with acquire, so everything
//!   the reader did with an object happens before the reclaimer frees it.
//!
//! # Cost
//! Pin and unpin are two stores and a compiler fence (a thread-local index finds the record).
//! A protected load adds one load of the shared epoch, which changes rarely. Reclamation passes
//! run in the retiring thread every [`SCAN_THRESHOLD`] retirements and cost one `membarrier`
//! system call plus a walk of the reservations.
//!
//! # A stalled thread
//! A thread that stops *outside* an operation holds nothing back. A thread that stops *inside*
//! one keeps its reservation `[lower, upper]`, which blocks only objects alive during that
//! interval: objects born after `upper` are freed as usual. Memory held back by one stalled
//! reader is therefore bounded by what was live (or awaiting a pass) when it stalled, never by
//! what happens afterwards. This is the bound that plain epoch-based reclamation lacks.
//!
//! # Leftovers
//! Garbage still waiting in a thread's bag when the thread exits stays with the record and is
//! freed by the next thread to take that index, or when the collector (its map) is dropped.

mod barrier;
mod participants;

pub(crate) use participants::thread_index;

use std::marker::PhantomData;

use crate::sync::{AtomicU64, CachePadded, Ordering};
use participants::{Participant, Participants, INACTIVE};

/// A reclamation pass runs when a thread's bag reaches this many objects.
pub(crate) const SCAN_THRESHOLD: usize = 64;

/// While large garbage waits, a thread retries a pass after 1, 2, 4, ... unpins, up to once per
/// this many: prompt whether threads pin per operation or hold one pin for a batch, and never
/// more than a logarithmic number of passes per retired table.
const MAX_UNPINS_PER_LARGE_RETRY: u32 = 1 << 14;

/// A thread ticks the epoch after this many births; objects born in one tick share an epoch.
const BIRTHS_PER_TICK: u32 = 32;

/// Marks a retired object whose retire epoch the next pass will assign.
const UNASSIGNED: u64 = u64::MAX;

/// An unlinked object awaiting its free.
pub(crate) struct Retired {
    object: *mut (),
    free: unsafe fn(*mut ()),
    birth: u64,
    retire: u64,
}

// SAFETY: a retired object is no longer reachable from the structure, so freeing it on another
// thread is sound as long as the object's type is `Send`, which `Guard::retire` requires.
unsafe impl Send for Retired {}

/// Reclamation domain of one data structure.
pub(crate) struct Collector {
    epoch: CachePadded<AtomicU64>,
    participants: Participants,
}

impl Default for Collector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector {
    pub(crate) fn new() -> Self {
        Collector {
            epoch: CachePadded(AtomicU64::new(1)),
            participants: Participants::new(),
        }
    }

    /// Pins the calling thread until the guard drops. Pins nest; only the outermost one
    /// publishes a reservation.
    #[inline]
    pub(crate) fn enter(&self) -> Guard<'_> {
        let me = self.participants.local();
        let depth = me.depth.get();
        if depth == 0 {
            self.reserve(me);
        }
        me.depth.set(depth + 1);
        Guard {
            collector: self,
            me,
            _not_send: PhantomData,
        }
    }

    /// Publishes the reservation of an outermost pin.
    #[inline]
    fn reserve(&self, me: &Participant) {
        let now = self.epoch.load(Ordering::Acquire);
        me.lower.store(now, Ordering::Relaxed);
        me.upper.store(now, Ordering::Relaxed);
        me.cached_upper.set(now);
        barrier::light();
    }

    /// The birth epoch for an object about to be published. Call it before the publishing
    /// store, with a guard held. The guard's reservation is widened to cover the birth, so the
    /// caller may keep using the object after publishing it even if another thread unlinks it.
    pub(crate) fn birth_epoch(&self, guard: &Guard<'_>) -> u64 {
        let births = guard.me.births.get() + 1;
        let birth = if births >= BIRTHS_PER_TICK {
            guard.me.births.set(0);
            self.epoch.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            guard.me.births.set(births);
            self.epoch.load(Ordering::Acquire)
        };
        guard.cover(birth);
        birth
    }

    /// Frees every object of `bag` whose lifetime no reservation intersects.
    fn reclaim(&self, bag: &mut Vec<Retired>) {
        barrier::heavy();
        // Ticking here makes every pin that starts after this pass reserve from a later epoch
        // than the retire epochs assigned below, so an object is freed by the first pass after
        // its last reader lets go (not only after enough births moved the epoch along).
        let now = self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut reservations: Vec<(u64, u64)> = Vec::new();
        for participant in self.participants.iter() {
            let lower = participant.lower.load(Ordering::Acquire);
            if lower != INACTIVE {
                reservations.push((lower, participant.upper.load(Ordering::Acquire)));
            }
        }
        bag.retain_mut(|retired| {
            if retired.retire == UNASSIGNED {
                retired.retire = now;
            }
            let held = reservations
                .iter()
                .any(|&(lower, upper)| retired.birth <= upper && lower <= retired.retire);
            if !held {
                // SAFETY: no reservation intersects the object's lifetime, so no thread holds a
                // reference to it and none can obtain one (it is unlinked); `free` is the
                // function it was retired with.
                unsafe { (retired.free)(retired.object) };
            }
            held
        });
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // `&mut self` means no thread is inside an operation on the owning structure, so every
        // retired object is unreachable.
        for participant in self.participants.iter() {
            // SAFETY: exclusive access to the collector, see above.
            let bag = unsafe { &mut *participant.bag.get() };
            for retired in bag.drain(..) {
                // SAFETY: unreachable (above) and retired with this `free`.
                unsafe { (retired.free)(retired.object) };
            }
        }
    }
}

/// Proof that the calling thread is pinned in a collector.
pub(crate) struct Guard<'c> {
    collector: &'c Collector,
    me: &'c Participant,
    /// The reservation belongs to this thread's record.
    _not_send: PhantomData<*mut ()>,
}

impl Guard<'_> {
    /// Runs `load` (a load of a pointer to a reclaimable object) until the reservation covers
    /// the epoch at which the result was read, and returns that result. Whatever object the
    /// result points to stays allocated until this guard drops.
    #[inline]
    pub(crate) fn protect<T: Copy>(&self, load: impl Fn() -> T) -> T {
        loop {
            let value = load();
            let now = self.collector.epoch.load(Ordering::Acquire);
            if now <= self.me.cached_upper.get() {
                return value;
            }
            self.cover(now);
        }
    }

    /// Raises the reservation's upper bound to `epoch`.
    fn cover(&self, epoch: u64) {
        if epoch > self.me.cached_upper.get() {
            self.me.cached_upper.set(epoch);
            self.me.upper.store(epoch, Ordering::Relaxed);
            barrier::light();
        }
    }

    /// Holds back everything retired from the start of this pin until the outermost pin ends,
    /// whatever its birth: plain epoch-based reclamation for this one pin. For a reader of
    /// pointers copied out of the structure (a snapshot's image), which `protect` cannot
    /// validate: any object reachable at some moment during the pin stays allocated.
    pub(crate) fn hold_retired(&self) {
        self.cover(u64::MAX);
    }

    /// Hands an unlinked object to the collector.
    ///
    /// # Safety
    /// `object` is no longer reachable from the structure (every pointer to it was overwritten
    /// before this call), was born at `birth` (from [`Collector::birth_epoch`]), is retired at
    /// most once, and `free(object)` is sound once no thread holds it.
    pub(crate) unsafe fn retire(&self, object: *mut (), birth: u64, free: unsafe fn(*mut ())) {
        // SAFETY: this thread holds the record's index, so the bag is ours (see `Participant`).
        let bag = unsafe { &mut *self.me.bag.get() };
        bag.push(Retired {
            object,
            free,
            birth,
            retire: UNASSIGNED,
        });
        if bag.len() >= SCAN_THRESHOLD {
            self.collector.reclaim(bag);
        }
    }

    /// Like [`retire`](Self::retire), for an object large enough (a whole table) that it should
    /// not wait for the bag to fill: a pass runs as soon as this thread unpins, and again with
    /// exponential backoff (see [`MAX_UNPINS_PER_LARGE_RETRY`]) while the object is still held.
    ///
    /// # Safety
    /// As for [`retire`](Self::retire).
    pub(crate) unsafe fn retire_large(
        &self,
        object: *mut (),
        birth: u64,
        free: unsafe fn(*mut ()),
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { self.retire(object, birth, free) };
        self.me.unpins_until_pass.set(1);
        self.me.large_retry_interval.set(1);
    }

    /// Ends and restarts the pin if it is the thread's outermost one, so that a long-lived guard
    /// stops holding back what was retired since it began. `&mut self` proves nothing this guard
    /// protected is still borrowed.
    pub(crate) fn refresh(&mut self) {
        if self.me.depth.get() == 1 {
            self.unpin();
            self.collector.reserve(self.me);
        }
    }

    /// Clears the reservation of an outermost pin and runs any pass large garbage asks for.
    #[inline]
    fn unpin(&self) {
        self.me.lower.store(INACTIVE, Ordering::Release);
        let countdown = self.me.unpins_until_pass.get();
        if countdown > 0 {
            self.large_garbage_due(countdown);
        }
    }

    /// Runs a reclamation pass over this thread's garbage now.
    pub(crate) fn flush(&self) {
        // SAFETY: this thread's own bag, as in `retire`.
        let bag = unsafe { &mut *self.me.bag.get() };
        self.collector.reclaim(bag);
    }
}

impl Drop for Guard<'_> {
    #[inline]
    fn drop(&mut self) {
        let depth = self.me.depth.get() - 1;
        self.me.depth.set(depth);
        if depth == 0 {
            self.unpin();
        }
    }
}

impl Guard<'_> {
    #[cold]
    fn large_garbage_due(&self, countdown: u32) {
        if countdown > 1 {
            self.me.unpins_until_pass.set(countdown - 1);
            return;
        }
        // SAFETY: this thread's own bag, as in `retire`; we are unpinned, so our own
        // reservation no longer holds anything back.
        let bag = unsafe { &mut *self.me.bag.get() };
        self.collector.reclaim(bag);
        if bag.is_empty() {
            self.me.unpins_until_pass.set(0);
        } else {
            let interval = (self.me.large_retry_interval.get() * 2).min(MAX_UNPINS_PER_LARGE_RETRY);
            self.me.large_retry_interval.set(interval);
            self.me.unpins_until_pass.set(interval);
        }
    }
}

/// Frees a `Box<T>` that was turned into a raw pointer; the `free` argument of [`Guard::retire`]
/// for boxed objects.
///
/// # Safety
/// `object` came from `Box::<T>::into_raw` and is freed once.
pub(crate) unsafe fn free_box<T>(object: *mut ()) {
    // SAFETY: guaranteed by the caller.
    drop(unsafe { Box::from_raw(object as *mut T) });
}
