//! One participant record per (collector, thread), found without locks or hashing.
//!
//! Every thread gets a small dense index the first time it touches any collector; indexes of
//! exited threads are reused, so the number of indexes ever handed out equals the largest number
//! of threads alive at once. A collector keeps its records in buckets of doubling size (bucket
//! `b` holds `2^b` records), so index `i` lives in bucket `⌊log2(i + 1)⌋` and a lookup is two
//! loads. Buckets are installed with one CAS and never freed before the collector is dropped,
//! which is what lets a reclaimer walk every record while threads keep joining.
//!
//! A record's atomic fields are read by every thread; its other fields belong to the thread that
//! holds the record's index (see [`Participant`]). When a thread exits its index returns to the
//! pool, and the next thread to take it inherits the records (and any garbage in them): the
//! pool's mutex orders the old owner's last access before the new owner's first.

use std::cell::{Cell, UnsafeCell};
use std::ptr;

use super::Retired;
use crate::sync::{thread_local, AtomicPtr, AtomicU64, Ordering};

/// Number of buckets: enough for `2^BUCKETS - 1` concurrently live threads.
const BUCKETS: usize = 32;

/// The value of [`Participant::lower`] while the thread is not inside an operation.
pub(super) const INACTIVE: u64 = u64::MAX;

/// One thread's reservation and private state in one collector.
///
/// Aligned to 128 bytes (the unit of x86's adjacent-line prefetch), so that the records of two
/// threads, which sit side by side in a bucket, never share a cache line: every pin and unpin
/// stores to the record, and a shared line would make each thread's pin invalidate its
/// neighbour's copy.
#[repr(align(128))]
pub(crate) struct Participant {
    /// Epoch at which the current outermost pin started, or [`INACTIVE`]. Written only by the
    /// owner; read by reclaimers.
    pub(super) lower: AtomicU64,
    /// Largest epoch the owner has validated a protected load against during the current pin.
    /// Written only by the owner; read by reclaimers.
    pub(super) upper: AtomicU64,
    /// Entries this thread added to the structure minus those it removed (two's complement),
    /// for the structure's length. Written only by the owner, with a load and a store: a
    /// counter with one writer needs no read-modify-write. Read by anyone summing the length.
    pub(super) entries: AtomicU64,
    /// Bytes of the objects in `bag` that were retired with a size ([`Guard::retire_sized`]),
    /// for the structure's garbage figure. Written only by the owner, with a load and a store,
    /// as `entries` is. Read by anyone summing the garbage.
    ///
    /// [`Guard::retire_sized`]: super::Guard::retire_sized
    pub(super) garbage_bytes: AtomicU64,
    /// Owner-only: how many guards of this thread are alive (pins nest).
    pub(super) depth: Cell<u32>,
    /// Owner-only: the value last stored to `upper`, so that validating a load needs no load of
    /// our own atomic.
    pub(super) cached_upper: Cell<u64>,
    /// Owner-only: the value last stored to `lower` other than [`INACTIVE`] (the epoch the
    /// current or last outermost pin began at), so that an unpin can tell whether its pin may
    /// have held waiting large garbage without a load of our own atomic.
    pub(super) pinned_at: Cell<u64>,
    /// Owner-only: how many objects this thread has been born since it last ticked the epoch.
    pub(super) births: Cell<u32>,
    /// Owner-only: unpins left before this thread's next look at the collector's waiting large
    /// garbage; 0 when it has none in view (it looks at the next unpin that finds some).
    pub(super) unpins_until_large_look: Cell<u32>,
    /// Owner-only: the current backoff between those looks.
    pub(super) large_look_interval: Cell<u32>,
    /// Owner-only: objects retired by this thread and not yet freed.
    pub(super) bag: UnsafeCell<Vec<Retired>>,
    /// Owner-only: the bag length at which this thread runs its next reclamation pass:
    /// [`SCAN_THRESHOLD`](super::SCAN_THRESHOLD) more than the bag kept after the last one.
    pub(super) next_pass_at: Cell<usize>,
}

// SAFETY: the atomic fields are shared by design. The `Cell`/`UnsafeCell` fields are touched only
// by the thread that currently holds this record's index (every accessor goes through
// `Participants::local`, which uses the calling thread's own index), or by the collector's
// destructor, which has exclusive access; index hand-over between threads is ordered by the
// index pool's mutex.
unsafe impl Sync for Participant {}

impl Participant {
    fn new() -> Self {
        Participant {
            lower: AtomicU64::new(INACTIVE),
            upper: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            garbage_bytes: AtomicU64::new(0),
            depth: Cell::new(0),
            cached_upper: Cell::new(0),
            pinned_at: Cell::new(0),
            births: Cell::new(0),
            unpins_until_large_look: Cell::new(0),
            large_look_interval: Cell::new(1),
            bag: UnsafeCell::new(Vec::new()),
            next_pass_at: Cell::new(super::SCAN_THRESHOLD),
        }
    }
}

/// The records of one collector, indexed by thread index.
pub(super) struct Participants {
    buckets: [AtomicPtr<Participant>; BUCKETS],
    /// Unique among all collectors ever created, so a thread can cache its record per id.
    id: u64,
}

