//! The correctness pre-check every map passes before it is timed: a map that gives wrong
//! answers is reported, not measured.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::adapter::{MapAdapter, Worker};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;
use crate::maps::MapVisitor;
use crate::workload::{SplitMix64, BATCH_SIZES};

/// Distinct keys the single-threaded check draws from: small, so keys repeat often.
const CHECK_KEYS: u64 = 512;
/// Operations of the single-threaded check.
const CHECK_OPS: usize = 5000;
/// Keys each thread inserts in the two-thread check.
const KEYS_PER_THREAD: u64 = 1000;

/// Runs [`check`] for the visited adapter.
pub struct CheckVisitor<'a, S>(pub &'a S);

impl<K: BenchKey, S: BenchHasher> MapVisitor<K, S> for CheckVisitor<'_, S> {
    type Output = Result<(), String>;

    fn visit<A: MapAdapter<K, S>>(self) -> Result<(), String> {
        check::<K, S, A>(self.0)
    }
}

/// Check adapter `A` against a std `HashMap` model: random single-threaded operations with
/// every answer compared, then (for shared maps) two threads inserting disjoint keys, all of
/// which must be there afterwards. A panic counts as a failure.
pub fn check<K: BenchKey, S: BenchHasher, A: MapAdapter<K, S>>(hasher: &S) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        against_model::<K, S, A>(hasher)?;
        if !A::PRIVATE {
            disjoint_inserts::<K, S, A>(hasher)?;
        }
        Ok(())
    }))
    .unwrap_or_else(|_| Err("panicked".to_string()))
}

fn against_model<K: BenchKey, S: BenchHasher, A: MapAdapter<K, S>>(
    hasher: &S,
) -> Result<(), String> {
    let map = A::build(None, hasher.clone());
    let mut w = map.worker();
    let mut model: HashMap<K, u64> = HashMap::new();
    let mut rng = SplitMix64::new(0x5EED_C0DE);
    for i in 0..CHECK_OPS {
        let key = K::nth(rng.below(CHECK_KEYS));
        match rng.below(4) {
            0 => {
                let (got, want) = (w.get(&key), model.get(&key).copied());
                if got != want {
                    return Err(format!("get({key:?}) = {got:?}, expected {want:?}"));
                }
            }
            1 => {
                let value = rng.next_u64() >> 1;
                w.insert(key.clone(), value);
                model.insert(key, value);
            }
            2 => {
                let (got, want) = (w.remove(&key), model.remove(&key).is_some());
                if got != want {
                    return Err(format!("remove({key:?}) = {got}, expected {want}"));
                }
            }
            _ => {
                let want = model.get_mut(&key).map(|v| *v += 1).is_some();
                let got = w.update(&key);
                if got != want {
                    return Err(format!("update({key:?}) = {got}, expected {want}"));
                }
            }
        }
        if i % 100 == 99 && w.len() != model.len() {
            return Err(format!("len() = {}, expected {}", w.len(), model.len()));
        }
        if i % 64 == 63 {
            w.repin();
        }
    }
    for (key, &want) in &model {
        if w.get(key) != Some(want) {
            return Err(format!(
                "get({key:?}) = {:?} at the end, expected {want}",
                w.get(key)
            ));
        }
    }
    batched_lookups_match(&mut w, &model)
}

/// A batched lookup of every key the check used, present or not, in batches of the largest
/// size the batched workload takes, must give what the model holds, in order.
fn batched_lookups_match<K: BenchKey, W: Worker<K>>(
    w: &mut W,
    model: &HashMap<K, u64>,
) -> Result<(), String> {
    let keys: Vec<K> = (0..CHECK_KEYS).map(K::nth).collect();
    let refs: Vec<&K> = keys.iter().collect();
    for batch in refs.chunks(*BATCH_SIZES.end()) {
        let mut seen = 0;
        let mut wrong = None;
        w.get_each(batch, |index, got| {
            let want = model.get(batch[index]).copied();
            if index != seen || got != want {
                wrong.get_or_insert(format!(
                    "get_each gave {got:?} for key {:?} at {index}, expected {want:?} at {seen}",
                    batch[index]
                ));
            }
            seen += 1;
        });
        if let Some(wrong) = wrong {
            return Err(wrong);
        }
        if seen != batch.len() {
            return Err(format!(
                "get_each visited {seen} of a batch of {}",
                batch.len()
            ));
        }
    }
    Ok(())
}

fn disjoint_inserts<K: BenchKey, S: BenchHasher, A: MapAdapter<K, S>>(
    hasher: &S,
) -> Result<(), String> {
    let map = A::build(None, hasher.clone());
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let map = &map;
            s.spawn(move || {
                let mut w = map.worker();
                for i in t * KEYS_PER_THREAD..(t + 1) * KEYS_PER_THREAD {
                    w.insert(K::nth(i), i);
                }
            });
        }
    });
    let mut w = map.worker();
    if w.len() != 2 * KEYS_PER_THREAD as usize {
        return Err(format!(
            "len() = {} after two threads inserted {} distinct keys",
            w.len(),
            2 * KEYS_PER_THREAD
        ));
    }
    for i in 0..2 * KEYS_PER_THREAD {
        if w.get(&K::nth(i)) != Some(i) {
            return Err(format!("key {i} inserted by another thread is missing"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::MapId;
    use std::sync::Mutex;

    type Hasher = foldhash::fast::FixedState;

    fn hasher() -> Hasher {
        Hasher::default()
    }

    /// A map that forgets every 100th insert: the check must catch it.
    struct ForgetfulMap(Mutex<HashMap<u64, u64>>, Mutex<u64>);

    impl MapAdapter<u64, Hasher> for ForgetfulMap {
        type Worker<'a> = &'a Self;
        fn build(_: Option<usize>, _: Hasher) -> Self {
            ForgetfulMap(Mutex::default(), Mutex::default())
        }
        fn worker(&self) -> &Self {
            self
        }
    }

    impl Worker<u64> for &ForgetfulMap {
        fn get(&mut self, key: &u64) -> Option<u64> {
            self.0.lock().unwrap().get(key).copied()
        }
        fn insert(&mut self, key: u64, value: u64) {
            let mut n = self.1.lock().unwrap();
            *n += 1;
            if !(*n).is_multiple_of(100) {
                self.0.lock().unwrap().insert(key, value);
            }
        }
        fn remove(&mut self, key: &u64) -> bool {
            self.0.lock().unwrap().remove(key).is_some()
        }
        fn update(&mut self, key: &u64) -> bool {
            self.0
                .lock()
                .unwrap()
                .get_mut(key)
                .map(|v| *v += 1)
                .is_some()
        }
        fn len(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    #[test]
    fn a_broken_adapter_is_caught() {
        let err = check::<u64, Hasher, ForgetfulMap>(&hasher()).unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn every_registered_map_and_floor_passes() {
        let floors = [
            MapId::Floor,
            MapId::GrowingFloor,
            MapId::GrowingFloorPlainCopy,
            MapId::StopTheWorld,
        ];
        for &id in MapId::ALL.iter().chain(&floors) {
            id.visit::<u64, Hasher, _>(CheckVisitor(&hasher()))
                .unwrap_or_else(|e| panic!("{}: {e}", id.name()));
            id.visit::<String, Hasher, _>(CheckVisitor(&hasher()))
                .unwrap_or_else(|e| panic!("{} (String keys): {e}", id.name()));
        }
    }
}
