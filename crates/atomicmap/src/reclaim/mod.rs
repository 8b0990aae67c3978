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
//!   `next_table` re-reads the root for this reason. Where no such re-check is possible (an
//!   old table's slots keep the words of keys that a successor now owns), the owner is retired
//!   with a birth no later than the old table's, which every reader holding that table covers
//!   (`AtomicMap`'s `Table::reclamation_birth`).
//! * Unpin is a release store of `INACTIVE`, and a pin's store of `lower` is a release store
//!   too; the reclaimer reads `lower` with acquire. Whichever later value it reads (`INACTIVE`
//!   or a later pin's epoch), everything the reader did with an object during the earlier pin
//!   happens before the reclaimer frees it.
//!
//! # Large garbage (retired tables)
//! A table is too big to wait in one thread's bag: that thread may go idle for good, and the
//! table with it. Large objects go to a list the collector shares instead, and **any** thread
//! that unpins while the list is not empty may free them (one relaxed load per unpin tells it
//! whether to look). The first look after a retirement is a full pass (heavy barrier, retire
//! epoch assigned). Later looks at an object whose retire epoch is already assigned skip the
//! barrier: the pass that assigned it ran after the unlink and after its heavy barrier, so any
//! pin that can hold the object was visible to that pass with `lower <= retire`, and pins that
//! start later cannot load the unlinked pointer (the barrier made the unlink visible to every
//! thread). Re-reading the reservations is then enough: a participant now `INACTIVE`, or pinned
//! from a later epoch, has ended the pin that held the object (see the release/acquire above),
//! and one still showing `lower <= retire` keeps it held, conservatively.
//!
//! When to look: a thread looks after 1, 2, 4, ... unpins (up to [`MAX_UNPINS_PER_LARGE_LOOK`]),
//! so a long pin that holds a table back costs the others little. Only a pin with
//! `lower <= retire` can hold a waiting object, so such a pin looks as it ends, whatever its
//! countdown: the last holder's unpin then frees the table, even when no operation follows (the
//! end of a burst of inserts, with its holders preempted mid-operation). The newest retire epoch
//! is read relaxed, as a hint: a pin it misses (one that ends before the first look assigns the
//! epoch) still looks on its countdown, so it decides how soon a table is freed, never whether
//! it may be.
//!
//! # Cost
//! Pin and unpin are two stores and a compiler fence (a thread-local index finds the record);
//! unpin also loads the shared count of waiting large garbage, which changes rarely. A
//! protected load adds one load of the shared epoch, which changes rarely too. Reclamation
//! passes run in the retiring thread every [`SCAN_THRESHOLD`] retirements and cost one
//! `membarrier` system call plus a walk of the reservations.
//!
//! # Entry counts
//! The records also carry each thread's count of entries added minus removed
//! ([`Guard::count_entries`]): every (structure, thread) pair already has a record of its own,
//! so a structure's length costs its writers a plain load and store, and its readers a walk of
//! the records ([`Collector::entries`]).
//!
//! # Garbage counts
//! Each retired object may carry its size ([`Guard::retire_sized`]). A thread's record sums the
//! sizes of the objects in its own bag, changed only by that thread (it retires into its bag
//! and frees from it), with a relaxed load and store like the entry count; the shared large
//! list keeps its own sum, written under its lock. [`Collector::garbage_bytes`] adds them up:
//! each part is current, the sum is approximate while threads retire and free. Relaxed is
//! enough because the figure is only reported, never used to decide what to free.
//!
//! # A stalled thread
//! A thread that stops *outside* an operation holds nothing back. A thread that stops *inside*
//! one keeps its reservation `[lower, upper]`, which blocks only objects alive during that
//! interval: objects born after `upper` are freed as usual. Memory held back by one stalled
//! reader is therefore bounded by what was live (or awaiting a pass) when it stalled, never by
//! what happens afterwards. This is the bound that plain epoch-based reclamation lacks.
//!
//! # Leftovers
//! Small garbage still waiting in a thread's bag when the thread exits stays with the record and
//! is freed by the next thread to take that index, or when the collector (its map) is dropped.
//! Large garbage never waits for one thread: any thread's unpin can free it.

