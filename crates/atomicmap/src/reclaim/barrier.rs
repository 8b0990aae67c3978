//! Asymmetric memory barriers.
//!
//! The reclamation protocol needs a store→load ordering on both sides of a Dekker-style
//! handshake: a reader stores its reservation and then loads shared pointers, while a reclaimer
//! unlinks an object and then loads the reservations. Each side would normally issue a full
//! `fence(SeqCst)`. Readers run millions of times per second and reclaimers rarely, so on Linux
//! the cost is moved entirely to the reclaimer: [`light`] is only a compiler fence, and [`heavy`]
//! calls `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which makes every running thread of the
//! process execute a full barrier before it returns. Together they give the same guarantee as a
//! pair of `SeqCst` fences (this is the technique of liburcu's "memb" flavour and folly's
//! asymmetric fences).
//!
//! When `membarrier` is unavailable (old kernel, seccomp, not Linux) or under loom and Miri,
//! which cannot see a system call, both sides fall back to `fence(SeqCst)`.

use crate::sync::{fence, Ordering};

/// The reader side: cheap, called on every pin and on every reservation update.
#[inline]
pub(crate) fn light() {
    if expedited::available() {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The reclaimer side: expensive, called once per reclamation pass.
pub(crate) fn heavy() {
    if !expedited::heavy() {
        fence(Ordering::SeqCst);
    }
}

#[cfg(all(target_os = "linux", not(loom), not(miri)))]
mod expedited {
    use std::sync::atomic::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const AVAILABLE: u8 = 1;
    const UNAVAILABLE: u8 = 2;

    // From <linux/membarrier.h>.
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

    fn membarrier(cmd: libc::c_long) -> bool {
        // SAFETY: membarrier takes two integer arguments and touches no user memory.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) == 0 }
    }

    /// Whether readers may rely on [`heavy`] instead of a fence of their own.
    ///
    /// Registration happens once per process, before any reader first relies on it: a reader
    /// that sees `UNKNOWN` registers (or learns it cannot) and only then answers. A reader
    /// that answers `true` has therefore seen `AVAILABLE`, which is stored only after the
    /// registration succeeded, and every later `heavy` call issues the barrier.
    #[inline]
    pub(super) fn available() -> bool {
        match STATE.load(Ordering::Acquire) {
            AVAILABLE => true,
            UNAVAILABLE => false,
            _ => register(),
        }
    }

    #[cold]
    fn register() -> bool {
        let ok = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
        let state = if ok { AVAILABLE } else { UNAVAILABLE };
        // Registration is idempotent, so racing registrations all store the same answer.
        STATE.store(state, Ordering::Release);
        ok
    }

    /// Issues the process-wide barrier; false when the caller must fence itself instead.
    pub(super) fn heavy() -> bool {
        // A reader that chose the light path has registered, so `available` is `true` here
        // whenever any reader skipped its fence; if no reader did, a plain fence suffices.
        available() && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
    }
}

#[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
mod expedited {
    #[inline]
    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn heavy() -> bool {
        false
    }
}
