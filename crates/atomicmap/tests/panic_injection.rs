//! Panic injection into every map: keys whose `Hash`, `Eq` or `Clone`, values whose `Clone`,
//! and closures passed to the map panic on the N-th call, swept over N, with one thread and
//! with three (see `common/faults.rs`).
//!
//! Each run starts an empty map (of the smallest size, so that it resizes as keys arrive),
//! arms the tripwire, and drives a workload of inserts, overwrites, removes,
//! `get_or_insert_with`, `update`, `get`, `retain` and `snapshot()` on keys of its own per
//! thread, tracking a model of what each completed operation committed. After the injected
//! panic is caught, the thread checks at once that:
//! * the key of the operation that panicked holds either what it held before or what the
//!   operation would have stored, and every other key holds exactly what the model says
//!   (nothing lost, nothing resurrected);
//! * `snapshot()` returns, and agrees with the model;
//! * the map keeps working: a new key can be inserted, read and removed;
//!
//! and the workload goes on to its end. Once the map and everything read from it are dropped,
//! every key and value ever made must have been dropped exactly once.
//!
//! Each scenario runs in a child process under a watchdog (`common/child.rs`): a map that hangs
//! after a panic fails its test. Each prints how many panics it injected.

mod common;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::thread;

use atomicmap::{AtomicMap, DefaultHashBuilder, RcuMap, ReadMostlyMap, ShardedMap};
use common::child::child_test;
use common::faults::{self, trip, Key, Site, TestKey, Value};
use common::maps::TestMap;
use common::panic_driver::{Driver, Step};

/// Keys a thread's workload starts by inserting: enough to resize the smallest table a few
/// times.
const GROWTH_KEYS: u64 = 40;
/// Mixed operations after the growth phase.
const MIXED_STEPS: u64 = 60;
/// Most runs a sweep makes: N goes over every call at the site, in strides if there are more.
const MOST_RUNS: usize = 120;

/// Maps every key to one of two hash values, so that `Eq` runs on most probes, in every
/// bucket and trie node, and during every resize.
#[derive(Clone, Copy, Default)]
struct TwoHashValues;

struct TwoHashValuesHasher(u64);

