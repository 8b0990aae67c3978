//! Change capture acceptance: convergence of snapshot + stream under load from random start
//! moments, per-key order, both backpressure policies, and the map's survival of panicking
//! user code. Each test runs over every backend `CapturedMap` supports.

mod common;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use atomicmap::capture::{
    CaptureBackend, CapturedMap, CapturedRcuMap, CapturedShardedMap, ChangeEvent, RecvError,
    SubscribeOptions, Subscription, TryRecvError, Version,
};
use common::scale::scaled;

/// A small deterministic generator (xorshift64*), one per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// A replica built the way a consumer of `snapshot_and_subscribe` builds one: per key the
/// newer version wins, and removals are remembered as versioned tombstones.
#[derive(Default)]
struct Replica {
    entries: HashMap<u64, (Option<u64>, Version)>,
}

impl Replica {
    fn apply(&mut self, key: u64, value: Option<u64>, version: Version) {
        let newer = self
            .entries
            .get(&key)
            .is_none_or(|(_, known)| version > *known);
        if newer {
            self.entries.insert(key, (value, version));
        }
    }

    fn apply_event(&mut self, event: ChangeEvent<u64, u64>) {
        self.apply(*event.key(), event.value().copied(), event.version());
    }

    fn values(&self) -> HashMap<u64, u64> {
        self.entries
            .iter()
            .filter_map(|(key, (value, _))| value.map(|value| (*key, value)))
            .collect()
    }
}

/// Drains `subscription` until `writers_done` is set and nothing is left.
fn drain_into(subscription: &Subscription<u64, u64>, replica: &mut Replica, done: &AtomicBool) {
    let mut batch = Vec::new();
    loop {
        let finished = done.load(Ordering::Acquire);
        match subscription.recv_batch(&mut batch, 256, Duration::from_millis(1)) {
            Ok(0) if finished => return,
            Ok(_) => batch.drain(..).for_each(|event| replica.apply_event(event)),
            Err(error) => panic!("subscription failed: {error}"),
        }
    }
}

const KEYS: u64 = 1_000;