/// Source of [`Participants::id`]; not part of any protocol, so std's atomic even under loom.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Participants {
    pub(super) fn new() -> Self {
        Participants {
            buckets: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The calling thread's record, created on first use. The last record a thread used is
    /// cached with its collector's id, which skips the bucket lookup when a thread works on
    /// one map at a time.
    #[inline]
    pub(super) fn local(&self) -> &Participant {
        let (id, record) = LAST_RECORD.with(Cell::get);
        if id == self.id {
            // SAFETY: the cached record belongs to the collector with this id (ids are never
            // reused), which is alive since we are borrowing it, and records live as long as
            // their collector.
            return unsafe { &*record };
        }
        self.local_uncached()
    }

    #[cold]
    fn local_uncached(&self) -> &Participant {
        let (bucket, offset) = locate(thread_index());
        let mut records = self.buckets[bucket].load(Ordering::Acquire);
        if records.is_null() {
            records = self.install(bucket);
        }
        // SAFETY: `records` points to a live bucket of `1 << bucket` records (installed below,
        // freed only in `drop`, which needs `&mut self`), and `offset < 1 << bucket`.
        let record = unsafe { &*records.add(offset) };
        LAST_RECORD.with(|last| last.set((self.id, record)));
        record
    }

    #[cold]
    fn install(&self, bucket: usize) -> *mut Participant {
        let fresh: Box<[Participant]> = (0..1usize << bucket).map(|_| Participant::new()).collect();
        let fresh = Box::into_raw(fresh) as *mut Participant;
        // SeqCst, with the loads in `bound`: a thread whose record a `bound` missed registered
        // after it in the single total order, so its later SeqCst loads see what the caller
        // of `bound` stored before calling it.
        match self.buckets[bucket].compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::SeqCst,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` of a slice of this length just above
                // and was never shared, since our CAS failed.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, 1 << bucket)) });
                winner
            }
        }
    }

    /// How many records are installed: a bound on the threads that are using the collector
    /// (each has its own record; records are reused, never removed).
    pub(super) fn bound(&self) -> usize {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, records)| !records.load(Ordering::SeqCst).is_null())
            .map(|(bucket, _)| 1usize << bucket)
            .sum()
    }

    /// Every record installed so far.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Participant> {
        self.buckets.iter().enumerate().flat_map(|(bucket, slot)| {
            let records = slot.load(Ordering::Acquire);
            let len = if records.is_null() {
                0
            } else {
                1usize << bucket
            };
            (0..len).map(move |offset| {
                // SAFETY: as in `local`: a non-null bucket holds `len` live records.
                unsafe { &*records.add(offset) }
            })
        })
    }
}

impl Drop for Participants {
    fn drop(&mut self) {
        for (bucket, slot) in self.buckets.iter_mut().enumerate() {
            let records = slot.load(Ordering::Relaxed);
            if !records.is_null() {
                // SAFETY: installed by `install` as a boxed slice of exactly this length; `&mut
                // self` proves no thread still reads it.
                drop(unsafe {
                    Box::from_raw(ptr::slice_from_raw_parts_mut(records, 1usize << bucket))
                });
            }
        }
    }
}

/// Bucket and offset of thread index `index`.
fn locate(index: usize) -> (usize, usize) {
    let position = index + 1;
    let bucket = (usize::BITS - 1 - position.leading_zeros()) as usize;
    (bucket, position - (1 << bucket))
}

/// Hands out the smallest free index, so indexes stay dense.
static FREE_INDEXES: std::sync::Mutex<IndexPool> = std::sync::Mutex::new(IndexPool {
    next: 0,
    free: Vec::new(),
});

struct IndexPool {
    next: usize,
    free: Vec<usize>,
}

/// Owns the calling thread's index and returns it to the pool when the thread exits.
struct ThreadIndex(usize);

impl ThreadIndex {
    fn acquire() -> Self {
        let mut pool = FREE_INDEXES
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let index = pool.free.pop().unwrap_or_else(|| {
            pool.next += 1;
            pool.next - 1
        });
        ThreadIndex(index)
    }
}

impl Drop for ThreadIndex {
    fn drop(&mut self) {
        let mut pool = FREE_INDEXES
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        pool.free.push(self.0);
    }
}

thread_local! {
    static THREAD_INDEX: ThreadIndex = ThreadIndex::acquire();
    /// The collector id and record of this thread's last `local` lookup ((0, null): none).
    #[allow(
        clippy::missing_const_for_thread_local,
        reason = "loom's thread_local!, which this also compiles with, takes no const initialiser"
    )]
    static LAST_RECORD: Cell<(u64, *const Participant)> = Cell::new((0, ptr::null()));
}

#[inline]
fn thread_index() -> usize {
    THREAD_INDEX.with(|index| index.0)
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn indexes_map_to_doubling_buckets() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(1), (1, 0));
        assert_eq!(locate(2), (1, 1));
        assert_eq!(locate(3), (2, 0));
        assert_eq!(locate(6), (2, 3));
        assert_eq!(locate(7), (3, 0));
    }
}
