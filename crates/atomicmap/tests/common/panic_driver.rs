//! The workload driver of the panic injection sweeps (`tests/panic_injection.rs`) and of the
//! `panic_injection` fuzz target: runs steps on a map with keys of its own, keeps a model of
//! what each completed step committed, and after each injected panic checks that nothing was
//! lost, `snapshot()` returns and agrees, and the map keeps working.
//!
//! Needs its sibling modules `faults` and `maps`.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use super::faults::{attempt, trip, Site, TestKey, Value};
use super::maps::TestMap;

/// Keys of thread `t` are `t * KEY_SPACE ..`; the last one is the probe of "keeps working".
pub const KEY_SPACE: u64 = 1_000;
pub const PROBE_KEY: u64 = KEY_SPACE - 1;

#[derive(Clone, Copy, Debug)]
pub enum Step {
    Insert(u64),
    Remove(u64),
    GetOrInsert(u64),
    Update(u64),
    Get(u64),
    /// Removes one key with `retain`.
    RetainAllBut(u64),
    Snapshot,
}

/// One thread's view: its keys, the model of what they hold (key id to value id), and the
/// map.
pub struct Driver<'m, M, K> {
    map: &'m M,
    key_type: PhantomData<fn() -> K>,
    thread: u64,
    pub model: BTreeMap<u64, u64>,
    next_value: u64,
}

impl<'m, K: TestKey, M: TestMap<K, Value>> Driver<'m, M, K> {
    pub fn new(map: &'m M, thread: u64) -> Self {
        Driver {
            map,
            key_type: PhantomData,
            thread,
            model: BTreeMap::new(),
            next_value: thread * KEY_SPACE * 1_000,
        }
    }

    fn key_id(&self, local: u64) -> u64 {
        self.thread * KEY_SPACE + local
    }

    fn owns(&self, id: u64) -> bool {
        id / KEY_SPACE == self.thread
    }

    fn fresh_value(&mut self) -> u64 {
        self.next_value += 1;
        self.next_value
    }

    pub fn run(&mut self, steps: &[Step]) {
        for &step in steps {
            self.step(step);
        }
    }

    /// Runs `step`; if it panicked, checks the map as the module docs say.
    pub fn step(&mut self, step: Step) {
        let map = self.map;
        let value_id = self.fresh_value();
        let (key, outcome) = match step {
            Step::Insert(local) => {
                let id = self.key_id(local);
                let result = attempt(|| map.insert(K::from_id(id), Value::new(value_id)));
                (id, result.map(|old| old.map(|v| v.id)))
            }
            Step::Remove(local) => {
                let id = self.key_id(local);
                let result = attempt(|| map.remove(&K::from_id(id)));
                (id, result.map(|old| old.map(|v| v.id)))
            }
            Step::GetOrInsert(local) => {
                let id = self.key_id(local);
                let result = attempt(|| {
                    map.get_or_insert_with(K::from_id(id), || {
                        trip(Site::Closure);
                        Value::new(value_id)
                    })
                });
                (id, result.map(|got| Some(got.id)))
            }
            Step::Update(local) => {
                let id = self.key_id(local);
                let result = attempt(|| {
                    map.update(&K::from_id(id), |_| {
                        trip(Site::Closure);
                        Value::new(value_id)
                    })
                });
                (id, result.map(|got| got.map(|v| v.id)))
            }
            Step::Get(local) => {
                let id = self.key_id(local);
                let result = attempt(|| map.get(&K::from_id(id)));
                (id, result.map(|got| got.map(|v| v.id)))
            }
            Step::RetainAllBut(local) => {
                let id = self.key_id(local);
                let result = attempt(|| {
                    map.retain(|key, _| {
                        trip(Site::Closure);
                        key.id() != id
                    })
                });
                (id, result.map(|()| None))
            }
            Step::Snapshot => {
                let result = attempt(|| map.snapshot_entries());
                match result {
                    Ok(entries) => self.assert_entries_match(entries, "a snapshot"),
                    Err(()) => self.after_panic(step, None, &[]),
                }
                return;
            }
        };
        let id = key;
        let held = self.model.get(&id).copied();
        let stored = self.would_store(step, id, value_id);
        match outcome {
            Ok(returned) => {
                let expected = match step {
                    Step::Insert(_) | Step::Remove(_) | Step::Get(_) => held,
                    Step::GetOrInsert(_) | Step::Update(_) => stored,
                    Step::RetainAllBut(_) | Step::Snapshot => None,
                };
                assert_eq!(
                    returned,
                    expected,
                    "{}: {step:?} on key {id} returned {returned:?}, the model held {held:?}",
                    M::NAME
                );
                self.commit(id, stored);
            }
            Err(()) => self.after_panic(step, Some(id), &[held, stored]),
        }
    }

    fn commit(&mut self, id: u64, stored: Option<u64>) {
        match stored {
            Some(value) => self.model.insert(id, value),
            None => self.model.remove(&id),
        };
    }

    /// What `step` on `id` holds afterwards if it completes.
    fn would_store(&self, step: Step, id: u64, value_id: u64) -> Option<u64> {
        let held = self.model.get(&id).copied();
        match step {
            Step::Insert(_) => Some(value_id),
            Step::Remove(_) | Step::RetainAllBut(_) => None,
            Step::GetOrInsert(_) => held.or(Some(value_id)),
            Step::Update(_) => held.map(|_| value_id),
            Step::Get(_) | Step::Snapshot => held,
        }
    }

    /// The checks after a caught panic (module docs): `key` may hold any of `allowed`.
    fn after_panic(&mut self, step: Step, key: Option<u64>, allowed: &[Option<u64>]) {
        let map = self.map;
        if let Some(id) = key {
            let actual = map.get(&K::from_id(id)).map(|value| value.id);
            assert!(
                allowed.contains(&actual),
                "{}: after a panic in {step:?}, key {id} holds {actual:?}; allowed: {allowed:?}",
                M::NAME
            );
            self.commit(id, actual);
        }
        for (&id, &value) in &self.model {
            let actual = map.get(&K::from_id(id)).map(|value| value.id);
            assert_eq!(
                actual,
                Some(value),
                "{}: after a panic in {step:?}, key {id} is wrong",
                M::NAME
            );
        }
        self.assert_entries_match(map.snapshot_entries(), "the snapshot after a panic");
        let probe = self.key_id(PROBE_KEY);
        let value_id = self.fresh_value();
        assert!(map
            .insert(K::from_id(probe), Value::new(value_id))
            .is_none());
        let read = map.get(&K::from_id(probe)).map(|value| value.id);
        assert_eq!(read, Some(value_id), "{}: a new key after a panic", M::NAME);
        let removed = map.remove(&K::from_id(probe)).map(|value| value.id);
        assert_eq!(removed, Some(value_id), "{}: removing it", M::NAME);
    }

    /// `entries` restricted to this thread's keys must be exactly the model.
    fn assert_entries_match(&self, entries: Vec<(K, Value)>, what: &str) {
        let mine: BTreeMap<u64, u64> = entries
            .iter()
            .filter(|(key, _)| self.owns(key.id()))
            .map(|(key, value)| (key.id(), value.id))
            .collect();
        assert_eq!(
            mine,
            self.model,
            "{}: {what} of thread {}",
            M::NAME,
            self.thread
        );
    }
}