/// One writer's random insert / update / remove / re-insert traffic on the shared keys.
fn random_writes<M: CaptureBackend<u64, u64>>(
    map: &CapturedMap<u64, u64, M>,
    seed: u64,
    operations: usize,
    progress: &AtomicUsize,
) {
    let mut rng = Rng(seed | 1);
    for _ in 0..operations {
        let key = rng.below(KEYS);
        match rng.below(4) {
            0 => {
                map.insert(key, rng.next());
            }
            1 => {
                map.remove(&key);
            }
            2 => {
                map.update(&key, |value| value.wrapping_add(1));
            }
            _ => {
                map.compute(key, |current| match current {
                    Some(_) => None,
                    None => Some(key),
                });
            }
        }
        progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// Acceptance 1: writers mutate 1,000 keys; a subscriber joins through
/// `snapshot_and_subscribe` after a random number of operations; once the writers stop and
/// the subscriber drains, its replica equals the map.
fn converges_from_random_start_moments<M: CaptureBackend<u64, u64>>(
    make: impl Fn() -> CapturedMap<u64, u64, M>,
    operations_per_writer: usize,
) {
    let rounds = scaled(100).max(if cfg!(miri) { 1 } else { 10 });
    let operations = scaled(operations_per_writer);
    for round in 0..rounds as u64 {
        let map = make();
        for key in 0..KEYS / 2 {
            map.insert(key, key);
        }
        let writers = 2 + (round % 3) as usize;
        let mut rng = Rng(0x9e37_79b9 ^ round);
        let start_after = rng.below((writers * operations) as u64) as usize;
        let capacity = [16, 256, 65_536][(round % 3) as usize];
        let progress = AtomicUsize::new(0);
        let done = AtomicBool::new(false);
        let replica = thread::scope(|scope| {
            let subscriber = scope.spawn(|| {
                while progress.load(Ordering::Relaxed) < start_after {
                    thread::yield_now();
                }
                let (snapshot, subscription) =
                    map.snapshot_and_subscribe(SubscribeOptions::waiting(capacity));
                let mut replica = Replica::default();
                for (key, entry) in &snapshot {
                    replica.apply(*key, Some(entry.value), entry.version);
                }
                drain_into(&subscription, &mut replica, &done);
                replica
            });
            let writer_threads: Vec<_> = (0..writers)
                .map(|writer| {
                    let (map, progress) = (&map, &progress);
                    let seed = round * 31 + writer as u64 + 1;
                    scope.spawn(move || random_writes(map, seed, operations, progress))
                })
                .collect();
            for writer in writer_threads {
                writer.join().unwrap();
            }
            done.store(true, Ordering::Release);
            subscriber.join().unwrap()
        });
        let expected: HashMap<u64, u64> = map.snapshot().to_map();
        assert_eq!(
            replica.values(),
            expected,
            "round {round}: the replica diverged (subscribed after {start_after} ops)"
        );
    }
}

#[test]
fn atomic_map_replica_converges_from_random_start_moments() {
    converges_from_random_start_moments(CapturedMap::<u64, u64>::new, 3_000);
}

#[test]
fn sharded_map_replica_converges_from_random_start_moments() {
    converges_from_random_start_moments(
        || CapturedShardedMap::with_backend(Default::default(), 0),
        3_000,
    );
}

#[test]
fn rcu_map_replica_converges_from_random_start_moments() {
    // Every RcuMap write copies a path of the trie and retries under contention: fewer
    // operations per round, the same number of rounds.
    converges_from_random_start_moments(
        || CapturedRcuMap::with_backend(Default::default(), 0),
        500,
    );
}

/// Acceptance 2: each writer owns its keys and writes increasing values; two subscribers
/// (one from the start, one joining midway) see each key's values and versions strictly
/// increase.
fn per_key_order_holds<M: CaptureBackend<u64, u64>>(map: CapturedMap<u64, u64, M>) {
    const WRITERS: u64 = 3;
    const OWNED_KEYS: u64 = 16;
    // Miri runs three backends' threads, yields and receive timeouts slowly: a few rounds.
    let rounds = if cfg!(miri) { 3 } else { scaled(2_000) as u64 };
    let early = map.subscribe(SubscribeOptions::waiting(64));
    let done = AtomicBool::new(false);
    let halfway = Barrier::new(WRITERS as usize + 1);
    let check = |subscription: Subscription<u64, u64>| {
        let mut last: HashMap<u64, (u64, Version)> = HashMap::new();
        let mut seen = 0usize;
        let mut batch = Vec::new();
        loop {
            let finished = done.load(Ordering::Acquire);
            match subscription.recv_batch(&mut batch, 128, Duration::from_millis(1)) {
                Ok(0) if finished => return seen,
                Ok(_) => {}
                Err(error) => panic!("subscription failed: {error}"),
            }
            for event in batch.drain(..) {
                let value = *event.value().expect("writers only insert");
                if let Some((previous, version)) = last.get(event.key()) {
                    assert!(value > *previous, "key {} went back", event.key());
                    assert!(
                        event.version() > *version,
                        "version of {} went back",
                        event.key()
                    );
                }
                last.insert(*event.key(), (value, event.version()));
                seen += 1;
            }
        }
    };
    thread::scope(|scope| {
        let early_checker = scope.spawn(|| check(early));
        let late_checker = scope.spawn(|| {
            halfway.wait();
            check(map.subscribe(SubscribeOptions::lagging(1 << 20)))
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (map, halfway) = (&map, &halfway);
                scope.spawn(move || {
                    for round in 1..=rounds {
                        for key in (0..OWNED_KEYS).map(|index| index * WRITERS + writer) {
                            map.insert(key, round);
                        }
                        if round == rounds / 2 {
                            halfway.wait();
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let total = (WRITERS * OWNED_KEYS * rounds) as usize;
        assert_eq!(
            early_checker.join().unwrap(),
            total,
            "lossless: every event"
        );
        assert!(late_checker.join().unwrap() > 0);
    });
}

#[test]
fn per_key_order_holds_on_every_backend() {
    per_key_order_holds(CapturedMap::new());
    per_key_order_holds(CapturedShardedMap::with_backend(Default::default(), 0));
    per_key_order_holds(CapturedRcuMap::with_backend(Default::default(), 0));
}

/// Acceptance 3a: a waiting subscriber that does not read holds writers back once its buffer
/// is full, and loses nothing once it reads. One key and a capacity of 1: whatever the number
/// of stripes, the key's stripe holds one event, so the second write must wait.
#[test]
fn a_stalled_waiting_subscriber_holds_writers_back_and_loses_nothing() {
    const WRITES: u64 = 100;
    let map: CapturedMap<u64, u64> = CapturedMap::new();
    let subscription = map.subscribe(SubscribeOptions::waiting(1));
    let returned = AtomicUsize::new(0);
    thread::scope(|scope| {
        scope.spawn(|| {
            for value in 0..WRITES {
                map.insert(7, value);
                returned.fetch_add(1, Ordering::SeqCst);
            }
        });
        while subscription.queued() < 1 {
            thread::yield_now();
        }
        thread::sleep(Duration::from_millis(50));
        assert_eq!(
            returned.load(Ordering::SeqCst),
            1,
            "the writer must wait once the buffer is full"
        );
        assert_eq!(map.get(&7), Some(0), "a waiting write has not committed");
        for value in 0..WRITES {
            let event = subscription.recv().expect("lossless");
            assert_eq!(event.value(), Some(&value));
        }
    });
    assert_eq!(subscription.try_recv(), Err(TryRecvError::Empty));
}

/// A writer waiting on a full buffer is released when the subscription is dropped.
#[test]
fn dropping_a_full_waiting_subscription_releases_the_writers() {
    let map: CapturedMap<u64, u64> = CapturedMap::new();
    let subscription = map.subscribe(SubscribeOptions::waiting(1));
    thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for value in 0..10 {
                map.insert(0, value);
            }
        });
        while subscription.queued() < 1 {
            thread::yield_now();
        }
        drop(subscription);
        writer.join().unwrap();
    });
    assert_eq!(map.get(&0), Some(9));
}

/// Acceptance 3b (the memory half is in `capture_memory.rs`): a lagging subscriber is told.
#[test]
fn an_overflowing_lagging_subscriber_is_told_and_never_resumes_silently() {
    let map: CapturedMap<u64, u64> = CapturedMap::new();
    let subscription = map.subscribe(SubscribeOptions::lagging(8));
    for value in 0..100 {
        map.insert(value % 3, value);
    }
    match subscription.try_recv() {
        Err(TryRecvError::Lagged { missed }) => assert!(missed > 0),
        other => panic!("expected Lagged, got {other:?}"),
    }
    map.insert(7, 7);
    assert!(matches!(subscription.recv(), Err(RecvError::Lagged { .. })));
    let (snapshot, fresh) = map.snapshot_and_subscribe(SubscribeOptions::lagging(8));
    assert_eq!(snapshot.get(&7).map(|entry| entry.value), Some(7));
    map.remove(&7);
    assert!(matches!(
        fresh.try_recv(),
        Ok(ChangeEvent::Remove { key: 7, .. })
    ));
}

#[test]
fn events_say_insert_update_or_remove_and_versions_grow() {
    let map: CapturedMap<String, u64> = CapturedMap::with_node(7);
    let changes = map.subscribe(SubscribeOptions::default());
    map.insert("a".into(), 1);
    map.insert("a".into(), 2);
    assert_eq!(map.update("a", |value| value * 10), Some(20));
    assert_eq!(map.remove("a"), Some(20));
    assert_eq!(map.remove("a"), None, "no event for an absent key");
    assert_eq!(map.get_or_insert_with("b".into(), || 5), 5);
    assert_eq!(map.get_or_insert_with("b".into(), || 6), 5);
    let mut events: Vec<_> = std::iter::from_fn(|| changes.try_recv().ok()).collect();
    // Keys "a" and "b" may sit in different stripes, whose events arrive in either order;
    // versions give the one order.
    events.sort_by_key(ChangeEvent::version);
    let kinds: Vec<_> = events
        .iter()
        .map(|event| match event {
            ChangeEvent::Insert { .. } => "insert",
            ChangeEvent::Update { .. } => "update",
            ChangeEvent::Remove { .. } => "remove",
        })
        .collect();
    assert_eq!(kinds, ["insert", "update", "update", "remove", "insert"]);
    assert!(events
        .windows(2)
        .all(|pair| pair[0].version() < pair[1].version()));
    assert!(events.iter().all(|event| event.version().node() == 7));
    let stored = map.get_versioned("b").unwrap();
    assert_eq!(stored.version, events[4].version());
    assert_eq!(map.snapshot().max_version(), stored.version);
}

#[test]
fn dropping_the_map_closes_subscriptions_after_their_queue() {
    let map: CapturedMap<u64, u64> = CapturedMap::new();
    let subscription = map.subscribe(SubscribeOptions::default());
    map.insert(1, 1);
    drop(map);
    assert!(subscription.recv().is_ok());
    assert_eq!(subscription.recv(), Err(RecvError::Closed));
}

#[test]
fn retain_and_clear_publish_a_remove_per_key() {
    let map: CapturedShardedMap<u64, u64> = CapturedMap::with_backend(Default::default(), 0);
    for key in 0..10 {
        map.insert(key, key);
    }
    let changes = map.subscribe(SubscribeOptions::default());
    map.retain(|key, _| key % 2 == 0);
    map.clear();
    let removed: Vec<u64> = std::iter::from_fn(|| changes.try_recv().ok())
        .map(|event| {
            assert!(matches!(event, ChangeEvent::Remove { .. }));
            *event.key()
        })
        .collect();
    assert_eq!(removed.len(), 10);
    assert!(map.is_empty());
}

/// A closure that panics inside a key's stripe changes nothing and leaves the map usable.
#[test]
fn a_panicking_closure_loses_nothing_and_blocks_nobody() {
    let map: CapturedMap<u64, u64> = (0..32).map(|key| (key, key)).collect();
    let changes = map.subscribe(SubscribeOptions::default());
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        map.compute(5, |_| panic!("user code fails"));
    }));
    assert!(outcome.is_err());
    assert_eq!(map.get(&5), Some(5));
    assert_eq!(changes.try_recv(), Err(TryRecvError::Empty));
    map.insert(5, 50);
    assert_eq!(changes.recv().unwrap().value(), Some(&50));
    assert_eq!(map.len(), 32);
}

#[test]
fn a_backend_with_entries_starts_its_clock_above_them() {
    let first: CapturedMap<u64, u64> = CapturedMap::with_node(1);
    first.insert(1, 1);
    let restored = atomicmap::AtomicMap::new();
    for (key, entry) in &first.snapshot() {
        restored.insert(*key, entry.clone());
    }
    let second = CapturedMap::with_backend(restored, 2);
    second.insert(2, 2);
    assert!(second.get_versioned(&2).unwrap().version > first.get_versioned(&1).unwrap().version);
}
