//! Memory measurements: a counting global allocator (allocs/op, B/op, live heap) and the
//! process's peak resident memory.
//!
//! The allocator counts into per-thread stripes (each on its own cache line) so that
//! counting does not make allocating threads contend with each other; a reading sums the
//! stripes. Counts are process-wide: the runner reads them only while the main thread is
//! parked on a barrier, so they are the benchmark threads' allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Number of counter stripes; threads beyond this share stripes (still correct, just slower).
const STRIPES: usize = 64;

/// One thread's counters, alone on a cache line.
#[repr(align(128))]
struct Stripe {
    /// Calls to `alloc`, `alloc_zeroed` and `realloc`.
    allocs: AtomicU64,
    /// Bytes handed out (a `realloc` counts its new size).
    allocated: AtomicU64,
    /// Bytes given back (a `realloc` counts its old size).
    freed: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)] // used only to initialise the array below
const EMPTY_STRIPE: Stripe = Stripe {
    allocs: AtomicU64::new(0),
    allocated: AtomicU64::new(0),
    freed: AtomicU64::new(0),
};

static STRIPE_TABLE: [Stripe; STRIPES] = [EMPTY_STRIPE; STRIPES];
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` and without a destructor, so touching it never allocates (which would recurse
    // into the allocator).
    static MY_STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn my_stripe() -> &'static Stripe {
    let index = MY_STRIPE
        .try_with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES);
            }
            s.get()
        })
        // During thread teardown the slot is gone; any stripe will do.
        .unwrap_or(0);
    &STRIPE_TABLE[index]
}

/// The system allocator, counting.
pub struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so it
// upholds exactly `System`'s guarantees; the counting touches only atomics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let s = my_stripe();
        s.allocs.fetch_add(1, Ordering::Relaxed);
        s.allocated
            .fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let s = my_stripe();
        s.allocs.fetch_add(1, Ordering::Relaxed);
        s.allocated
            .fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        my_stripe()
            .freed
            .fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let s = my_stripe();
        s.allocs.fetch_add(1, Ordering::Relaxed);
        s.allocated.fetch_add(new_size as u64, Ordering::Relaxed);
        s.freed.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// A reading of the allocation counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllocCounts {
    /// Allocation calls so far.
    pub allocs: u64,
    /// Bytes allocated so far.
    pub allocated: u64,
    /// Bytes freed so far.
    pub freed: u64,
}

impl AllocCounts {
    /// The counters now, summed over all threads.
    pub fn now() -> Self {
        let mut c = AllocCounts::default();
        for s in &STRIPE_TABLE {
            c.allocs += s.allocs.load(Ordering::Relaxed);
            c.allocated += s.allocated.load(Ordering::Relaxed);
            c.freed += s.freed.load(Ordering::Relaxed);
        }
        c
    }

    /// Bytes currently live on the heap (allocated minus freed). Per-stripe sums can be
    /// skewed when one thread frees what another allocated, so only the total means anything.
    pub fn live(&self) -> i64 {
        self.allocated as i64 - self.freed as i64
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &AllocCounts) -> AllocCounts {
        AllocCounts {
            allocs: self.allocs - earlier.allocs,
            allocated: self.allocated - earlier.allocated,
            freed: self.freed - earlier.freed,
        }
    }
}

/// Reset the process's peak resident set size (Linux: writing 5 to `clear_refs`), so the
/// next [`peak_rss_bytes`] covers only what follows. Returns false where unsupported.
///
/// The peak restarts from the current RSS, so memory freed by the previous map but kept by
/// the C allocator would count against the next one; with glibc it is returned first.
pub fn reset_peak_rss() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's `malloc_trim` takes no pointers and may be called at any time.
        unsafe {
            malloc_trim(0);
        }
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size of the whole process (`VmHWM`), if the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_an_allocation() {
        let before = AllocCounts::now();
        let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(1000));
        let after = AllocCounts::now();
        drop(v);
        let d = after.since(&before);
        assert!(d.allocs >= 1);
        assert!(d.allocated >= 1000);
    }
}
