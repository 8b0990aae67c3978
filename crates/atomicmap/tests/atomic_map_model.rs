//! Model-based tests: random operation sequences on an `AtomicMap` and on a
//! `std::collections::HashMap` must give the same answer at every step and the same final
//! contents. Sequences are long enough, and key spaces wide enough, to cross several grows,
//! compactions and shrinks.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

use atomicmap::AtomicMap;
use proptest::prelude::*;

/// One operation on the map under test; `K`/`V` are generated, closures are fixed functions.
#[derive(Debug, Clone)]
enum Op<K, V> {
    Insert(K, V),
    Remove(K),
    Get(K),
    /// `update` with `bump` (a deterministic, type-specific change).
    Update(K),
    GetOrInsertWith(K, V),
    /// `upsert(key, || v, bump)`.
    Upsert(K, V),
    ContainsKey(K),
    Len,
    /// `retain` entries for which `keep(key, value)` is true; the `u8` picks the predicate.
    Retain(u8),
    Clear,
}

/// The per-type pieces of a model: how to change a value, and which entries a retain keeps.
trait Model: Sized + Clone + Debug + Hash + Eq + Send + Sync + 'static {
    type V: Clone + Debug + PartialEq + Send + Sync + 'static;
    fn bump(value: &Self::V) -> Self::V;
    fn keep(salt: u8, key: &Self, value: &Self::V) -> bool;
}

impl Model for u16 {
    type V = u64;
    fn bump(value: &u64) -> u64 {
        value.wrapping_mul(3).wrapping_add(1)
    }
    fn keep(salt: u8, key: &u16, value: &u64) -> bool {
        !(u64::from(*key) ^ *value ^ u64::from(salt)).is_multiple_of(3)
    }
}

impl Model for String {
    type V = String;
    fn bump(value: &String) -> String {
        let mut next = value.clone();
        next.push('+');
        if next.len() > 12 {
            next.clear();
        }
        next
    }
    fn keep(salt: u8, key: &String, value: &String) -> bool {
        !(key.len() + value.len() + usize::from(salt)).is_multiple_of(3)
    }
}

impl Model for u64 {
    type V = u64;
    fn bump(value: &u64) -> u64 {
        // Crosses the inline/boxed boundary at 2^63 in both directions.
        value.wrapping_add(1u64 << 62)
    }
    fn keep(salt: u8, key: &u64, value: &u64) -> bool {
        !(key ^ value.rotate_left(1) ^ u64::from(salt)).is_multiple_of(3)
    }
}

impl Model for i64 {
    type V = i64;
    fn bump(value: &i64) -> i64 {
        value.wrapping_sub(1i64 << 61)
    }
    fn keep(salt: u8, key: &i64, value: &i64) -> bool {
        (key.wrapping_add(*value) ^ i64::from(salt)).rem_euclid(3) != 0
    }
}

/// Runs `ops` on a fresh `AtomicMap` and a `HashMap`, comparing every result.
fn check<K: Model>(ops: &[Op<K, K::V>]) -> Result<(), TestCaseError> {
    let map: AtomicMap<K, K::V> = AtomicMap::new();
    let mut model: HashMap<K, K::V> = HashMap::new();
    for (step, op) in ops.iter().enumerate() {
        match op.clone() {
            Op::Insert(k, v) => {
                prop_assert_eq!(
                    map.insert(k.clone(), v.clone())
                        .map(atomicmap::GuardedRef::into_owned),
                    model.insert(k, v),
                    "step {}",
                    step
                )
            }
            Op::Remove(k) => prop_assert_eq!(
                map.remove(&k).map(atomicmap::GuardedRef::into_owned),
                model.remove(&k),
                "step {}",
                step
            ),
            Op::Get(k) => prop_assert_eq!(map.get(&k), model.get(&k).cloned(), "step {}", step),
            Op::Update(k) => {
                let expected = model.get_mut(&k).map(|v| {
                    *v = K::bump(v);
                    v.clone()
                });
                prop_assert_eq!(map.update(&k, K::bump), expected, "step {}", step)
            }
            Op::GetOrInsertWith(k, v) => {
                let had = model.contains_key(&k);
                let expected = model.entry(k.clone()).or_insert_with(|| v.clone()).clone();
                let mut ran = false;
                let got = map.get_or_insert_with(k, || {
                    ran = true;
                    v
                });
                prop_assert_eq!(got, expected, "step {}", step);
                prop_assert_eq!(
                    ran,
                    !had,
                    "make runs exactly when the key was missing, step {}",
                    step
                );
            }
            Op::Upsert(k, v) => {
                let expected = match model.get_mut(&k) {
                    Some(old) => {
                        *old = K::bump(old);
                        old.clone()
                    }
                    None => {
                        model.insert(k.clone(), v.clone());
                        v.clone()
                    }
                };
                prop_assert_eq!(map.upsert(k, || v, K::bump), expected, "step {}", step)
            }
            Op::ContainsKey(k) => {
                prop_assert_eq!(
                    map.contains_key(&k),
                    model.contains_key(&k),
                    "step {}",
                    step
                )
            }
            Op::Len => {
                prop_assert_eq!(map.len(), model.len(), "step {}", step);
                prop_assert_eq!(map.is_empty(), model.is_empty(), "step {}", step);
            }
            Op::Retain(salt) => {
                map.retain(|k, v| K::keep(salt, k, v));
                model.retain(|k, v| K::keep(salt, k, v));
                prop_assert_eq!(map.len(), model.len(), "step {}", step);
            }
            Op::Clear => {
                map.clear();
                model.clear();
                prop_assert!(map.is_empty(), "step {}", step);
            }
        }
    }
    prop_assert_eq!(map.len(), model.len());
    let mut seen: HashMap<K, K::V> = HashMap::new();
    for (k, v) in map.iter() {
        prop_assert!(seen.insert(k.clone(), v).is_none(), "iter repeated {:?}", k);
    }
    prop_assert_eq!(seen, model.clone());
    for (k, v) in &model {
        prop_assert_eq!(map.get(k), Some(v.clone()));
    }
    Ok(())
}

