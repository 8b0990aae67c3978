//! Panic injection on arbitrary operation sequences: one map, one injection site (`Hash`,
//! `Eq`, `Clone` of keys and values, closures) and the call at that site that panics, all
//! chosen by the input; the checks after the panic and at the end are the panic injection
//! tests' own (`crates/atomicmap/tests/common/panic_driver.rs`): nothing lost, nothing leaked
//! or dropped twice, `snapshot()` returns and the map keeps working.

#![no_main]

// The panic injection tests' fixtures, as siblings at the crate's root (the driver names
// them `super::`).
#[path = "../../crates/atomicmap/tests/common/faults.rs"]
mod faults;
#[path = "../../crates/atomicmap/tests/common/maps.rs"]
mod maps;
#[path = "../../crates/atomicmap/tests/common/panic_driver.rs"]
mod panic_driver;

use std::hash::{BuildHasher, Hasher};

use arbitrary::Arbitrary;
use atomicmap::{AtomicMap, DefaultHashBuilder, RcuMap, ReadMostlyMap, ShardedMap};
use faults::{Key, Site, Value};
use libfuzzer_sys::fuzz_target;
use maps::TestMap;
use panic_driver::{Driver, Step};

/// Steps per input at most, so that each execution stays short.
const MOST_STEPS: usize = 256;
/// Distinct keys the steps use (below the driver's probe key).
const KEYS: u64 = 64;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum MapKind {
    Atomic,
    Sharded,
    ReadMostly,
    Rcu,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SiteChoice {
    KeyHash,
    KeyEq,
    KeyClone,
    ValueClone,
    Closure,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum StepChoice {
    Insert(u8),
    Remove(u8),
    GetOrInsert(u8),
    Update(u8),
    Get(u8),
    RetainAllBut(u8),
    Snapshot,
}

#[derive(Arbitrary, Debug)]
struct Input {
    map: MapKind,
    site: SiteChoice,
    /// The call at the site that panics, counted from 1.
    nth: u8,
    colliding: bool,
    steps: Vec<StepChoice>,
}

/// Keeps one bit of the key as its hash: two hash values in all.
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
}

impl BuildHasher for TwoHashValues {
    type Hasher = TwoHashValuesHasher;

    fn build_hasher(&self) -> TwoHashValuesHasher {
        TwoHashValuesHasher(0)
    }
}

fn step_of(choice: StepChoice) -> Step {
    let key = |byte: u8| u64::from(byte) % KEYS;
    match choice {
        StepChoice::Insert(byte) => Step::Insert(key(byte)),
        StepChoice::Remove(byte) => Step::Remove(key(byte)),
        StepChoice::GetOrInsert(byte) => Step::GetOrInsert(key(byte)),
        StepChoice::Update(byte) => Step::Update(key(byte)),
        StepChoice::Get(byte) => Step::Get(key(byte)),
        StepChoice::RetainAllBut(byte) => Step::RetainAllBut(key(byte)),
        StepChoice::Snapshot => Step::Snapshot,
    }
}

fn run<M: TestMap<Key, Value, Hasher = S>, S>(hasher: S, site: Site, nth: usize, steps: &[Step]) {
    let map = M::with_hasher(hasher);
    faults::arm(site, nth);
    let mut driver = Driver::<M, Key>::new(&map, 0);
    driver.run(steps);
    faults::disarm();
    let mut entries: Vec<(u64, u64)> = map
        .snapshot_entries()
        .iter()
        .map(|(key, value)| (key.id, value.id))
        .collect();
    entries.sort_unstable();
    let expected: Vec<(u64, u64)> = driver.model.iter().map(|(&k, &v)| (k, v)).collect();
    assert_eq!(entries, expected, "{}: the final snapshot", M::NAME);
    drop(map);
    assert_eq!(
        faults::double_drops(),
        0,
        "{}: instances dropped twice",
        M::NAME
    );
    assert_eq!(faults::alive(), 0, "{}: keys or values leaked", M::NAME);
}

fn run_on<S: BuildHasher + Clone + Send + Sync>(
    map: MapKind,
    hasher: S,
    site: Site,
    nth: usize,
    steps: &[Step],
) {
    match map {
        MapKind::Atomic => run::<AtomicMap<Key, Value, S>, S>(hasher, site, nth, steps),
        MapKind::Sharded => run::<ShardedMap<Key, Value, S>, S>(hasher, site, nth, steps),
        MapKind::ReadMostly => run::<ReadMostlyMap<Key, Value, S>, S>(hasher, site, nth, steps),
        MapKind::Rcu => run::<RcuMap<Key, Value, S>, S>(hasher, site, nth, steps),
    }
}

fuzz_target!(|input: Input| {
    faults::quiet_injected_panics();
    let site = match input.site {
        SiteChoice::KeyHash => Site::KeyHash,
        SiteChoice::KeyEq => Site::KeyEq,
        SiteChoice::KeyClone => Site::KeyClone,
        SiteChoice::ValueClone => Site::ValueClone,
        SiteChoice::Closure => Site::Closure,
    };
    let steps: Vec<Step> = input
        .steps
        .iter()
        .take(MOST_STEPS)
        .map(|&c| step_of(c))
        .collect();
    let nth = usize::from(input.nth.max(1));
    if input.colliding {
        run_on(input.map, TwoHashValues, site, nth, &steps);
    } else {
        run_on(input.map, DefaultHashBuilder::default(), site, nth, &steps);
    }
});