mod barrier;
mod participants;

use std::marker::PhantomData;
use std::sync::TryLockError;

use crate::sync::{AtomicU64, AtomicUsize, CachePadded, Mutex, MutexGuard, Ordering};
use participants::{Participant, Participants, INACTIVE};

/// A reclamation pass runs when a thread has retired this many objects since its last pass.
/// Each pass costs a `membarrier`, which interrupts every other core of the process (an
/// inter-processor interrupt, a VM exit on a virtual machine), so passes must stay rare next
/// to retirements. The price is up to this many replaced objects per thread, plus those a pass
/// found still held, waiting for the next pass.
pub(crate) const SCAN_THRESHOLD: usize = 1024;

/// While large garbage waits, a thread looks at it after 1, 2, 4, ... unpins, up to once per
/// this many: prompt whether threads pin per operation or hold one pin for a batch, and cheap
/// while a long pin holds a table back (a look that finds it still held costs a walk of the
/// reservations, no barrier).
const MAX_UNPINS_PER_LARGE_LOOK: u32 = 64;

/// A thread ticks the epoch after this many births; objects born in one tick share an epoch.
const BIRTHS_PER_TICK: u32 = 32;

/// Marks a retired object whose retire epoch the next pass will assign.
const UNASSIGNED: u64 = u64::MAX;

/// An unlinked object awaiting its free.
pub(crate) struct Retired {
    object: *mut (),
    /// The object's size for the garbage count; 0 when retired without one.
    bytes: usize,
    free: unsafe fn(*mut ()),
    birth: u64,
    retire: u64,
}

// SAFETY: a retired object is no longer reachable from the structure, so freeing it on another
// thread is sound as long as `free(object)` may run on any thread, which `Guard::retire`'s
// contract requires.
unsafe impl Send for Retired {}

/// Reclamation domain of one data structure.
pub(crate) struct Collector {
    epoch: CachePadded<AtomicU64>,
    participants: Participants,
    /// Retired large objects (tables), freed by whichever thread finds them unheld.
    large: Mutex<Vec<Retired>>,
    /// How many objects `large` holds, written under its lock; an unpin that reads 0 skips it.
    large_waiting: CachePadded<AtomicUsize>,
    /// The bytes of the objects `large` holds, written under its lock.
    large_bytes: AtomicUsize,
    /// The newest retire epoch assigned to an object in `large`, written under its lock: a pin
    /// that began no later may be what holds one, so its unpin looks at once.
    newest_large_retire: AtomicU64,
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
            large: Mutex::new(Vec::new()),
            large_waiting: CachePadded(AtomicUsize::new(0)),
            large_bytes: AtomicUsize::new(0),
            newest_large_retire: AtomicU64::new(0),
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
        me.lower.store(now, Ordering::Release);
        me.upper.store(now, Ordering::Relaxed);
        me.cached_upper.set(now);
        me.pinned_at.set(now);
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

    /// At least the number of threads that can be inside an operation on this collector's
    /// structure now or that will start one without observing (through a `SeqCst` load) a
    /// `SeqCst` store the caller made before this call.
    pub(crate) fn thread_bound(&self) -> usize {
        self.participants.bound()
    }

    /// The sum of every thread's [`Guard::count_entries`]: exact when no count is in flight.
    pub(crate) fn entries(&self) -> i64 {
        self.participants
            .iter()
            .map(|participant| participant.entries.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add) as i64
    }

    /// Bytes retired with a size ([`Guard::retire_sized`]) and not yet freed, summed over every
    /// thread's bag and the large list (see "Garbage counts").
    pub(crate) fn garbage_bytes(&self) -> usize {
        let small = self
            .participants
            .iter()
            .map(|participant| participant.garbage_bytes.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add);
        (small as usize).wrapping_add(self.large_bytes.load(Ordering::Relaxed))
    }

