//! Drop-count tests of `AtomicMap`: every key and value the map is given, and every clone it
//! hands back, is dropped exactly once — after overwrites, removes, `retain`, `clear`, races of
//! `update`/`upsert`/`get_or_insert_with` while the table grows and shrinks, and map drop.
//!
//! Each key and value carries an instance id into a [`Ledger`] that counts constructions and,
//! per id, drops. Reclamation is deferred, so replaced values may be dropped well after the
//! write that replaced them; the exact counts are checked once the map is gone.
//!
//! `ATOMICMAP_STRESS_SCALE` (percent, default 100) scales the iteration counts, e.g. down for
//! ThreadSanitizer; under Miri they are cut to 1%.

mod common;

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::thread;

use atomicmap::AtomicMap;
use common::scale::scaled;

/// Constructions and per-instance drop counts of one test's keys and values.
///
/// Drop counts are checked at the end rather than asserted inside `Drop`: a panic in a drop
/// that the map runs while freeing its garbage would abort the process instead of failing the
/// test with a message.
struct Ledger {
    /// Ids handed out so far: the number of instances ever constructed.
    next_id: AtomicUsize,
    /// `drops[id]`: how many times instance `id` was dropped (saturating, so a runaway double
    /// free still shows as more than one).
    drops: Vec<AtomicU8>,
}

impl Ledger {
    /// A ledger with room for `capacity` instances, leaked so that keys and values can refer
    /// to it from the map's `'static` storage without reference counting on every clone.
    fn with_capacity(capacity: usize) -> &'static Ledger {
        Box::leak(Box::new(Ledger {
            next_id: AtomicUsize::new(0),
            drops: (0..capacity).map(|_| AtomicU8::new(0)).collect(),
        }))
    }

    fn new_id(&self) -> usize {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        assert!(
            id < self.drops.len(),
            "ledger too small: instance {id} of at most {}",
            self.drops.len()
        );
        id
    }

    fn record_drop(&self, id: usize) {
        // `fetch_update` with `checked_add` saturates at 255 instead of wrapping back to 1.
        let _ = self.drops[id].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |drops| {
            drops.checked_add(1)
        });
    }

    fn constructed(&self) -> usize {
        self.next_id.load(Ordering::Relaxed)
    }

    fn dropped(&self) -> usize {
        self.drops[..self.constructed()]
            .iter()
            .filter(|drops| drops.load(Ordering::Relaxed) > 0)
            .count()
    }

    /// Instances constructed and not yet dropped.
    fn alive(&self) -> usize {
        self.constructed() - self.dropped()
    }

    /// Asserts that every instance ever constructed was dropped exactly once.
    fn assert_each_dropped_once(&self, what: &str) {
        let constructed = self.constructed();
        assert!(constructed > 0, "{what}: the test constructed nothing");
        let mut never = Vec::new();
        let mut twice = Vec::new();
        for (id, drops) in self.drops[..constructed].iter().enumerate() {
            match drops.load(Ordering::Relaxed) {
                0 => never.push(id),
                1 => {}
                _ => twice.push(id),
            }
        }
        assert!(
            twice.is_empty(),
            "{what}: {} of {constructed} instances dropped more than once, e.g. ids {:?}",
            twice.len(),
            &twice[..twice.len().min(10)]
        );
        assert!(
            never.is_empty(),
            "{what}: {} of {constructed} instances never dropped, e.g. ids {:?}",
            never.len(),
            &never[..never.len().min(10)]
        );
        let unexpected = self.drops[constructed..]
            .iter()
            .filter(|drops| drops.load(Ordering::Relaxed) != 0)
            .count();
        assert_eq!(unexpected, 0, "{what}: drops of ids never handed out");
    }
}

/// A boxed key: equal and hashed by its name only, so clones and separately constructed
/// instances of one name are the same key. `Borrow<str>` lets lookups use a plain `&str`.
struct TrackedKey {
    name: String,
    id: usize,
    ledger: &'static Ledger,
}