impl Hasher for TwoHashValuesHasher {
    fn finish(&self) -> u64 {
        (self.0 % 2 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.wrapping_add(u64::from(byte));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

impl BuildHasher for TwoHashValues {
    type Hasher = TwoHashValuesHasher;

    fn build_hasher(&self) -> TwoHashValuesHasher {
        TwoHashValuesHasher(0)
    }
}

/// The default hasher, but each hash it finishes is a [`Site::KeyHash`] call: the panic comes
/// from the hasher, for keys (`u64`) that have no `Hash` of their own to inject into.
#[derive(Clone, Default)]
struct TrippingHasher(DefaultHashBuilder);

struct TrippingHasherState(<DefaultHashBuilder as BuildHasher>::Hasher);

impl Hasher for TrippingHasherState {
    fn finish(&self) -> u64 {
        trip(Site::KeyHash);
        self.0.finish()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
}

impl BuildHasher for TrippingHasher {
    type Hasher = TrippingHasherState;

    fn build_hasher(&self) -> TrippingHasherState {
        TrippingHasherState(self.0.build_hasher())
    }
}

/// A thread's workload, on key numbers local to the thread.
fn workload() -> Vec<Step> {
    let growth = (0..GROWTH_KEYS).map(Step::Insert);
    let mixed = (0..MIXED_STEPS).map(|round| {
        // Strides through more keys than were inserted, so that some steps meet absent keys.
        let key = (round * 7) % (GROWTH_KEYS + 8);
        match round % 7 {
            0 => Step::Insert(key),
            1 => Step::Remove(key),
            2 => Step::GetOrInsert(key),
            3 => Step::Update(key),
            4 => Step::Get(key),
            5 => Step::RetainAllBut(key),
            _ => Step::Snapshot,
        }
    });
    growth.chain(mixed).collect()
}

/// One run: a fresh map, the tripwire armed at call `nth` of `site` (or not at all), `threads`
/// threads running the workload; then the final checks. Whether the tripwire fired.
fn run_once<K: TestKey, M: TestMap<K, Value, Hasher = S>, S: Clone>(
    hasher: &S,
    threads: u64,
    armed: Option<(Site, usize)>,
) -> bool {
    let steps = workload();
    let map = M::with_hasher(hasher.clone());
    if let Some((site, nth)) = armed {
        faults::arm(site, nth);
    }
    let models: Vec<BTreeMap<u64, u64>> = thread::scope(|scope| {
        let drivers: Vec<_> = (0..threads)
            .map(|thread| {
                let (map, steps) = (&map, &steps);
                scope.spawn(move || {
                    let mut driver = Driver::<M, K>::new(map, thread);
                    driver.run(steps);
                    driver.model
                })
            })
            .collect();
        drivers
            .into_iter()
            .map(|driver| {
                driver
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let fired = armed.is_some() && !faults::disarm();
    let expected: BTreeMap<u64, u64> = models.into_iter().flatten().collect();
    let entries: BTreeMap<u64, u64> = map
        .snapshot_entries()
        .iter()
        .map(|(key, value)| (key.id(), value.id))
        .collect();
    assert_eq!(entries, expected, "{}: the final snapshot", M::NAME);
    drop(map);
    assert_eq!(
        faults::double_drops(),
        0,
        "{}: instances dropped twice",
        M::NAME
    );
    assert_eq!(
        faults::alive(),
        0,
        "{}: keys or values leaked after {armed:?}",
        M::NAME
    );
    fired
}

/// Sweeps N over the calls `threads` threads make at `site` (in strides, at most
/// [`MOST_RUNS`] runs), and prints how many panics it injected.
fn sweep<K: TestKey, M: TestMap<K, Value, Hasher = S>, S: Clone + Default>(
    hasher: S,
    site: Site,
    threads: u64,
) {
    faults::quiet_injected_panics();
    let calls_before = faults::calls(site);
    run_once::<K, M, S>(&hasher, threads, None);
    let calls = faults::calls(site) - calls_before;
    assert!(
        calls > 0,
        "{}: the workload never reaches {site:?}",
        M::NAME
    );
    let stride = calls.div_ceil(MOST_RUNS);
    let mut runs = 0;
    for nth in (1..=calls).step_by(stride) {
        run_once::<K, M, S>(&hasher, threads, Some((site, nth)));
        runs += 1;
    }
    // Written to the stderr handle, not with `eprintln!`, so that it shows in the parent's
    // report of a passing child too.
    let _ = writeln!(
        std::io::stderr(),
        "panic injection: {} {site:?}, {threads} thread(s): {} panics injected in {runs} runs",
        M::NAME,
        faults::injected()
    );
}

/// `sweep_test!(#[attributes] fn name: Map, Site, threads)`: a child-process test of one
/// sweep, with the map's hasher made by `Default`.
macro_rules! sweep_test {
    ($(#[$attribute:meta])* fn $name:ident: $map:ty, $site:ident, $threads:literal) => {
        child_test! {
            $(#[$attribute])*
            fn $name() {
                sweep::<_, $map, _>(Default::default(), Site::$site, $threads);
            }
        }
    };
}

/// Key type and hasher per sweep: `Eq` sweeps collide on two hash values; hash sweeps inject
/// into the key's `Hash` (a boxed key, for `AtomicMap`) and into the hasher (an inline key).
type Atomic = AtomicMap<Key, Value>;
type AtomicColliding = AtomicMap<Key, Value, TwoHashValues>;
type AtomicInline = AtomicMap<u64, Value, TrippingHasher>;
type Sharded = ShardedMap<Key, Value>;
type ShardedColliding = ShardedMap<Key, Value, TwoHashValues>;
type ReadMostly = ReadMostlyMap<Key, Value>;
type ReadMostlyColliding = ReadMostlyMap<Key, Value, TwoHashValues>;
type Rcu = RcuMap<Key, Value>;
type RcuColliding = RcuMap<Key, Value, TwoHashValues>;

sweep_test!(fn atomic_map_key_hash_one_thread: Atomic, KeyHash, 1);
sweep_test!(fn atomic_map_key_hash_three_threads: Atomic, KeyHash, 3);
sweep_test!(fn atomic_map_hasher_inline_keys_one_thread: AtomicInline, KeyHash, 1);
sweep_test!(fn atomic_map_hasher_inline_keys_three_threads: AtomicInline, KeyHash, 3);
sweep_test!(fn atomic_map_key_eq_one_thread: AtomicColliding, KeyEq, 1);
sweep_test!(fn atomic_map_key_eq_three_threads: AtomicColliding, KeyEq, 3);
sweep_test!(fn atomic_map_key_clone_one_thread: Atomic, KeyClone, 1);
sweep_test!(fn atomic_map_key_clone_three_threads: Atomic, KeyClone, 3);
sweep_test!(fn atomic_map_value_clone_one_thread: Atomic, ValueClone, 1);
sweep_test!(fn atomic_map_value_clone_three_threads: Atomic, ValueClone, 3);
sweep_test!(fn atomic_map_closure_one_thread: Atomic, Closure, 1);
sweep_test!(fn atomic_map_closure_three_threads: Atomic, Closure, 3);

sweep_test!(fn sharded_map_key_hash_one_thread: Sharded, KeyHash, 1);
sweep_test!(fn sharded_map_key_hash_three_threads: Sharded, KeyHash, 3);
sweep_test!(fn sharded_map_key_eq_one_thread: ShardedColliding, KeyEq, 1);
sweep_test!(fn sharded_map_key_eq_three_threads: ShardedColliding, KeyEq, 3);
sweep_test!(fn sharded_map_key_clone_one_thread: Sharded, KeyClone, 1);
sweep_test!(fn sharded_map_key_clone_three_threads: Sharded, KeyClone, 3);
sweep_test!(fn sharded_map_value_clone_one_thread: Sharded, ValueClone, 1);
sweep_test!(fn sharded_map_value_clone_three_threads: Sharded, ValueClone, 3);
sweep_test!(fn sharded_map_closure_one_thread: Sharded, Closure, 1);
sweep_test!(fn sharded_map_closure_three_threads: Sharded, Closure, 3);

sweep_test!(fn read_mostly_map_key_hash_one_thread: ReadMostly, KeyHash, 1);
sweep_test!(fn read_mostly_map_key_hash_three_threads: ReadMostly, KeyHash, 3);
sweep_test!(fn read_mostly_map_key_eq_one_thread: ReadMostlyColliding, KeyEq, 1);
sweep_test!(fn read_mostly_map_key_eq_three_threads: ReadMostlyColliding, KeyEq, 3);
sweep_test!(fn read_mostly_map_key_clone_one_thread: ReadMostly, KeyClone, 1);
sweep_test!(fn read_mostly_map_key_clone_three_threads: ReadMostly, KeyClone, 3);
sweep_test!(fn read_mostly_map_value_clone_one_thread: ReadMostly, ValueClone, 1);
sweep_test!(fn read_mostly_map_value_clone_three_threads: ReadMostly, ValueClone, 3);
sweep_test!(fn read_mostly_map_closure_one_thread: ReadMostly, Closure, 1);
sweep_test!(fn read_mostly_map_closure_three_threads: ReadMostly, Closure, 3);

sweep_test!(fn rcu_map_key_hash_one_thread: Rcu, KeyHash, 1);
sweep_test!(fn rcu_map_key_hash_three_threads: Rcu, KeyHash, 3);
sweep_test!(fn rcu_map_key_eq_one_thread: RcuColliding, KeyEq, 1);
sweep_test!(fn rcu_map_key_eq_three_threads: RcuColliding, KeyEq, 3);
sweep_test!(fn rcu_map_key_clone_one_thread: Rcu, KeyClone, 1);
sweep_test!(fn rcu_map_key_clone_three_threads: Rcu, KeyClone, 3);
sweep_test!(fn rcu_map_value_clone_one_thread: Rcu, ValueClone, 1);
sweep_test!(fn rcu_map_value_clone_three_threads: Rcu, ValueClone, 3);
sweep_test!(fn rcu_map_closure_one_thread: Rcu, Closure, 1);
sweep_test!(fn rcu_map_closure_three_threads: Rcu, Closure, 3);
