//! Panic injection: keys whose `Hash`, `Eq` or `Clone` and values whose `Clone` panic on the
//! N-th call (or closures, on their N-th run), objects that count themselves, and a sweep that
//! runs one fixed sequence of operations against a map and a model, over every N, checking
//! after each step that the map holds exactly the model's entries and, once the map is
//! dropped, that every key and value was dropped exactly once.
//!
//! The bookkeeping is per thread: a sweep runs on the test's own thread.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// The user code a sweep makes panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserCode {
    Hash,
    Eq,
    Clone,
    Closure,
}

/// The payload of an injected panic, told apart from a failed assertion.
struct Injected;

thread_local! {
    /// The armed kind of user code and how many more of its calls succeed.
    static ARMED: Cell<Option<(UserCode, usize)>> = const { Cell::new(None) };
    /// Serial numbers of the keys and values alive now.
    static LIVE: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
    static NEXT_SERIAL: Cell<u64> = const { Cell::new(0) };
    /// Drops of an object already dropped.
    static DOUBLE_DROPS: Cell<usize> = const { Cell::new(0) };
}

/// Called by every piece of user code: panics if `code` is armed and its turn has come.
pub fn user_code_runs(code: UserCode) {
    ARMED.with(|armed| {
        if let Some((kind, left)) = armed.get() {
            if kind == code {
                if left == 0 {
                    armed.set(None);
                    inject_panic();
                }
                armed.set(Some((kind, left - 1)));
            }
        }
    });
}

/// Drops so far of a key or value already dropped.
pub fn double_drops() -> usize {
    DOUBLE_DROPS.with(Cell::get)
}

/// Panics with the payload of an injected panic, which [`silence_injected_panics`] keeps quiet.
pub fn inject_panic() -> ! {
    panic::panic_any(Injected)
}

/// Makes `code` panic on its `nth` call from now (1 for the next call).
pub fn arm(code: UserCode, nth: usize) {
    ARMED.with(|armed| armed.set(Some((code, nth - 1))));
}

/// Stops any armed panic.
pub fn disarm() {
    ARMED.with(|armed| armed.set(None));
}

fn born() -> u64 {
    let serial = NEXT_SERIAL.with(|next| {
        let serial = next.get();
        next.set(serial + 1);
        serial
    });
    LIVE.with(|live| live.borrow_mut().insert(serial));
    serial
}

fn died(serial: u64) {
    if !LIVE.with(|live| live.borrow_mut().remove(&serial)) {
        DOUBLE_DROPS.with(|drops| drops.set(drops.get() + 1));
    }
}

/// Keys and values alive now.
pub fn live_objects() -> usize {
    LIVE.with(|live| live.borrow().len())
}

/// Keys made by [`Key::new`] share a hash: their hash is their id modulo this, so `Eq` runs
/// on most lookups and the tables build collision chains.
const HASH_GROUPS: u64 = 8;

/// A key that counts itself and runs injectable `Hash`, `Eq` and `Clone`.
#[derive(Debug)]
pub struct Key {
    pub id: u64,
    /// What its `Hash` feeds the hasher.
    hashed: u64,
    serial: u64,
}

impl Key {
    /// A key that shares its hash with every key whose id is congruent modulo 8.
    pub fn new(id: u64) -> Self {
        Key {
            id,
            hashed: id % HASH_GROUPS,
            serial: born(),
        }
    }