impl TrackedKey {
    fn new(ledger: &'static Ledger, name: String) -> Self {
        TrackedKey {
            name,
            id: ledger.new_id(),
            ledger,
        }
    }
}

impl Clone for TrackedKey {
    fn clone(&self) -> Self {
        TrackedKey::new(self.ledger, self.name.clone())
    }
}

impl Drop for TrackedKey {
    fn drop(&mut self) {
        self.ledger.record_drop(self.id);
    }
}

impl PartialEq for TrackedKey {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TrackedKey {}

impl Hash for TrackedKey {
    // Must hash exactly as `str` does, for `Borrow<str>`.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.as_str().hash(state);
    }
}

impl Borrow<str> for TrackedKey {
    fn borrow(&self) -> &str {
        &self.name
    }
}

/// A boxed value holding a number; each clone is a new instance.
struct TrackedValue {
    number: u64,
    id: usize,
    ledger: &'static Ledger,
}

impl TrackedValue {
    fn new(ledger: &'static Ledger, number: u64) -> Self {
        TrackedValue {
            number,
            id: ledger.new_id(),
            ledger,
        }
    }
}

impl Clone for TrackedValue {
    fn clone(&self) -> Self {
        TrackedValue::new(self.ledger, self.number)
    }
}

impl Drop for TrackedValue {
    fn drop(&mut self) {
        self.ledger.record_drop(self.id);
    }
}

type TrackedMap = AtomicMap<TrackedKey, TrackedValue>;

fn name(key: u64) -> String {
    format!("key-{key}")
}

/// Overwrites and removes from one thread: the value an insert replaces and the value a remove
/// takes out are returned as clones and retired inside the map; the keys of repeated inserts
/// are dropped by the map because the slot keeps its first key.
#[test]
fn overwrites_and_removes_drop_each_instance_once() {
    const KEYS: u64 = 200;
    let ledger = Ledger::with_capacity(20_000);
    let key = |k: u64| TrackedKey::new(ledger, name(k));
    let value = |n: u64| TrackedValue::new(ledger, n);
    let map = TrackedMap::new();
    for k in 0..KEYS {
        assert!(map.insert(key(k), value(k)).is_none());
    }
    for k in 0..KEYS {
        let replaced = map.insert(key(k), value(k + 1000)).expect("key present");
        assert_eq!(replaced.number, k);
    }
    for k in (0..KEYS).step_by(2) {
        let removed = map.remove(name(k).as_str()).expect("key present");
        assert_eq!(removed.number, k + 1000);
    }
    // Re-inserting a removed key reuses its tombstone's slot, keeping the old key instance.
    for k in (0..KEYS).step_by(4) {
        assert!(map.insert(key(k), value(k + 2000)).is_none());
    }
    for k in 0..KEYS {
        let expected = match k % 4 {
            0 => Some(k + 2000),
            2 => None,
            _ => Some(k + 1000),
        };
        assert_eq!(
            map.get(name(k).as_str()).map(|v| v.number),
            expected,
            "key {k}"
        );
    }
    assert_eq!(map.len(), (KEYS / 2 + KEYS / 4) as usize);
    drop(map);
    ledger.assert_each_dropped_once("overwrites and removes");
}

/// Replaced values are freed while the map lives, not only when it is dropped: garbage left by
/// a long run of overwrites from one thread stays bounded.
#[test]
fn replaced_values_are_reclaimed_while_the_map_lives() {
    const OVERWRITES: u64 = 16_384;
    let ledger = Ledger::with_capacity(3 * OVERWRITES as usize + 16);
    let map = TrackedMap::new();
    map.insert(
        TrackedKey::new(ledger, name(0)),
        TrackedValue::new(ledger, 0),
    );
    for n in 1..=OVERWRITES {
        let replaced = map.insert(
            TrackedKey::new(ledger, name(0)),
            TrackedValue::new(ledger, n),
        );
        assert_eq!(replaced.map(|v| v.number), Some(n - 1));
    }
    // Alive: the stored key and value, plus replaced values awaiting a reclamation pass. A
    // pass runs every 1,024 retirements, so a quarter of the overwrites is a loose bound that
    // only a reclaimer that never frees (or frees only on map drop) can exceed.
    let alive = ledger.alive();
    assert!(
        alive < OVERWRITES as usize / 4,
        "{alive} instances alive after {OVERWRITES} overwrites of one key"
    );
    drop(map);
    ledger.assert_each_dropped_once("overwrites of one key");
}

