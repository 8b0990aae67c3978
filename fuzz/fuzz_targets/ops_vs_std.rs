//! Sequences of operations on each map, checked step by step against std's `HashMap`: every
//! return value, and the whole content at each `snapshot()` and at the end. Keys may hash
//! with a hasher that keeps only two bits, so that they collide.

#![no_main]

#[path = "../../crates/atomicmap/tests/common/maps.rs"]
mod maps;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use arbitrary::Arbitrary;
use atomicmap::{AtomicMap, DefaultHashBuilder, RcuMap, ReadMostlyMap, ShardedMap};
use libfuzzer_sys::fuzz_target;
use maps::TestMap;

/// Operations per input at most, so that each execution stays short.
const MOST_OPS: usize = 512;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Insert(u16, u32),
    Remove(u16),
    Get(u16),
    GetOrInsert(u16, u32),
    /// Adds to the value of a present key.
    Update(u16, u32),
    /// Keeps the keys below this one.
    RetainBelow(u16),
    Clear,
    Snapshot,
}

#[derive(Arbitrary, Debug)]
struct Input {
    colliding: bool,
    ops: Vec<Op>,
}

/// Keeps two bits of the key as its hash: four hash values in all.
#[derive(Clone, Copy, Default)]
struct FourHashValues;

struct FourHashValuesHasher(u64);

impl Hasher for FourHashValuesHasher {
    fn finish(&self) -> u64 {
        (self.0 % 4).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.wrapping_add(u64::from(byte));
        }
    }
}

impl BuildHasher for FourHashValues {
    type Hasher = FourHashValuesHasher;

    fn build_hasher(&self) -> FourHashValuesHasher {
        FourHashValuesHasher(0)
    }
}

fn sorted(mut entries: Vec<(u16, u32)>) -> Vec<(u16, u32)> {
    entries.sort_unstable();
    entries
}

fn check<M: TestMap<u16, u32, Hasher = S>, S>(hasher: S, ops: &[Op]) {
    let map = M::with_hasher(hasher);
    let mut model: HashMap<u16, u32> = HashMap::new();
    for (step, &op) in ops.iter().enumerate() {
        let context = || format!("{}: step {step}, {op:?}", M::NAME);
        match op {
            Op::Insert(key, value) => {
                assert_eq!(
                    map.insert(key, value),
                    model.insert(key, value),
                    "{}",
                    context()
                );
            }
            Op::Remove(key) => {
                assert_eq!(map.remove(&key), model.remove(&key), "{}", context());
            }
            Op::Get(key) => {
                assert_eq!(map.get(&key), model.get(&key).copied(), "{}", context());
            }
            Op::GetOrInsert(key, value) => {
                let expected = *model.entry(key).or_insert(value);
                assert_eq!(
                    map.get_or_insert_with(key, || value),
                    expected,
                    "{}",
                    context()
                );
            }
            Op::Update(key, delta) => {
                let expected = model.get_mut(&key).map(|value| {
                    *value = value.wrapping_add(delta);
                    *value
                });
                let updated = map.update(&key, |value| value.wrapping_add(delta));
                assert_eq!(updated, expected, "{}", context());
            }
            Op::RetainBelow(bound) => {
                map.retain(|&key, _| key < bound);
                model.retain(|&key, _| key < bound);
            }
            Op::Clear => {
                map.clear();
                model.clear();
            }
            Op::Snapshot => {
                let expected = sorted(model.iter().map(|(&k, &v)| (k, v)).collect());
                assert_eq!(sorted(map.snapshot_entries()), expected, "{}", context());
            }
        }
    }
    let expected = sorted(model.into_iter().collect());
    assert_eq!(map.len(), expected.len(), "{}: len at the end", M::NAME);
    assert_eq!(
        sorted(map.snapshot_entries()),
        expected,
        "{}: the end",
        M::NAME
    );
}

fn check_every_map<S: BuildHasher + Clone + Send + Sync>(hasher: S, ops: &[Op]) {
    check::<AtomicMap<u16, u32, S>, S>(hasher.clone(), ops);
    check::<ShardedMap<u16, u32, S>, S>(hasher.clone(), ops);
    check::<ReadMostlyMap<u16, u32, S>, S>(hasher.clone(), ops);
    check::<RcuMap<u16, u32, S>, S>(hasher, ops);
}

fuzz_target!(|input: Input| {
    let ops = &input.ops[..input.ops.len().min(MOST_OPS)];
    if input.colliding {
        check_every_map(FourHashValues, ops);
    } else {
        check_every_map(DefaultHashBuilder::default(), ops);
    }
});