    /// A key whose hash is its own.
    pub fn distinct(id: u64) -> Self {
        Key {
            id,
            hashed: id,
            serial: born(),
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        user_code_runs(UserCode::Hash);
        self.hashed.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        user_code_runs(UserCode::Eq);
        self.id == other.id
    }
}

impl Eq for Key {}

impl Clone for Key {
    fn clone(&self) -> Self {
        user_code_runs(UserCode::Clone);
        Key {
            id: self.id,
            hashed: self.hashed,
            serial: born(),
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        died(self.serial);
    }
}

/// A value that counts itself and runs an injectable `Clone`.
#[derive(Debug)]
pub struct Value {
    pub n: u64,
    serial: u64,
}

impl Value {
    pub fn new(n: u64) -> Self {
        Value { n, serial: born() }
    }
}

impl Clone for Value {
    fn clone(&self) -> Self {
        user_code_runs(UserCode::Clone);
        Value::new(self.n)
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        died(self.serial);
    }
}

/// The operations of the shared vocabulary, as a sweep drives them. Closures call
/// [`user_code_runs`]`(UserCode::Closure)` first. Each method returns what the map returned,
/// as numbers.
pub trait Subject {
    fn insert(&self, key: u64, value: u64) -> Option<u64>;
    fn remove(&self, key: u64) -> Option<u64>;
    fn get(&self, key: u64) -> Option<u64>;
    /// `update(key, |v| v + 1)`.
    fn increment(&self, key: u64) -> Option<u64>;
    /// `upsert(key, || value, |v| v + 1)`.
    fn upsert(&self, key: u64, value: u64) -> u64;
    /// `compute(key, ..)` with [`toggle`].
    fn compute(&self, key: u64) -> Option<u64>;
    fn get_or_insert_with(&self, key: u64, value: u64) -> u64;
    /// `retain(|key, _| key % 3 != 0)`.
    fn retain_keys_not_divisible_by_three(&self);
    /// Takes a snapshot, inserts while it is alive, and drops it.
    fn insert_under_snapshot(&self, key: u64, value: u64) -> Option<u64>;
    /// Every entry, read without running any user code.
    fn entries(&self) -> BTreeMap<u64, u64>;
}

/// `Subject` for a map of [`Key`]s and [`Value`]s that speaks the crate's shared vocabulary
/// (`insert`, `remove`, `get`, `update`, `upsert`, `compute`, `get_or_insert_with`, `retain`,
/// `snapshot`); `$entries` lists its entries without running user code.
#[allow(
    unused_macros,
    reason = "used by the test files of the maps it fits, not by all"
)]
macro_rules! subject_by_shared_vocabulary {
    ($map:ty, |$this:ident| $entries:expr) => {
        impl $crate::common::panics::Subject for $map {
            fn insert(&self, key: u64, value: u64) -> Option<u64> {
                use $crate::common::panics::{Key, Value};
                <$map>::insert(self, Key::new(key), Value::new(value)).map(|value| value.n)
            }
            fn remove(&self, key: u64) -> Option<u64> {
                <$map>::remove(self, &$crate::common::panics::Key::new(key)).map(|value| value.n)
            }
            fn get(&self, key: u64) -> Option<u64> {
                <$map>::get(self, &$crate::common::panics::Key::new(key)).map(|value| value.n)
            }
            fn increment(&self, key: u64) -> Option<u64> {
                use $crate::common::panics::{user_code_runs, Key, UserCode, Value};
                self.update(&Key::new(key), |value| {
                    user_code_runs(UserCode::Closure);
                    Value::new(value.n + 1)
                })
                .map(|value| value.n)
            }
            fn upsert(&self, key: u64, value: u64) -> u64 {
                use $crate::common::panics::{user_code_runs, Key, UserCode, Value};
                <$map>::upsert(
                    self,
                    Key::new(key),
                    || {
                        user_code_runs(UserCode::Closure);
                        Value::new(value)
                    },
                    |stored| {
                        user_code_runs(UserCode::Closure);
                        Value::new(stored.n + 1)
                    },
                )
                .n
            }
            fn compute(&self, key: u64) -> Option<u64> {
                use $crate::common::panics::{toggle, user_code_runs, Key, UserCode, Value};
                <$map>::compute(self, Key::new(key), |value| {
                    user_code_runs(UserCode::Closure);
                    toggle(value.map(|value| value.n)).map(Value::new)
                })
                .map(|value| value.n)
            }
            fn get_or_insert_with(&self, key: u64, value: u64) -> u64 {
                use $crate::common::panics::{user_code_runs, Key, UserCode, Value};
                <$map>::get_or_insert_with(self, Key::new(key), || {
                    user_code_runs(UserCode::Closure);
                    Value::new(value)
                })
                .n
            }
            fn retain_keys_not_divisible_by_three(&self) {
                use $crate::common::panics::{user_code_runs, UserCode};
                self.retain(|key, _| {
                    user_code_runs(UserCode::Closure);
                    key.id % 3 != 0
                });
            }
            fn insert_under_snapshot(&self, key: u64, value: u64) -> Option<u64> {
                let snapshot = self.snapshot();
                let replaced = $crate::common::panics::Subject::insert(self, key, value);
                drop(snapshot);
                replaced
            }
            fn entries(&self) -> std::collections::BTreeMap<u64, u64> {
                let $this = self;
                $entries
            }
        }
    };
}
#[allow(unused_imports, reason = "as above")]
pub(crate) use subject_by_shared_vocabulary;