/// A table retired while another thread was pinned cannot be freed by the thread that
/// retired it. Once that thread is gone, the table must not wait for it (nor for the map's
/// drop): the pinned thread frees it when it unpins. The retired table owns the keys of the
/// tombstones its resize did not carry, so their drops show when it is freed.
#[test]
fn a_retired_table_is_freed_when_the_last_pin_ends_even_if_its_retirer_left() {
    const KEYS: u64 = 1_000;
    const REMOVED: u64 = 100;
    let ledger = Ledger::with_capacity(4 * KEYS as usize);
    let map = TrackedMap::new();
    for n in 0..KEYS {
        map.insert(
            TrackedKey::new(ledger, name(n)),
            TrackedValue::new(ledger, n),
        );
    }
    for n in 0..REMOVED {
        assert!(map.remove(name(n).as_str()).is_some());
    }
    let pinned = map.pin();
    let alive_before = ledger.alive();
    thread::scope(|s| {
        s.spawn(|| map.reserve(16 * KEYS as usize));
    });
    assert_eq!(
        ledger.alive(),
        alive_before,
        "the pin taken before the resize must keep the retired table and its keys alive"
    );
    drop(pinned);
    let freed = alive_before - ledger.alive();
    assert!(
        freed >= REMOVED as usize,
        "only {freed} instances freed after the last pin ended; the retired table owns the \
         {REMOVED} tombstoned keys"
    );
    assert_eq!(map.len(), (KEYS - REMOVED) as usize);
    drop(map);
    ledger.assert_each_dropped_once("a table retired by a thread that left");
}

/// A walk paused on a table while the map moves on. Keys born after the walk pinned are
/// inserted into its table, carried into the successor, removed there, and that successor is
/// retired holding them as tombstones. Their words are still in the paused walk's table, which
/// it may load next, so they must outlive its pin, although the walk's reservation predates
/// their birth. (They were once freed under it: a debug run of `atomic_map_retain_vs_snapshot`
/// crashed in about half of its runs, and AddressSanitizer named the free.)
#[test]
fn a_paused_walk_keeps_alive_the_keys_its_table_shows_while_successors_are_retired() {
    const LATE_KEYS: u64 = 64;
    let ledger = Ledger::with_capacity(1_000);
    let map = TrackedMap::new();
    map.insert(
        TrackedKey::new(ledger, name(0)),
        TrackedValue::new(ledger, 0),
    );
    let pinned = map.pin();
    let mut walk = pinned.iter();
    assert!(
        walk.next().is_some(),
        "the walk has started on the first table"
    );
    let mut shown_to_the_walk = Vec::new();
    thread::scope(|s| {
        s.spawn(|| {
            // Boxing values ticks the epoch, so the keys boxed from here on are born after
            // every epoch the paused walk's reservation covers.
            for n in 1..=64 {
                map.insert(
                    TrackedKey::new(ledger, name(0)),
                    TrackedValue::new(ledger, n),
                );
            }
            // Not carried: the successor's only keys are the late ones.
            assert!(map.remove(name(0).as_str()).is_some());
            for n in 1..=LATE_KEYS {
                let resizes_before = map.stats().resizes;
                let key = TrackedKey::new(ledger, name(n));
                let id = key.id;
                map.insert(key, TrackedValue::new(ledger, n));
                if map.stats().resizes == resizes_before && resizes_before == 0 {
                    shown_to_the_walk.push(id);
                }
            }
            for n in 1..=LATE_KEYS {
                assert!(map.remove(name(n).as_str()).is_some());
            }
            map.reserve(1_000);
            // Unpins look at the retired tables and free those no reservation holds.
            for _ in 0..1_000 {
                assert!(map.get(name(1).as_str()).is_none());
            }
        });
    });
    assert!(
        !shown_to_the_walk.is_empty(),
        "no late key was inserted into the walk's table"
    );
    let freed: Vec<usize> = shown_to_the_walk
        .iter()
        .copied()
        .filter(|&id| ledger.drops[id].load(Ordering::Relaxed) != 0)
        .collect();
    assert!(
        freed.is_empty(),
        "keys {freed:?} were freed while a paused walk's table still showed them"
    );
    assert!(walk.all(|(key, _)| key.name.starts_with("key-")));
    drop(pinned);
    drop(map);
    ledger.assert_each_dropped_once("keys shown to a paused walk");
}

