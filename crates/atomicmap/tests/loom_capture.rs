//! loom models of change capture's hand-off over an `AtomicMap` backend: commit, version and
//! publication racing a subscriber's registration and snapshot, and a waiting subscriber's
//! buffer handing events between a writer and the reader.
//!
//! The backend is a 4-slot `AtomicMap` with the identity hasher, and the map has 2 stripes
//! under `cfg(loom)`, so every execution lays memory out the same way.
#![cfg(loom)]

mod common;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use atomicmap::capture::{CapturedMap, SubscribeOptions, TryRecvError, Version, Versioned};
use atomicmap::AtomicMap;
use common::serial::check_model;
use common::IdentityHasher;
use loom::sync::Arc;
use loom::thread;

type Backend = AtomicMap<u8, Versioned<u8>, BuildHasherDefault<IdentityHasher>>;
type Map = CapturedMap<u8, u8, Backend>;

fn new_map() -> Arc<Map> {
    let backend = Backend::with_capacity_and_hasher(2, Default::default());
    Arc::new(CapturedMap::with_backend(backend, 0))
}

/// A writer sets one key twice while the main thread subscribes with a snapshot and then
/// writes the key itself. Two threads: with a third, loom reported the model
/// non-deterministic (likely the crate's process-wide thread-index pool; see
/// `common/serial.rs`). The snapshot plus the events, newer version
/// winning, is the final map; the key's events arrive with increasing versions; nothing is
/// lost in the gap between subscription and snapshot.
#[test]
fn snapshot_and_subscribe_racing_writers_of_one_key_has_no_gap() {
    check_model(|| {
        let map = new_map();
        map.insert(0, 1);
        let writer = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                map.insert(0, 2);
                map.insert(0, 3);
            })
        };
        // Room for every event in the key's stripe (8 over 2 stripes): this thread reads only
        // after the join, so a full buffer would rightly hold the writer back for ever.
        let (snapshot, subscription) = map.snapshot_and_subscribe(SubscribeOptions::waiting(8));
        map.insert(0, 4);
        writer.join().unwrap();
        let mut replica: HashMap<u8, (Option<u8>, Version)> = snapshot
            .iter()
            .map(|(key, entry)| (*key, (Some(entry.value), entry.version)))
            .collect();
        let mut last_version = Version::ZERO;
        loop {
            match subscription.try_recv() {
                Ok(event) => {
                    assert!(event.version() > last_version, "per-key order");
                    last_version = event.version();
                    let known = replica.get(event.key()).map(|(_, version)| *version);
                    if known.is_none_or(|known| event.version() > known) {
                        replica.insert(*event.key(), (event.value().copied(), event.version()));
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(error) => panic!("{error}"),
            }
        }
        let stored = map.get_versioned(&0).unwrap();
        assert_eq!(replica.get(&0), Some(&(Some(stored.value), stored.version)));
    });
}

/// A writer fills a one-event waiting buffer and must wait for the reader to make room: no
/// wake-up is lost (loom reports a deadlock if one is) and the reader gets both events in
/// order.
#[test]
fn a_full_waiting_buffer_hands_off_without_a_lost_wakeup() {
    check_model(|| {
        let map = new_map();
        let subscription = map.subscribe(SubscribeOptions::waiting(1));
        let writer = {
            let map = Arc::clone(&map);
            thread::spawn(move || {
                map.insert(1, 10);
                map.remove(&1);
            })
        };
        let first = subscription.recv().unwrap();
        let second = subscription.recv().unwrap();
        writer.join().unwrap();
        assert_eq!(first.value(), Some(&10));
        assert_eq!(second.value(), None);
        assert!(second.version() > first.version());
    });
}