/// Weighted random operations over keys from `key` and values from `value`. Inserts dominate
/// so the map grows; removes, retains and clears make it shrink again.
fn ops<K: Model>(
    key: impl Strategy<Value = K> + Clone + 'static,
    value: impl Strategy<Value = K::V> + Clone + 'static,
    max_len: usize,
) -> impl Strategy<Value = Vec<Op<K, K::V>>> {
    let key = key.boxed();
    let value = value.boxed();
    let op = prop_oneof![
        30 => (key.clone(), value.clone()).prop_map(|(k, v)| Op::Insert(k, v)),
        12 => key.clone().prop_map(Op::Remove),
        10 => key.clone().prop_map(Op::Get),
        8 => key.clone().prop_map(Op::Update),
        6 => (key.clone(), value.clone()).prop_map(|(k, v)| Op::GetOrInsertWith(k, v)),
        6 => (key.clone(), value).prop_map(|(k, v)| Op::Upsert(k, v)),
        5 => key.prop_map(Op::ContainsKey),
        3 => Just(Op::Len),
        1 => any::<u8>().prop_map(Op::Retain),
    ];
    // Clears are rarer than one per sequence on average.
    // Boxing keeps each element's value tree small: unboxed, the nested unions make every
    // element kilobytes large, and moving them dominates the run time.
    let op = prop_oneof![2000 => op, 1 => Just(Op::Clear)].boxed();
    proptest::collection::vec(op, 0..max_len)
}

/// A test-sized number of cases: long sequences are the point, not many of them.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 2000,
        // ChaCha is most of the run time of a debug build; the cases need no crypto RNG.
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

/// Key spaces of 32, 512 and 2048 keys: small ones make removes and updates hit, the large one
/// grows the table well past its initial size.
fn u16_keys() -> impl Strategy<Value = u16> + Clone {
    prop_oneof![0u16..32, 0u16..512, 0u16..2048]
}

/// Values on both sides of 2^63, the inline/boxed boundary.
fn wide_u64() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        0u64..1000,
        (1u64 << 63) - 4..=(1u64 << 63) + 4,
        (1u64 << 63)..=u64::MAX,
        any::<u64>(),
    ]
}

/// Values on both sides of -2^62, the signed inline/boxed boundary.
fn wide_i64() -> impl Strategy<Value = i64> + Clone {
    prop_oneof![
        -1000i64..1000,
        i64::MIN..=-(1i64 << 62),
        -(1i64 << 62) - 4..=-(1i64 << 62) + 4,
        any::<i64>(),
    ]
}

proptest! {
    #![proptest_config(config(16))]

    #[test]
    fn u16_to_u64_matches_hashmap(ops in ops::<u16>(u16_keys(), 0u64..1_000_000, 3000)) {
        check(&ops)?;
    }

    #[test]
    fn string_to_string_matches_hashmap(
        ops in ops::<String>(
            prop_oneof!["[a-c]{0,2}", "k[0-9]{1,3}"],
            "[a-z]{0,6}",
            2000,
        )
    ) {
        check(&ops)?;
    }

    #[test]
    fn u64_with_boxed_values_matches_hashmap(
        ops in ops::<u64>(
            prop_oneof![0u64..64, 0u64..1500, (1u64 << 63)..(1u64 << 63) + 64, any::<u64>()],
            wide_u64(),
            3000,
        )
    ) {
        check(&ops)?;
    }

    #[test]
    fn i64_with_negative_and_boxed_values_matches_hashmap(
        ops in ops::<i64>(
            prop_oneof![-32i64..32, -1000i64..1000, i64::MIN..i64::MIN + 64, any::<i64>()],
            wide_i64(),
            3000,
        )
    ) {
        check(&ops)?;
    }
}

/// A deterministic sequence that certainly crosses grows and shrinks (proptest may not).
#[test]
fn grow_then_shrink_sequence_matches_hashmap() {
    let mut ops: Vec<Op<u16, u64>> = Vec::new();
    for k in 0..2000u16 {
        ops.push(Op::Insert(k, u64::from(k) * 7));
    }
    for k in 0..1990u16 {
        ops.push(Op::Remove(k));
        if k % 97 == 0 {
            ops.push(Op::Len);
        }
    }
    for k in 0..2000u16 {
        ops.push(Op::Upsert(k, 1));
        ops.push(Op::Update(k.wrapping_mul(7) % 2000));
    }
    ops.push(Op::Retain(1));
    ops.push(Op::Clear);
    for k in 0..300u16 {
        ops.push(Op::GetOrInsertWith(k, 5));
        ops.push(Op::Get(k / 2));
    }
    check(&ops).unwrap();
}