/// `retain` drops exactly the rejected values (once the map is gone, with the rest) and keeps
/// the others intact.
#[test]
fn retain_drops_rejected_entries_once() {
    const KEYS: u64 = 1_000;
    let ledger = Ledger::with_capacity(10_000);
    let map = TrackedMap::new();
    for k in 0..KEYS {
        map.insert(
            TrackedKey::new(ledger, name(k)),
            TrackedValue::new(ledger, k),
        );
    }
    let mut judged = 0;
    map.retain(|key, value| {
        judged += 1;
        assert_eq!(key.name, name(value.number), "retain saw a torn entry");
        value.number % 3 == 0
    });
    assert_eq!(judged, KEYS);
    assert_eq!(map.len(), KEYS.div_ceil(3) as usize);
    for k in 0..KEYS {
        assert_eq!(
            map.get(name(k).as_str()).map(|v| v.number),
            (k % 3 == 0).then_some(k),
            "key {k}"
        );
    }
    drop(map);
    ledger.assert_each_dropped_once("retain");
}

/// `clear` removes and shrinks; the map keeps working afterwards, and dropping it drops what
/// was inserted before and after the clear exactly once.
#[test]
fn clear_then_reuse_drops_each_instance_once() {
    const KEYS: u64 = 2_000;
    let ledger = Ledger::with_capacity(20_000);
    let map = TrackedMap::new();
    for round in 0..3 {
        for k in 0..KEYS {
            map.insert(
                TrackedKey::new(ledger, name(k)),
                TrackedValue::new(ledger, k + round),
            );
        }
        assert_eq!(map.len(), KEYS as usize);
        map.clear();
        assert!(map.is_empty());
        assert_eq!(map.iter().count(), 0);
        assert!(map.get(name(0).as_str()).is_none());
    }
    map.insert(
        TrackedKey::new(ledger, name(7)),
        TrackedValue::new(ledger, 7),
    );
    assert_eq!(map.get("key-7").map(|v| v.number), Some(7));
    drop(map);
    ledger.assert_each_dropped_once("clear");
}

/// Dropping a map frees what its tables still own: live entries, tombstones' keys, keys carried
/// to a successor table, and the garbage of every thread that wrote to it.
#[test]
fn dropping_the_map_drops_entries_tombstones_and_garbage() {
    const KEYS: u64 = 3_000;
    let ledger = Ledger::with_capacity(50_000);
    let map = TrackedMap::new();
    thread::scope(|s| {
        for writer in 0..2u64 {
            let map = &map;
            s.spawn(move || {
                for k in (writer..KEYS).step_by(2) {
                    map.insert(
                        TrackedKey::new(ledger, name(k)),
                        TrackedValue::new(ledger, k),
                    );
                    map.insert(
                        TrackedKey::new(ledger, name(k)),
                        TrackedValue::new(ledger, k + 1),
                    );
                    if k % 5 == 0 {
                        map.remove(name(k).as_str());
                    }
                }
            });
        }
    });
    let expected_len = (0..KEYS).filter(|k| k % 5 != 0).count();
    assert_eq!(map.len(), expected_len);
    for (key, value) in map.iter() {
        assert_eq!(key.name, name(value.number - 1));
    }
    drop(map);
    ledger.assert_each_dropped_once("map drop");
}

