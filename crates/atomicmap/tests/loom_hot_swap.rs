//! loom models of HotSwap: publication racing loads, and reclamation of replaced values.
#![cfg(loom)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use atomicmap::HotSwap;
use common::serial::check_model;
use loom::thread;

/// A value that records its drop.
struct Tracked {
    value: u32,
    drops: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// A reader loading while a writer publishes twice sees a complete value whose field
/// matches its version, versions it sees never go back, and after the cell is dropped every
/// value was dropped exactly once.
#[test]
fn publish_racing_load_and_reclamation() {
    check_model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let tracked = |value| Tracked {
            value,
            drops: Arc::clone(&drops),
        };
        let cell = Arc::new(HotSwap::new(tracked(0)));
        let reader = {
            let cell = Arc::clone(&cell);
            thread::spawn(move || {
                let first = cell.load();
                assert_eq!(u64::from(first.value), first.version());
                let first_version = first.version();
                drop(first);
                let second = cell.load_full();
                assert!(u64::from(second.value) >= first_version);
            })
        };
        cell.store(tracked(1));
        cell.store(tracked(2));
        reader.join().unwrap();
        assert_eq!(cell.load().value, 2);
        assert_eq!(cell.version(), 2);
        drop(cell);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    });
}