/// The `compute` closure of the sweep: inserts 1 into an absent key, removes an even value,
/// increments an odd one.
pub fn toggle(value: Option<u64>) -> Option<u64> {
    match value {
        None => Some(1),
        Some(n) if n % 2 == 0 => None,
        Some(n) => Some(n + 1),
    }
}

/// One step of the fixed sequence.
#[derive(Clone, Copy, Debug)]
enum Op {
    Insert(u64, u64),
    Remove(u64),
    Get(u64),
    Increment(u64),
    Upsert(u64, u64),
    Compute(u64),
    GetOrInsertWith(u64, u64),
    Retain,
    InsertUnderSnapshot(u64, u64),
}

/// Distinct keys the sequence uses.
const KEYS: u64 = 48;

/// The `step`-th operation: a fixed mix, most of them inserts and removes so that the tables
/// grow, fill with tombstones and rehash.
fn op(step: u64) -> Op {
    let mixed = step.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let key = mixed % KEYS;
    let value = step + 1;
    match (mixed >> 8) % 20 {
        0..=6 => Op::Insert(key, value),
        7..=9 => Op::Remove(key),
        10 => Op::Get(key),
        11 => Op::Increment(key),
        12 => Op::Upsert(key, value),
        13 | 14 => Op::Compute(key),
        15 => Op::GetOrInsertWith(key, value),
        16 if step.is_multiple_of(7) => Op::Retain,
        16 | 17 => Op::InsertUnderSnapshot(key, value),
        _ => Op::Insert(key, value),
    }
}

/// Runs `op` on `map`, checks its result against `model` and applies it there.
fn apply<M: Subject>(map: &M, model: &mut BTreeMap<u64, u64>, op: Op) {
    match op {
        Op::Insert(key, value) => {
            assert_eq!(map.insert(key, value), model.insert(key, value), "{op:?}")
        }
        Op::Remove(key) => assert_eq!(map.remove(key), model.remove(&key), "{op:?}"),
        Op::Get(key) => assert_eq!(map.get(key), model.get(&key).copied(), "{op:?}"),
        Op::Increment(key) => {
            let result = map.increment(key);
            let expected = model.get_mut(&key).map(|value| {
                *value += 1;
                *value
            });
            assert_eq!(result, expected, "{op:?}");
        }
        Op::Upsert(key, value) => {
            let result = map.upsert(key, value);
            let stored = model
                .entry(key)
                .and_modify(|stored| *stored += 1)
                .or_insert(value);
            assert_eq!(result, *stored, "{op:?}");
        }
        Op::Compute(key) => {
            let result = map.compute(key);
            let expected = toggle(model.get(&key).copied());
            match expected {
                Some(value) => model.insert(key, value),
                None => model.remove(&key),
            };
            assert_eq!(result, expected, "{op:?}");
        }
        Op::GetOrInsertWith(key, value) => {
            let result = map.get_or_insert_with(key, value);
            assert_eq!(result, *model.entry(key).or_insert(value), "{op:?}");
        }
        Op::Retain => {
            map.retain_keys_not_divisible_by_three();
            model.retain(|key, _| key % 3 != 0);
        }
        Op::InsertUnderSnapshot(key, value) => assert_eq!(
            map.insert_under_snapshot(key, value),
            model.insert(key, value),
            "{op:?}"
        ),
    }
}