/// Counters (only ever incremented), slots that are inserted, removed and re-created, and
/// filler keys that make the table grow, compact and shrink, all at once from several threads.
/// Losing racers drop their attempts (`update`/`upsert` closures may run more than once,
/// `get_or_insert_with` may lose to another insert), and every clone handed back is dropped by
/// the caller: the ledger must balance exactly, and no increment may be lost.
#[test]
fn racing_writes_across_resizes_drop_each_instance_once() {
    const WORKERS: u64 = 4;
    const COUNTERS: u64 = 8;
    const SLOTS: u64 = 8;
    const FILLER_ROUNDS: u64 = 4;
    const FILLER_BASE: u64 = 1_000_000;
    let ops = scaled(20_000) as u64;
    let fillers = scaled(4_000) as u64;
    // Upper bound on instances: each op makes a key, a value and a few clones (more when it
    // retries); each filler makes a key, a value and the clone `remove` returns.
    let capacity = (WORKERS * ops * 12 + FILLER_ROUNDS * fillers * 4) as usize + 1_000;
    let ledger = Ledger::with_capacity(capacity);
    let key = |k: u64| TrackedKey::new(ledger, name(k));
    let value = |n: u64| TrackedValue::new(ledger, n);
    let map = TrackedMap::new();
    let increments: Vec<u64> = thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|worker| {
                let map = &map;
                s.spawn(move || {
                    let mut increments = 0;
                    for i in 0..ops {
                        let counter = (i + worker) % COUNTERS;
                        let slot = COUNTERS + (i * 7 + worker) % SLOTS;
                        match i % 6 {
                            0 => {
                                map.upsert(key(counter), || value(1), |v| value(v.number + 1));
                                increments += 1;
                            }
                            1 => {
                                if map
                                    .update(name(counter).as_str(), |v| value(v.number + 1))
                                    .is_some()
                                {
                                    increments += 1;
                                }
                            }
                            2 => {
                                map.insert(key(slot), value(slot));
                            }
                            3 => {
                                if let Some(removed) = map.remove(name(slot).as_str()) {
                                    assert_eq!(removed.number, slot, "removed a foreign value");
                                }
                            }
                            4 => {
                                let got = map.get_or_insert_with(key(slot), || value(slot));
                                assert_eq!(got.number, slot);
                            }
                            _ => {
                                if let Some(found) = map.get(name(slot).as_str()) {
                                    assert_eq!(found.number, slot, "read a foreign value");
                                }
                            }
                        }
                    }
                    increments
                })
            })
            .collect();
        s.spawn(|| {
            for round in 0..FILLER_ROUNDS {
                for k in FILLER_BASE..FILLER_BASE + fillers {
                    map.insert(key(k), value(k));
                }
                if round % 2 == 0 {
                    for k in FILLER_BASE..FILLER_BASE + fillers {
                        if let Some(removed) = map.remove(name(k).as_str()) {
                            assert_eq!(removed.number, k, "removed a foreign filler value");
                        }
                    }
                } else {
                    map.retain(|key, value| {
                        assert!(key.name == name(value.number) || value.number < FILLER_BASE);
                        value.number < FILLER_BASE
                    });
                }
            }
        });
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let counted: u64 = (0..COUNTERS)
        .map(|k| map.get(name(k).as_str()).map_or(0, |v| v.number))
        .sum();
    assert_eq!(counted, increments.iter().sum::<u64>(), "lost increments");
    map.clear();
    drop(map);
    ledger.assert_each_dropped_once("racing writes");
}