    /// Frees every object of `bag` whose lifetime no reservation intersects; returns the bytes
    /// freed.
    fn reclaim(&self, bag: &mut Vec<Retired>) -> usize {
        assign_retire_epochs(bag, self.pass_epoch());
        free_all(self.take_unheld(bag))
    }

    /// Starts a pass: a heavy barrier, then the retire epoch for every object retired so far
    /// that has none.
    fn pass_epoch(&self) -> u64 {
        barrier::heavy();
        // Ticking here makes every pin that starts after this pass reserve from a later epoch
        // than the retire epochs it assigns, so an object is freed by the first pass after its
        // last reader lets go (not only after enough births moved the epoch along).
        self.epoch.fetch_add(1, Ordering::AcqRel)
    }

    /// Removes from `bag` (every object in it with a retire epoch, assigned by a pass that came
    /// after its unlink) the objects whose lifetime no current reservation intersects.
    fn take_unheld(&self, bag: &mut Vec<Retired>) -> Vec<Retired> {
        let mut reservations: Vec<(u64, u64)> = Vec::new();
        for participant in self.participants.iter() {
            let lower = participant.lower.load(Ordering::Acquire);
            if lower != INACTIVE {
                reservations.push((lower, participant.upper.load(Ordering::Acquire)));
            }
        }
        let mut unheld = Vec::new();
        let mut index = 0;
        while index < bag.len() {
            let retired = &bag[index];
            debug_assert_ne!(retired.retire, UNASSIGNED);
            let held = reservations
                .iter()
                .any(|&(lower, upper)| retired.birth <= upper && lower <= retired.retire);
            if held {
                index += 1;
            } else {
                unheld.push(bag.swap_remove(index));
            }
        }
        unheld
    }

    /// Looks at the shared large garbage: a full pass if some object in it has no retire epoch
    /// yet, otherwise a re-read of the reservations (see "Large garbage" above for why that
    /// needs no barrier). A full pass also covers `own_bag`, the caller's small garbage, since
    /// its barrier is paid for anyway. Frees what is unheld after releasing the list, so that
    /// the objects' destructors (user code, for a table's keys and values) never run under its
    /// lock. Returns whether large garbage is still waiting, and the bytes freed from
    /// `own_bag`; `None` if another thread is looking.
    fn look_at_large_garbage(&self, own_bag: &mut Vec<Retired>) -> Option<(bool, usize)> {
        let mut large = match self.large.try_lock() {
            Ok(large) => large,
            Err(TryLockError::Poisoned(poison)) => poison.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        let mut own_unheld = Vec::new();
        if large.iter().any(|retired| retired.retire == UNASSIGNED) {
            let now = self.pass_epoch();
            assign_retire_epochs(&mut large, now);
            self.newest_large_retire.store(now, Ordering::Relaxed);
            assign_retire_epochs(own_bag, now);
            own_unheld = self.take_unheld(own_bag);
        }
        let unheld = self.take_unheld(&mut large);
        self.large_waiting.store(large.len(), Ordering::Relaxed);
        self.large_bytes
            .store(total_bytes(&large), Ordering::Relaxed);
        let still_waiting = !large.is_empty();
        drop(large);
        free_all(unheld);
        Some((still_waiting, free_all(own_unheld)))
    }

    fn lock_large(&self) -> MutexGuard<'_, Vec<Retired>> {
        self.large
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Gives every object of `bag` that has no retire epoch the epoch `now` of the current pass.
fn assign_retire_epochs(bag: &mut [Retired], now: u64) {
    for retired in bag.iter_mut() {
        if retired.retire == UNASSIGNED {
            retired.retire = now;
        }
    }
}

/// The sizes of `retired` objects, summed.
fn total_bytes(retired: &[Retired]) -> usize {
    retired.iter().map(|retired| retired.bytes).sum()
}

/// Frees objects that no thread holds or can obtain any more; returns their bytes.
fn free_all(unheld: Vec<Retired>) -> usize {
    let bytes = total_bytes(&unheld);
    for retired in unheld {
        // SAFETY: `take_unheld` found no reservation intersecting the object's lifetime, so no
        // thread holds a reference to it and none can obtain one (it is unlinked); `free` is the
        // function it was retired with.
        unsafe { (retired.free)(retired.object) };
    }
    bytes
}

impl Drop for Collector {
    fn drop(&mut self) {
        // `&mut self` means no thread is inside an operation on the owning structure, so every
        // retired object is unreachable.
        let large = self
            .large
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner());
        for retired in large.drain(..) {
            // SAFETY: unreachable (above) and retired with this `free`.
            unsafe { (retired.free)(retired.object) };
        }
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
            match self.try_protect(&load) {
                Ok(value) => return value,
                Err(now) => self.cover(now),
            }
        }
    }

