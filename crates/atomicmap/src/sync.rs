//! The synchronisation primitives every protocol in this crate is written against.
//!
//! Under `--cfg loom` they are loom's model-checked versions, so the code that ships is the code
//! the loom models explore; otherwise they are `std`'s. Only the primitives a protocol uses are
//! re-exported, so a new protocol adds what it needs here.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
#[cfg(loom)]
pub(crate) use loom::thread::yield_now;
#[cfg(loom)]
pub(crate) use loom::thread_local;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;
#[cfg(not(loom))]
pub(crate) use std::thread_local;

/// Pads and aligns a value to its own cache-line pair, so that two hot atomics never share a
/// line (adjacent-line prefetching on x86 makes 128 bytes the unit that matters).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// How a thread waits for another thread's step that it cannot do itself: a successor table
/// being allocated, or migration chunks other threads own. It yields a few times, then sleeps
/// in short steps. A thread that only yields stays runnable, and with more threads than cores
/// the thread it waits for gets one turn in as many as there are waiters; sleeping leaves it
/// the cores. A step of 50 µs is short next to what is waited for (a large table's allocation
/// takes milliseconds), so a waiter on an idle machine overshoots little.
pub(crate) struct Backoff {
    waits: u32,
}

impl Backoff {
    const YIELDS: u32 = 4;

    pub(crate) fn new() -> Backoff {
        Backoff { waits: 0 }
    }

    /// Waits one step; call it once per failed check of the awaited condition.
    pub(crate) fn wait(&mut self) {
        self.waits = self.waits.saturating_add(1);
        if cfg!(loom) || self.waits <= Self::YIELDS {
            yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
}
