//! Acceptance 3b, the memory half: a lagging subscriber that never reads does not make the
//! map's memory grow. A global allocator tracks live heap bytes; the same writes run with no
//! subscriber and with a stalled lagging one, and the live heap must not differ by more than
//! the subscriber's bounded buffer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use atomicmap::capture::{CapturedMap, RecvError, SubscribeOptions};

/// The system allocator, keeping a count of live heap bytes.
struct LiveBytes;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping is one atomic add,
// which neither allocates nor re-enters the allocator.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: LiveBytes = LiveBytes;

const KEYS: u64 = 1_000;
const WRITES: u64 = 200_000;
const CAPACITY: usize = 1_024;

/// Live heap bytes after `WRITES` updates of `KEYS` keys of a map that has `subscribe`d.
fn live_bytes_after_writes(map: &CapturedMap<u64, u64>) -> isize {
    for write in 0..WRITES {
        map.insert(write % KEYS, write);
    }
    LIVE.load(Ordering::Relaxed)
}

#[test]
fn a_stalled_lagging_subscriber_keeps_memory_bounded() {
    let plain: CapturedMap<u64, u64> = CapturedMap::new();
    let before_plain = LIVE.load(Ordering::Relaxed);
    let plain_growth = live_bytes_after_writes(&plain) - before_plain;
    drop(plain);

    let watched: CapturedMap<u64, u64> = CapturedMap::new();
    let stalled = watched.subscribe(SubscribeOptions::lagging(CAPACITY));
    let before_watched = LIVE.load(Ordering::Relaxed);
    let watched_growth = live_bytes_after_writes(&watched) - before_watched;

    // An unbounded queue would hold 200,000 events of 32 bytes (6.4 MB) here.
    let allowance = 64 * 1024;
    assert!(
        watched_growth - plain_growth < allowance,
        "live heap grew {watched_growth} bytes with a stalled subscriber, {plain_growth} without"
    );
    assert!(matches!(stalled.recv(), Err(RecvError::Lagged { missed }) if missed > 0));
}
