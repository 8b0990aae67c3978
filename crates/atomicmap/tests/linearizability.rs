//! Linearizability of each map's single-key operations, checked on many short concurrent
//! histories (see `common/linearizability.rs` for the recorder and the checker).
//!
//! A history: four threads start together on a fresh map and each makes two to four calls
//! (`get`, `insert`, `remove`, `get_or_insert_with`) on two or three keys, with values unique
//! within the history. Three workloads per map:
//! * `plain`: an empty map with the default hasher;
//! * `resizing`: threads insert other keys between their calls, so that tables grow while the
//!   calls run. A map serves 64 histories in a row (each on keys of its own, absent at its
//!   start) and so grows from the smallest table to several thousand slots, whose resizes take
//!   more than one write to finish: calls run while a resize is in flight. A random prefill
//!   puts each map at a random point of its growth;
//! * `colliding`: a hasher that maps every key to one of two hash values, so that the keys
//!   share probe chains, shards and trie nodes, with a few colliding keys prefilled.
//!
//! `ATOMICMAP_LINEARIZABILITY_HISTORIES` sets how many histories the whole file checks
//! (default 100,000, shared evenly by the maps and workloads); each test prints its count.
//! `ATOMICMAP_LINEARIZABILITY_SEED` replays a failing run: a failure prints its seed.

mod common;

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use atomicmap::{AtomicMap, DefaultHashBuilder, RcuMap, ReadMostlyMap, ShardedMap};
use common::linearizability::{check, Call, Clock, Event, Value};
use common::maps::TestMap;

const THREADS: usize = 4;
/// Test functions sharing the history budget: four maps times three workloads.
const TESTS: usize = 12;
const DEFAULT_HISTORIES: usize = 100_000;
const DEFAULT_SEED: u64 = 0x5eed_1ea5_ab1e;

/// Keys of the calls checked: history `h` of a map uses keys from `h * KEYS_PER_HISTORY` on.
const KEYS_PER_HISTORY: u64 = 4;
/// Filler keys (prefill, inserts between calls) start here, far above the checked keys; thread
/// `t` inserts its own from `(t + 2) * FILLER_KEY_BASE` on.
const FILLER_KEY_BASE: u64 = 1 << 32;

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let number = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name}={text}: not a number"));
    Some(number)
}

fn histories_per_test() -> usize {
    let total = env_number("ATOMICMAP_LINEARIZABILITY_HISTORIES")
        .map_or(DEFAULT_HISTORIES, |total| total as usize);
    total.div_ceil(TESTS)
}

/// splitmix64: small, seedable, and good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// Maps every `u64` key to one of two hash values (by parity).
#[derive(Clone, Copy, Default)]
struct TwoHashValues;

struct TwoHashValuesHasher(u64);

