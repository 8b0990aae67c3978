//! loom models of reclamation through `AtomicMap`'s public API: a value borrowed from a pinned
//! `MapRef` stays alive while another thread overwrites or removes it and then runs a
//! reclamation pass, and every value is dropped exactly once.
//!
//! Retiring a value does not free it: the retiring thread's next reclamation pass does. Passes
//! run after dozens of retirements, or as soon as a thread that retired a whole table unpins.
//! So each writer below replaces the borrowed value and then grows the full 4-slot table: its
//! insert of key 4 (home slot 0, so it probes every slot) starts the grow and moves the first
//! chunk, its insert of key 5 moves the second, finishes the grow and retires the old table,
//! and unpinning then runs a pass over all of the writer's garbage, including the replaced
//! value: exactly the free that a pinned reader must hold back.
//!
//! The identity hasher keeps the table layout the same in every execution, as loom's replay
//! requires (see `loom_atomic_map.rs`).
#![cfg(loom)]

mod common;

use std::hash::BuildHasherDefault;

use atomicmap::AtomicMap;
use common::serial::check_model;
use common::IdentityHasher;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// A boxed value (not a primitive) that counts its drops. Only the instances a test creates
/// and stores are under test; clones, which the map returns from `insert` and `remove`, count
/// nothing.
struct Tracked {
    id: usize,
    drops: Option<Arc<AtomicUsize>>,
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked {
            id: self.id,
            drops: None,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(drops) = &self.drops {
            drops.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The drop counters of the values `0..count`, and a way to make value `id`.
struct Values {
    drops: Vec<Arc<AtomicUsize>>,
}

impl Values {
    fn new(count: usize) -> Self {
        Values {
            drops: (0..count).map(|_| Arc::new(AtomicUsize::new(0))).collect(),
        }
    }

    fn make(&self, id: usize) -> Tracked {
        Tracked {
            id,
            drops: Some(Arc::clone(&self.drops[id])),
        }
    }

    fn drops(&self, id: usize) -> usize {
        self.drops[id].load(Ordering::SeqCst)
    }

    fn assert_each_dropped_once(&self, when: &str) {
        for id in 0..self.drops.len() {
            assert_eq!(self.drops(id), 1, "{when}: drops of value {id}");
        }
    }
}

type Map = AtomicMap<u8, Tracked, BuildHasherDefault<IdentityHasher>>;

/// Values 0..4 are stored under keys 0..4 before the race; the writers use 4 and up.
const FIRST_WRITER_VALUE: usize = 4;

/// Runs a model in which a reader borrows key 0 from a pinned `MapRef` while `writer` (on the
/// main thread, given the map and the values) replaces or removes it and forces a pass. The
/// borrowed value must be one of `readable` and not dropped while borrowed. Afterwards, with
/// no thread pinned, `clear` (which retires a table, so it runs a pass) frees all garbage:
/// every value must be dropped once while the map still exists, and no more when it goes.
fn borrowed_value_outlives(
    values: usize,
    readable: &'static [usize],
    writer: impl Fn(&Map, &Values) + Sync + Send + 'static,
) {
    check_model(move || {
        let values = Arc::new(Values::new(values));
        let map = Arc::new(Map::with_capacity_and_hasher(2, Default::default()));
        for key in 0..4 {
            map.insert(key, values.make(usize::from(key)));
        }
        let reader = {
            let (map, values) = (Arc::clone(&map), Arc::clone(&values));
            thread::spawn(move || {
                let pinned = map.pin();
                if let Some(borrowed) = pinned.get(&0) {
                    let id = borrowed.id;
                    assert!(readable.contains(&id), "read value {id}");
                    assert_eq!(values.drops(id), 0, "value {id} dropped while borrowed");
                    assert_eq!(borrowed.id, id);
                }
            })
        };
        writer(&map, &values);
        reader.join().unwrap();
        map.clear();
        values.assert_each_dropped_once("after clear");
        drop(map);
        values.assert_each_dropped_once("after the map was dropped");
    });
}

/// Inserts keys 4 and 5 with the next two values, growing the full table (see the module docs).
fn grow(map: &Map, values: &Values, first_value: usize) {
    assert!(map.insert(4, values.make(first_value)).is_none());
    assert!(map.insert(5, values.make(first_value + 1)).is_none());
}

/// The writer overwrites key 0 (retiring value 0), then grows the table.
#[test]
fn pinned_borrow_outlives_an_overwrite_and_a_pass() {
    borrowed_value_outlives(7, &[0, FIRST_WRITER_VALUE], |map, values| {
        let replaced = map.insert(0, values.make(FIRST_WRITER_VALUE));
        assert_eq!(replaced.map(|old| old.id), Some(0));
        grow(map, values, FIRST_WRITER_VALUE + 1);
    });
}

/// The writer removes key 0 (retiring value 0), then grows the table.
#[test]
fn pinned_borrow_outlives_a_remove_and_a_pass() {
    borrowed_value_outlives(6, &[0], |map, values| {
        assert_eq!(map.remove(&0).map(|old| old.id), Some(0));
        grow(map, values, FIRST_WRITER_VALUE);
    });
}
