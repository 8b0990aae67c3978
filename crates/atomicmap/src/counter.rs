//! A counter that many threads update without contending on one cache line.

use crate::reclaim::thread_index;
use crate::sync::{AtomicU64, CachePadded, Ordering};

#[cfg(not(loom))]
const STRIPES: usize = 16;
#[cfg(loom)]
const STRIPES: usize = 2;

/// A signed count split into per-thread stripes: `add` is one uncontended atomic add on the
/// caller's stripe, `sum` reads every stripe. A sum taken while adds are in flight may miss some
/// of them, so it is exact only when the counter is quiescent.
pub(crate) struct StripedCounter {
    stripes: [CachePadded<AtomicU64>; STRIPES],
}

impl StripedCounter {
    pub(crate) fn new() -> Self {
        StripedCounter {
            stripes: std::array::from_fn(|_| CachePadded(AtomicU64::new(0))),
        }
    }

    #[inline]
    pub(crate) fn add(&self, delta: i64) {
        let stripe = &self.stripes[thread_index() % STRIPES];
        // Two's complement: adding the bit pattern of a negative delta subtracts.
        stripe.fetch_add(delta as u64, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> i64 {
        self.stripes
            .iter()
            .map(|stripe| stripe.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add) as i64
    }
}