impl Hasher for TwoHashValuesHasher {
    fn finish(&self) -> u64 {
        if self.0.is_multiple_of(2) {
            0x0123_4567_89ab_cdef
        } else {
            0xfedc_ba98_7654_3210
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.wrapping_add(u64::from(byte));
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

impl BuildHasher for TwoHashValues {
    type Hasher = TwoHashValuesHasher;

    fn build_hasher(&self) -> TwoHashValuesHasher {
        TwoHashValuesHasher(0)
    }
}

#[derive(Clone, Copy)]
enum Operation {
    Get,
    Insert(Value),
    Remove,
    GetOrInsert(Value),
}

/// What one thread does in one history: its calls, each preceded by `fillers_before_each`
/// inserts of keys of its own, counted from `first_filler`.
struct ThreadPlan {
    calls: Vec<(u64, Operation)>,
    fillers_before_each: u64,
    first_filler: u64,
}

struct Workload {
    name: &'static str,
    /// Histories run one after another on the same map.
    histories_per_map: usize,
    /// Filler keys inserted into a new map: a number in this range.
    prefill: (u64, u64),
    /// Filler inserts each thread makes before each of its calls.
    fillers_before_each: u64,
}

const PLAIN: Workload = Workload {
    name: "plain",
    histories_per_map: 1,
    prefill: (0, 0),
    fillers_before_each: 0,
};
const RESIZING: Workload = Workload {
    name: "resizing",
    histories_per_map: 64,
    prefill: (0, 1500),
    fillers_before_each: 3,
};
const COLLIDING: Workload = Workload {
    name: "colliding",
    histories_per_map: 1,
    prefill: (0, 12),
    fillers_before_each: 0,
};

/// The plan of history number `on_map` of its map.
fn plan_history(rng: &mut Rng, workload: &Workload, on_map: u64) -> Vec<ThreadPlan> {
    let keys = rng.between(2, 3);
    let mut next_value = 1;
    (0..THREADS as u64)
        .map(|thread| {
            let calls = (0..rng.between(2, 4))
                .map(|_| {
                    let key = on_map * KEYS_PER_HISTORY + rng.between(0, keys - 1);
                    next_value += 1;
                    let operation = match rng.between(0, 3) {
                        0 => Operation::Get,
                        1 => Operation::Insert(next_value),
                        2 => Operation::Remove,
                        _ => Operation::GetOrInsert(next_value),
                    };
                    (key, operation)
                })
                .collect();
            let fillers_per_history = 4 * workload.fillers_before_each;
            ThreadPlan {
                calls,
                fillers_before_each: workload.fillers_before_each,
                first_filler: (thread + 2) * FILLER_KEY_BASE + on_map * fillers_per_history,
            }
        })
        .collect()
}

/// Runs `plan` as thread `thread` of a history, after every thread has arrived at the gate.
fn run_thread<M: TestMap<u64, Value, Hasher = S>, S>(
    map: &M,
    clock: &Clock,
    gate: &AtomicUsize,
    thread: usize,
    plan: &ThreadPlan,
) -> Vec<Event> {
    gate.fetch_add(1, Ordering::SeqCst);
    while gate.load(Ordering::SeqCst) < THREADS {
        thread::yield_now();
    }
    let mut filler = plan.first_filler;
    let mut events = Vec::with_capacity(plan.calls.len());
    for &(key, operation) in &plan.calls {
        for _ in 0..plan.fillers_before_each {
            map.insert(filler, 0);
            filler += 1;
        }
        let event = match operation {
            Operation::Get => clock.record(thread, key, || map.get(&key), Call::Get),
            Operation::Insert(value) => clock.record(
                thread,
                key,
                || map.insert(key, value),
                |previous| Call::Insert(value, previous),
            ),
            Operation::Remove => clock.record(thread, key, || map.remove(&key), Call::Remove),
            Operation::GetOrInsert(value) => clock.record(
                thread,
                key,
                || map.get_or_insert_with(key, || value),
                |stored| Call::GetOrInsert(value, stored),
            ),
        };
        events.push(event);
    }
    events
}

/// Checks this test's share of histories of map `M` under `workload`, and prints the count.
fn check_histories<M: TestMap<u64, Value, Hasher = S>, S: Clone>(hasher: S, workload: Workload) {
    let seed = env_number("ATOMICMAP_LINEARIZABILITY_SEED").unwrap_or(DEFAULT_SEED);
    let salt = M::NAME
        .bytes()
        .chain(workload.name.bytes())
        .fold(0u64, |salt, byte| {
            salt.wrapping_mul(31).wrapping_add(u64::from(byte))
        });
    let mut rng = Rng(seed ^ salt);
    let histories = histories_per_test();
    let started = Instant::now();
    let mut map = M::with_hasher(hasher.clone());
    for history in 0..histories {
        let on_map = (history % workload.histories_per_map) as u64;
        if on_map == 0 {
            map = M::with_hasher(hasher.clone());
            for filler in 0..rng.between(workload.prefill.0, workload.prefill.1) {
                map.insert(FILLER_KEY_BASE + filler, 0);
            }
        }
        let plans = plan_history(&mut rng, &workload, on_map);
        let clock = Clock::default();
        let gate = AtomicUsize::new(0);
        let events: Vec<Event> = thread::scope(|scope| {
            let threads: Vec<_> = plans
                .iter()
                .enumerate()
                .map(|(thread, plan)| {
                    let (map, clock, gate) = (&map, &clock, &gate);
                    scope.spawn(move || run_thread(map, clock, gate, thread, plan))
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|thread| thread.join().expect("a map operation panicked"))
                .collect()
        });
        if let Err(failure) = check(&events) {
            panic!(
                "{} ({} workload), history {history} of seed {seed}: {failure}",
                M::NAME,
                workload.name
            );
        }
    }
    // Written to the stderr handle, not with `eprintln!`, so the harness shows it for passing
    // tests too.
    let _ = writeln!(
        std::io::stderr(),
        "linearizability: {histories} histories of {} ({} workload) checked in {:.1?}",
        M::NAME,
        workload.name,
        started.elapsed()
    );
}

#[test]
fn atomic_map_plain() {
    check_histories::<AtomicMap<u64, Value>, _>(DefaultHashBuilder::default(), PLAIN);
}

#[test]
fn atomic_map_resizing() {
    check_histories::<AtomicMap<u64, Value>, _>(DefaultHashBuilder::default(), RESIZING);
}

#[test]
fn atomic_map_colliding() {
    check_histories::<AtomicMap<u64, Value, _>, _>(TwoHashValues, COLLIDING);
}

#[test]
fn sharded_map_plain() {
    check_histories::<ShardedMap<u64, Value>, _>(DefaultHashBuilder::default(), PLAIN);
}

#[test]
fn sharded_map_resizing() {
    check_histories::<ShardedMap<u64, Value>, _>(DefaultHashBuilder::default(), RESIZING);
}

#[test]
fn sharded_map_colliding() {
    check_histories::<ShardedMap<u64, Value, _>, _>(TwoHashValues, COLLIDING);
}

#[test]
fn read_mostly_map_plain() {
    check_histories::<ReadMostlyMap<u64, Value>, _>(DefaultHashBuilder::default(), PLAIN);
}

#[test]
fn read_mostly_map_resizing() {
    check_histories::<ReadMostlyMap<u64, Value>, _>(DefaultHashBuilder::default(), RESIZING);
}

#[test]
fn read_mostly_map_colliding() {
    check_histories::<ReadMostlyMap<u64, Value, _>, _>(TwoHashValues, COLLIDING);
}

#[test]
fn rcu_map_plain() {
    check_histories::<RcuMap<u64, Value>, _>(DefaultHashBuilder::default(), PLAIN);
}

#[test]
fn rcu_map_resizing() {
    check_histories::<RcuMap<u64, Value>, _>(DefaultHashBuilder::default(), RESIZING);
}

#[test]
fn rcu_map_colliding() {
    check_histories::<RcuMap<u64, Value, _>, _>(TwoHashValues, COLLIDING);
}

/// The checker itself: histories built by hand, some linearizable, some not.
mod checker {
    use super::*;

    fn event(thread: usize, key: u64, call: Call, invoked: u64, returned: u64) -> Event {
        Event {
            thread,
            key,
            call,
            invoked,
            returned,
        }
    }

    #[test]
    fn accepts_overlapping_calls_in_either_order() {
        // The get overlaps the insert, so it may see the key absent or inserted.
        for seen in [None, Some(7)] {
            let history = [
                event(0, 1, Call::Insert(7, None), 0, 3),
                event(1, 1, Call::Get(seen), 1, 2),
            ];
            assert_eq!(check(&history), Ok(()));
        }
    }

    #[test]
    fn accepts_a_linearization_that_reorders_invocations() {
        // Thread 1's insert is invoked last but must take effect first: the remove returned
        // its value, and the get_or_insert found 9 there.
        let history = [
            event(0, 1, Call::Remove(Some(9)), 0, 5),
            event(1, 1, Call::GetOrInsert(4, 9), 1, 6),
            event(2, 1, Call::Insert(9, None), 2, 3),
        ];
        assert_eq!(check(&history), Ok(()));
    }

    #[test]
    fn rejects_a_value_never_written() {
        let history = [
            event(0, 1, Call::Insert(7, None), 0, 3),
            event(1, 1, Call::Get(Some(8)), 1, 2),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn rejects_a_stale_read_after_a_completed_insert() {
        let history = [
            event(0, 1, Call::Insert(7, None), 0, 1),
            event(1, 1, Call::Get(None), 2, 3),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn rejects_two_winners_of_get_or_insert() {
        let history = [
            event(0, 1, Call::GetOrInsert(3, 3), 0, 2),
            event(1, 1, Call::GetOrInsert(4, 4), 1, 3),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn rejects_a_value_removed_twice() {
        let history = [
            event(0, 1, Call::Insert(5, None), 0, 1),
            event(1, 1, Call::Remove(Some(5)), 2, 5),
            event(2, 1, Call::Remove(Some(5)), 3, 4),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn checks_each_key_on_its_own() {
        // Each key's calls are fine alone; the stale read on key 2 must still be found among
        // the calls on key 1.
        let history = [
            event(0, 1, Call::Insert(1, None), 0, 1),
            event(0, 2, Call::Insert(2, None), 2, 3),
            event(1, 1, Call::Get(Some(1)), 4, 5),
            event(1, 2, Call::Get(None), 6, 7),
        ];
        let failure = check(&history).expect_err("the read of key 2 is stale");
        assert!(failure.contains("key 2"), "{failure}");
    }
}