/// What a `retain` whose closure panicked left: it may have visited some entries and not the
/// others (as std's `HashMap::retain` does), so `now` must be `before` less some of the entries
/// the closure rejects.
fn partly_retained(before: &BTreeMap<u64, u64>, now: BTreeMap<u64, u64>) -> BTreeMap<u64, u64> {
    for (key, value) in before {
        assert!(
            now.get(key) == Some(value) || key % 3 == 0,
            "retain lost key {key}, which it keeps"
        );
    }
    assert!(
        now.iter()
            .all(|(key, value)| before.get(key) == Some(value)),
        "retain changed or added an entry"
    );
    now
}

/// Keeps injected panics out of the test output; everything else reaches the default hook.
pub fn silence_injected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Injected>() {
                default(info);
            }
        }));
    });
}

fn is_injected(payload: &(dyn Any + Send)) -> bool {
    payload.is::<Injected>()
}

/// Steps of the fixed sequence per run.
const STEPS: u64 = 200;

/// For each kind of user code and each `nth` in `1..=calls`, runs the fixed sequence on a
/// fresh map with that code panicking on its `nth` call, and checks that the map loses
/// nothing, keeps working, and drops every key and value exactly once. Returns how many
/// panics were injected.
pub fn sweep<M: Subject>(new_map: impl Fn() -> M, calls: usize) -> usize {
    silence_injected_panics();
    let mut injected = 0;
    for code in [
        UserCode::Hash,
        UserCode::Eq,
        UserCode::Clone,
        UserCode::Closure,
    ] {
        for nth in 1..=calls {
            let map = new_map();
            let mut model = BTreeMap::new();
            arm(code, nth);
            for step in 0..STEPS {
                let op = op(step);
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                    let mut after = model.clone();
                    apply(&map, &mut after, op);
                    after
                }));
                match outcome {
                    Ok(after) => model = after,
                    Err(payload) if is_injected(&*payload) => {
                        injected += 1;
                        if let Op::Retain = op {
                            model = partly_retained(&model, map.entries());
                        }
                    }
                    Err(payload) => panic::resume_unwind(payload),
                }
                assert_eq!(
                    map.entries(),
                    model,
                    "{code:?} panicking on call {nth}, after step {step} ({op:?})"
                );
            }
            disarm();
            drop(map);
            assert_eq!(
                live_objects(),
                0,
                "{code:?} panicking on call {nth}: keys or values leaked"
            );
            assert_eq!(
                double_drops(),
                0,
                "{code:?} panicking on call {nth}: a key or value dropped twice"
            );
        }
    }
    injected
}

/// Runs `threads` threads of `rounds` upserts each, over `keys` keys, whose update closures
/// panic on every seventh round, and returns how many upserts returned. `upsert(key, update)`
/// runs one upsert of `key` (inserting 1) with `update` as its update closure.
pub fn upserts_some_of_which_panic(
    threads: u32,
    rounds: u32,
    keys: u32,
    upsert: impl Fn(u32, &dyn Fn(&u32) -> u32) + Sync,
) -> u32 {
    silence_injected_panics();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    (0..rounds)
                        .filter(|round| {
                            let update = |count: &u32| {
                                if round % 7 == 3 {
                                    inject_panic();
                                }
                                count + 1
                            };
                            panic::catch_unwind(AssertUnwindSafe(|| upsert(round % keys, &update)))
                                .is_ok()
                        })
                        .count() as u32
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .sum()
    })
}
