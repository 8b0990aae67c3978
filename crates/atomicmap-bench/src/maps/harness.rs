//! `harness`: not a map. Its operations only pass their key to `std::hint::black_box`, so a
//! run of it times what the benchmark itself spends per operation (reading the operation,
//! making the key, dispatching on the kind, sampling latency, re-pinning) and nothing else.
//! The table's footer sets it against `LIMIT`'s time per operation.

use std::hint::black_box;

use crate::adapter::{MapAdapter, Worker};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;

/// Holds nothing: every operation is a no-op on its key.
pub struct HarnessAdapter;

/// A thread's handle on nothing.
pub struct HarnessWorker;

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for HarnessAdapter {
    type Worker<'a> = HarnessWorker;

    fn build(_capacity: Option<usize>, _hasher: S) -> Self {
        HarnessAdapter
    }

    fn worker(&self) -> HarnessWorker {
        HarnessWorker
    }
}

impl<K: BenchKey> Worker<K> for HarnessWorker {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        black_box(key);
        None
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        black_box((key, value));
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        black_box(key);
        false
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        black_box(key);
        false
    }

    fn len(&self) -> usize {
        0
    }
}