    /// One attempt of [`protect`](Self::protect), which never raises the reservation: the
    /// result of `load` if the reservation already covers the epoch it was read at, else that
    /// epoch. For a short path that must make no call; the caller falls back to `protect`.
    #[inline]
    pub(crate) fn try_protect<T: Copy>(&self, load: impl Fn() -> T) -> Result<T, u64> {
        let value = load();
        let now = self.collector.epoch.load(Ordering::Acquire);
        if now <= self.me.cached_upper.get() {
            Ok(value)
        } else {
            Err(now)
        }
    }

    /// Raises the reservation's upper bound to `epoch`. Out of line: it runs once per epoch
    /// tick a pin sees, and inlined into every protected load it would hold registers (and
    /// the first-use registration of the expedited barrier) in each lookup's probe loop.
    #[cold]
    #[inline(never)]
    fn cover(&self, epoch: u64) {
        if epoch > self.me.cached_upper.get() {
            self.me.cached_upper.set(epoch);
            self.me.upper.store(epoch, Ordering::Relaxed);
            barrier::light();
        }
    }

    /// Adds `delta` to the structure's entry count (see [`Collector::entries`]). The count lives
    /// in this thread's own record, so this is a plain load and store, not a contended (or
    /// even uncontended, pipeline-serialising) atomic add.
    #[inline]
    pub(crate) fn count_entries(&self, delta: i64) {
        let entries = &self.me.entries;
        // Two's complement: adding the bit pattern of a negative delta subtracts.
        let count = entries.load(Ordering::Relaxed).wrapping_add(delta as u64);
        entries.store(count, Ordering::Relaxed);
    }

    /// Adds `delta` (two's complement, so a negated size subtracts) to this thread's garbage
    /// count: a plain load and store, as in [`count_entries`](Self::count_entries).
    #[inline]
    fn count_garbage(&self, delta: u64) {
        let bytes = &self.me.garbage_bytes;
        bytes.store(
            bytes.load(Ordering::Relaxed).wrapping_add(delta),
            Ordering::Relaxed,
        );
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
    /// most once, and `free(object)` is sound once no thread holds it, on whichever thread
    /// runs the pass that frees it (the object's type is `Send`, or owned data of a structure
    /// that is).
    pub(crate) unsafe fn retire(&self, object: *mut (), birth: u64, free: unsafe fn(*mut ())) {
        // SAFETY: forwarded from our caller.
        unsafe { self.retire_sized(object, 0, birth, free) }
    }

    /// Like [`retire`](Self::retire), counting the object's `bytes` in the collector's
    /// [garbage figure](Collector::garbage_bytes) until it is freed.
    ///
    /// # Safety
    /// As for [`retire`](Self::retire).
    pub(crate) unsafe fn retire_sized(
        &self,
        object: *mut (),
        bytes: usize,
        birth: u64,
        free: unsafe fn(*mut ()),
    ) {
        // SAFETY: this thread holds the record's index, so the bag is ours (see `Participant`).
        let bag = unsafe { &mut *self.me.bag.get() };
        bag.push(Retired {
            object,
            bytes,
            free,
            birth,
            retire: UNASSIGNED,
        });
        self.count_garbage(bytes as u64);
        if bag.len() >= self.me.next_pass_at.get() {
            let freed = self.collector.reclaim(bag);
            self.count_garbage((freed as u64).wrapping_neg());
            // Counted from what the pass kept: objects still held by a pin that began before
            // the pass (a stalled reader) are scanned again only after as many more
            // retirements as were kept, and at least SCAN_THRESHOLD. A pass costs O(bag), so
            // this keeps a retirement amortised O(1) however much a reader holds back, and the
            // bag at most twice what is held plus SCAN_THRESHOLD. (A pass at every retirement
            // once the held objects passed a fixed threshold made a writer that keeps its own
            // pin quadratic.)
            let kept = bag.len();
            self.me.next_pass_at.set(kept + kept.max(SCAN_THRESHOLD));
            // A burst held back by a reader that has since moved on leaves a large, mostly
            // empty bag: give the memory back.
            if bag.capacity() > 4 * (kept + kept.max(SCAN_THRESHOLD)) {
                bag.shrink_to(2 * (kept + kept.max(SCAN_THRESHOLD)));
            }
        }
    }

    /// Like [`retire`](Self::retire), for an object large enough (a whole table) that it should
    /// wait neither for a bag to fill nor for this thread: it goes to the collector's shared
    /// list, and the next unpin of any thread that finds it unheld frees it (see "Large
    /// garbage"). This thread looks first, at its next unpin.
    ///
    /// # Safety
    /// As for [`retire`](Self::retire).
    pub(crate) unsafe fn retire_large(
        &self,
        object: *mut (),
        bytes: usize,
        birth: u64,
        free: unsafe fn(*mut ()),
    ) {
        let mut large = self.collector.lock_large();
        large.push(Retired {
            object,
            bytes,
            free,
            birth,
            retire: UNASSIGNED,
        });
        self.collector
            .large_waiting
            .store(large.len(), Ordering::Relaxed);
        self.collector
            .large_bytes
            .store(total_bytes(&large), Ordering::Relaxed);
        drop(large);
        self.me.unpins_until_large_look.set(1);
        self.me.large_look_interval.set(1);
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

    /// Clears the reservation of an outermost pin and looks at waiting large garbage when due.
    #[inline]
    fn unpin(&self) {
        self.me.lower.store(INACTIVE, Ordering::Release);
        if self.collector.large_waiting.load(Ordering::Relaxed) != 0 {
            self.large_garbage_waiting();
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
    /// Counts down this thread's unpins to its next look at the shared large garbage, and looks
    /// when the count runs out (or has not started: garbage this thread has not looked at yet),
    /// or when the pin that just ended may have held some (see "Large garbage"). We are unpinned
    /// here, so our own reservation no longer holds anything back.
    #[cold]
    fn large_garbage_waiting(&self) {
        let countdown = self.me.unpins_until_large_look.get();
        if countdown > 1 && !self.ended_pin_may_have_held_large_garbage() {
            self.me.unpins_until_large_look.set(countdown - 1);
            return;
        }
        // SAFETY: this thread's own bag, as in `retire`.
        let bag = unsafe { &mut *self.me.bag.get() };
        match self.collector.look_at_large_garbage(bag) {
            // Another thread is looking right now; ours can wait a turn.
            None => self.me.unpins_until_large_look.set(1),
            Some((still_waiting, freed)) => {
                self.count_garbage((freed as u64).wrapping_neg());
                self.large_looked(still_waiting);
            }
        }
    }

    /// Whether the pin that just ended began no later than the newest retire epoch of a large
    /// object: it may then be the last one holding it, and a look at its end frees it, where
    /// waiting out the countdown could leave a burst's last table allocated until the map is
    /// next used.
    fn ended_pin_may_have_held_large_garbage(&self) -> bool {
        self.me.pinned_at.get() <= self.collector.newest_large_retire.load(Ordering::Relaxed)
    }

    /// Schedules this thread's next look at the large garbage after one that found some
    /// `still_waiting` (backing off) or none.
    fn large_looked(&self, still_waiting: bool) {
        match still_waiting {
            false => {
                self.me.large_look_interval.set(1);
                self.me.unpins_until_large_look.set(0);
            }
            true => {
                let interval =
                    (self.me.large_look_interval.get() * 2).min(MAX_UNPINS_PER_LARGE_LOOK);
                self.me.large_look_interval.set(interval);
                self.me.unpins_until_large_look.set(interval);
            }
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

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Barrier};

    use super::*;

    /// A thread that retires while a pin holds everything back (here its own, as a writer that
    /// keeps a `MapRef` does) scans its bag at doubling sizes: a handful of passes for 10^5
    /// retirements, where a pass at every retirement past a fixed threshold made it quadratic.
    /// The epoch ticks once per pass and once per `BIRTHS_PER_TICK` births, so it counts them.
    #[test]
    fn a_bag_held_back_by_a_pin_is_scanned_at_doubling_sizes() {
        let retirements: u64 = if cfg!(miri) { 4_000 } else { 100_000 };
        let collector = Collector::new();
        let guard = collector.enter();
        let epoch_before = collector.epoch.load(Ordering::Relaxed);
        for value in 0..retirements {
            let birth = collector.birth_epoch(&guard);
            let object = Box::into_raw(Box::new(value));
            // SAFETY: a box never published, retired once, freed by `free_box` of its type.
            unsafe { guard.retire(object.cast(), birth, free_box::<u64>) };
        }
        let ticks = collector.epoch.load(Ordering::Relaxed) - epoch_before;
        let passes = ticks - retirements / u64::from(BIRTHS_PER_TICK);
        let doublings = u64::from((retirements / SCAN_THRESHOLD as u64).ilog2()) + 1;
        assert!(
            passes <= doublings + 1,
            "{passes} passes for {retirements} held retirements (doublings: {doublings})"
        );
        // SAFETY: this thread's own bag, read while no retire is running.
        let held = unsafe { &*guard.me.bag.get() }.len() as u64;
        assert_eq!(held, retirements, "the pin holds every object back");
    }

    /// Sets its flag when freed.
    struct Freed(Arc<AtomicBool>);

    impl Drop for Freed {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// A pin that starts after a large object's first look (the pass that gives it its retire
    /// epoch) does not hold it, and the end of the last pin that may frees it at once, even on a
    /// thread whose countdown puts its next look far off.
    #[test]
    fn the_last_pin_that_may_hold_a_large_object_frees_it_as_it_ends() {
        let collector = Collector::new();
        let freed = Arc::new(AtomicBool::new(false));
        let (pinned, retired) = (Barrier::new(2), Barrier::new(2));
        std::thread::scope(|s| {
            let holder = s.spawn(|| {
                let guard = collector.enter();
                guard
                    .me
                    .unpins_until_large_look
                    .set(MAX_UNPINS_PER_LARGE_LOOK);
                pinned.wait();
                retired.wait();
                drop(guard);
            });
            pinned.wait();
            {
                let guard = collector.enter();
                let birth = collector.birth_epoch(&guard);
                let object = Box::into_raw(Box::new(Freed(Arc::clone(&freed))));
                // SAFETY: a box never published, retired once, freed by `free_box` of its type.
                unsafe { guard.retire_large(object.cast(), 64, birth, free_box::<Freed>) };
            }
            assert!(!freed.load(Ordering::Relaxed), "the holder's pin holds it");
            let _late = collector.enter();
            retired.wait();
            holder.join().expect("the holder does not panic");
            assert!(
                freed.load(Ordering::Relaxed),
                "freed by the holder's unpin while a later pin is still active"
            );
        });
    }
}
