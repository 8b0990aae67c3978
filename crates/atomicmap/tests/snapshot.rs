//! Point-in-time snapshots of every map: the acceptance test (a writer rewrites keys
//! `k_0..k_{n-1}` in order, round after round, while readers check that every snapshot has the
//! shape the map had at some instant), its remove-and-reinsert variant (the ABA case), the
//! demonstration that weakly consistent iteration fails the same check, and the view's API.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use atomicmap::{AtomicMap, MapSnapshot, RcuMap, ReadMostlyMap, ShardedMap};

/// Keys the writer rewrites per round.
const KEYS: u64 = 10_000;

/// How long readers take snapshots; `ATOMICMAP_SNAPSHOT_SECS` overrides it.
fn reading_time() -> Duration {
    let seconds = std::env::var("ATOMICMAP_SNAPSHOT_SECS")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(seconds)
}

/// Fewest results the readers check, however slow the build (sanitizers): reading goes on
/// past the reading time until they have, for at most ten times as long.
const MIN_CHECKED: u64 = 10;

fn keep_reading(deadline: Instant, checked: &AtomicU64) -> bool {
    let now = Instant::now();
    now < deadline
        || (checked.load(Ordering::Relaxed) < MIN_CHECKED && now < deadline + 9 * reading_time())
}

/// What the writer does to key `k_j` in round `i`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Round {
    /// `k_j = i`.
    Overwrite,
    /// Remove `k_j`, then insert `k_j = i`.
    RemoveAndReinsert,
}

/// Checks that `entries` is a state the writer's map passes through: every key once; values
/// non-increasing in key order and at most one apart (round `i` on a prefix, `i - 1` after);
/// with removes, at most one key missing, exactly at the border between the two rounds.
fn check_shape(entries: &[(u64, u64)], round: Round) -> Result<(), String> {
    let mut values: Vec<Option<u64>> = vec![None; KEYS as usize];
    for &(key, value) in entries {
        let slot = values
            .get_mut(key as usize)
            .ok_or_else(|| format!("unknown key {key}"))?;
        if slot.replace(value).is_some() {
            return Err(format!("key {key} seen twice"));
        }
    }
    let missing: Vec<usize> = (0..values.len()).filter(|&j| values[j].is_none()).collect();
    let allowed_missing = match round {
        Round::Overwrite => 0,
        Round::RemoveAndReinsert => 1,
    };
    if missing.len() > allowed_missing {
        return Err(format!(
            "{} keys missing: {:?}...",
            missing.len(),
            &missing[..3.min(missing.len())]
        ));
    }
    let present: Vec<(usize, u64)> = values
        .iter()
        .enumerate()
        .filter_map(|(j, value)| value.map(|value| (j, value)))
        .collect();
    for pair in present.windows(2) {
        let ((earlier, older), (later, newer)) = (pair[0], pair[1]);
        if newer > older {
            return Err(format!(
                "k_{later} = {newer} is newer than k_{earlier} = {older}"
            ));
        }
    }
    let newest = present.first().map_or(0, |&(_, value)| value);
    let oldest = present.last().map_or(0, |&(_, value)| value);
    if newest - oldest > 1 {
        return Err(format!(
            "values from {oldest} to {newest}: more than two rounds"
        ));
    }
    if let Some(&gap) = missing.first() {
        let before = gap.checked_sub(1).and_then(|j| values[j]);
        let after = values.get(gap + 1).copied().flatten();
        if let (Some(before), Some(after)) = (before, after) {
            if before != after + 1 {
                return Err(format!(
                    "k_{gap} missing inside round {before}, not at its border"
                ));
            }
        }
    }
    Ok(())
}

/// One concurrent check: a writer runs rounds on `map` while `readers` threads look at all of
/// its entries and check every result. Returns (results checked, results showing two rounds,
/// first failure).
fn run_rounds<M: RoundsMap>(round: Round, map: &M, readers: usize) -> (u64, u64, Option<String>) {
    for key in 0..KEYS {
        map.write(key, 0);
    }
    let stop = AtomicBool::new(false);
    let checked = AtomicU64::new(0);
    let mixed = AtomicU64::new(0);
    let failure = std::sync::Mutex::new(None);
    let deadline = Instant::now() + reading_time();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut i = 1;
            while !stop.load(Ordering::Relaxed) {
                for key in 0..KEYS {
                    if round == Round::RemoveAndReinsert {
                        map.remove(key);
                    }
                    map.write(key, i);
                }
                i += 1;
            }
        });
        let readers: Vec<_> = (0..readers)
            .map(|_| {
                scope.spawn(|| {
                    let mut last_version = 0;
                    while keep_reading(deadline, &checked) {
                        let (entries, version) = map.entries();
                        let verdict = check_shape(&entries, round).and_then(|()| {
                            if version < last_version {
                                Err(format!(
                                    "version went back from {last_version} to {version}"
                                ))
                            } else {
                                Ok(())
                            }
                        });
                        last_version = version;
                        checked.fetch_add(1, Ordering::Relaxed);
                        let values: std::collections::HashSet<u64> =
                            entries.iter().map(|&(_, value)| value).collect();
                        if values.len() > 1 {
                            mixed.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Err(error) = verdict {
                            failure.lock().unwrap().get_or_insert(error);
                            return;
                        }
                    }
                })
            })
            .collect();
        for reader in readers {
            reader.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let failure = failure.into_inner().unwrap();
    (checked.into_inner(), mixed.into_inner(), failure)
}

/// The acceptance test proper: every snapshot has the shape, and the test did observe
/// snapshots taken in the middle of a round (so it checked something).
fn assert_snapshots_are_consistent<M: RoundsMap>(round: Round, map: &M) {
    let (checked, mixed, failure) = run_rounds(round, map, 2);
    if let Some(failure) = failure {
        panic!("an inconsistent snapshot after {checked} checks: {failure}");
    }
    assert!(checked >= MIN_CHECKED, "only {checked} snapshots taken");
    assert!(
        mixed > 0,
        "no snapshot out of {checked} caught the writer mid-round"
    );
}

/// The demonstration: the same check on weakly consistent iteration finds a state the map
/// never had, within the reading time.
fn assert_iteration_is_caught_mixing_states<M>(map: &Iterated<M>)
where
    Iterated<M>: RoundsMap,
{
    let (checked, _, failure) = run_rounds(Round::Overwrite, map, 1);
    assert!(
        failure.is_some(),
        "{checked} weakly consistent iterations all looked like snapshots"
    );
}

fn entries_of<S>(snapshot: &MapSnapshot<u64, u64, S>) -> (Vec<(u64, u64)>, u64) {
    let entries: Vec<(u64, u64)> = snapshot.iter().map(|(&key, &value)| (key, value)).collect();
    assert_eq!(entries.len(), snapshot.len(), "iter and len disagree");
    (entries, snapshot.version())
}

/// The one adapter the checks drive a map through: `u64` keys and values, a write, a remove,
/// and a look at all entries (with the version it carries, 0 when it has none). Each map looks
/// through its `snapshot()`, unless wrapped in [`Iterated`].
trait RoundsMap: Sync {
    fn write(&self, key: u64, value: u64);
    fn remove(&self, key: u64);
    fn entries(&self) -> (Vec<(u64, u64)>, u64);
}

impl RoundsMap for AtomicMap<u64, u64> {
    fn write(&self, key: u64, value: u64) {
        self.insert(key, value);
    }
    fn remove(&self, key: u64) {
        AtomicMap::remove(self, &key);
    }
    fn entries(&self) -> (Vec<(u64, u64)>, u64) {
        entries_of(&self.snapshot())
    }
}

impl RoundsMap for ShardedMap<u64, u64> {
    fn write(&self, key: u64, value: u64) {
        self.insert(key, value);
    }
    fn remove(&self, key: u64) {
        ShardedMap::remove(self, &key);
    }
    fn entries(&self) -> (Vec<(u64, u64)>, u64) {
        entries_of(&self.snapshot())
    }
}

impl RoundsMap for ReadMostlyMap<u64, u64> {
    fn write(&self, key: u64, value: u64) {
        self.store(key, value);
    }
    fn remove(&self, key: u64) {
        self.delete(&key);
    }
    fn entries(&self) -> (Vec<(u64, u64)>, u64) {
        entries_of(&self.snapshot())
    }
}

impl RoundsMap for RcuMap<u64, u64> {
    fn write(&self, key: u64, value: u64) {
        self.insert(key, value);
    }
    fn remove(&self, key: u64) {
        RcuMap::remove(self, &key);
    }
    fn entries(&self) -> (Vec<(u64, u64)>, u64) {
        entries_of(&self.snapshot())
    }
}

/// An `AtomicMap` whose keys and values are boxed (strings), driven with the numbers they spell.
impl RoundsMap for AtomicMap<String, String> {
    fn write(&self, key: u64, value: u64) {
        self.insert(key.to_string(), value.to_string());
    }
    fn remove(&self, key: u64) {
        AtomicMap::remove(self, &key.to_string());
    }
    fn entries(&self) -> (Vec<(u64, u64)>, u64) {
        let snapshot = self.snapshot();
        let entries = snapshot
            .iter()
            .map(|(key, value)| (key.parse().unwrap(), value.parse().unwrap()))
            .collect();
        (entries, snapshot.version())
    }
}

/// A map looked at through its weakly consistent `iter()` instead of a snapshot.
struct Iterated<M>(M);

impl RoundsMap for Iterated<AtomicMap<u64, u64>> {
    fn write(&self, key: u64, value: u64) {
        RoundsMap::write(&self.0, key, value);
    }
    fn remove(&self, key: u64) {
        RoundsMap::remove(&self.0, key);
    }
    fn entries(&self) -> (Vec<(u64, u64)>, u64) {
        (self.0.iter().collect(), 0)
    }
}

impl RoundsMap for Iterated<ShardedMap<u64, u64>> {
    fn write(&self, key: u64, value: u64) {
        RoundsMap::write(&self.0, key, value);
    }
    fn remove(&self, key: u64) {
        RoundsMap::remove(&self.0, key);
    }
    fn entries(&self) -> (Vec<(u64, u64)>, u64) {
        (self.0.iter().collect(), 0)
    }
}

/// The acceptance test on a new map of type `M`.
fn acceptance<M: RoundsMap + Default>(round: Round) {
    assert_snapshots_are_consistent(round, &M::default());
}

#[test]
fn atomic_map_snapshot_acceptance_overwrite() {
    acceptance::<AtomicMap<u64, u64>>(Round::Overwrite);
}

#[test]
fn atomic_map_snapshot_acceptance_remove_and_reinsert() {
    acceptance::<AtomicMap<u64, u64>>(Round::RemoveAndReinsert);
}

#[test]
fn sharded_map_snapshot_acceptance_overwrite() {
    acceptance::<ShardedMap<u64, u64>>(Round::Overwrite);
}

#[test]
fn sharded_map_snapshot_acceptance_remove_and_reinsert() {
    acceptance::<ShardedMap<u64, u64>>(Round::RemoveAndReinsert);
}

#[test]
fn read_mostly_map_snapshot_acceptance_overwrite() {
    acceptance::<ReadMostlyMap<u64, u64>>(Round::Overwrite);
}

#[test]
fn read_mostly_map_snapshot_acceptance_remove_and_reinsert() {
    acceptance::<ReadMostlyMap<u64, u64>>(Round::RemoveAndReinsert);
}

#[test]
fn rcu_map_snapshot_acceptance_overwrite() {
    acceptance::<RcuMap<u64, u64>>(Round::Overwrite);
}

#[test]
fn rcu_map_snapshot_acceptance_remove_and_reinsert() {
    acceptance::<RcuMap<u64, u64>>(Round::RemoveAndReinsert);
}

#[test]
fn atomic_map_snapshot_acceptance_with_boxed_keys_and_values() {
    acceptance::<AtomicMap<String, String>>(Round::RemoveAndReinsert);
}

#[test]
fn atomic_map_iter_is_not_a_snapshot() {
    assert_iteration_is_caught_mixing_states(&Iterated(AtomicMap::<u64, u64>::new()));
}

#[test]
fn sharded_map_iter_is_not_a_snapshot() {
    assert_iteration_is_caught_mixing_states(&Iterated(ShardedMap::<u64, u64>::new()));
}

/// `range` reads each key at its own moment: a round written while it runs (here from inside
/// its callback, so the interleaving is certain) shows up on later keys only.
#[test]
fn read_mostly_map_range_is_not_a_snapshot_but_snapshot_is() {
    let map: ReadMostlyMap<u64, u64> = (0..KEYS).map(|key| (key, 0)).collect();
    let mut ranged = Vec::new();
    let mut snapshot = None;
    map.range(|&key, &value| {
        if ranged.is_empty() {
            snapshot = Some(map.snapshot());
            for key in 0..KEYS {
                map.store(key, 1);
            }
        }
        ranged.push((key, value));
        true
    });
    // Only the first key visited kept its old value: a state the map had only if that key
    // happened to be the last one written.
    let first = ranged[0].0;
    assert_eq!(ranged.iter().filter(|&&(_, value)| value == 0).count(), 1);
    if first != KEYS - 1 {
        assert!(check_shape(&ranged, Round::Overwrite).is_err());
    }
    let snapshot = snapshot.unwrap();
    assert_eq!(snapshot.len(), KEYS as usize);
    assert!(snapshot.iter().all(|(_, &value)| value == 0));
}

/// The view's API on a snapshot of each map: lookups, sorted order, copies into other map
/// types, and isolation from later writes.
#[test]
fn snapshot_views_offer_lookup_sorting_and_copies() {
    fn check<S: std::hash::BuildHasher + Clone>(
        snapshot: MapSnapshot<u64, u64, S>,
        after_writes: impl FnOnce(),
    ) {
        after_writes();
        assert_eq!(snapshot.len(), 100);
        assert!(!snapshot.is_empty());
        for key in 0..100 {
            assert_eq!(snapshot.get(&key), Some(&(key * 10)), "key {key}");
        }
        assert_eq!(snapshot.get(&100), None);
        assert!(!snapshot.contains_key(&1000));
        let keys: Vec<u64> = snapshot.sorted_keys().into_iter().copied().collect();
        assert_eq!(keys, (0..100).collect::<Vec<_>>());
        let sorted: Vec<(u64, u64)> = snapshot.iter_sorted().map(|(&k, &v)| (k, v)).collect();
        assert_eq!(
            sorted,
            (0..100).map(|key| (key, key * 10)).collect::<Vec<_>>()
        );
        let btree: BTreeMap<u64, u64> = snapshot.to_map();
        assert_eq!(btree.len(), 100);
        let atomic: AtomicMap<u64, u64> = snapshot.to_map();
        assert_eq!(atomic.get(&42), Some(420));
        let sharded: ShardedMap<u64, u64> = snapshot.to_map();
        assert_eq!(sharded.get(&42), Some(420));
        let mut copy = HashMap::new();
        snapshot.copy_into(&mut copy);
        assert_eq!(copy.len(), 100);
        assert_eq!(snapshot.iter().len(), 100);
        assert_eq!((&snapshot).into_iter().count(), 100);
        assert!(format!("{snapshot:?}").contains("MapSnapshot"));
    }
    let entries = || (0..100u64).map(|key| (key, key * 10));

    let atomic: AtomicMap<u64, u64> = entries().collect();
    check(atomic.snapshot(), || {
        atomic.insert(0, 1);
        atomic.insert(1000, 1);
        atomic.remove(&5);
    });
    let sharded: ShardedMap<u64, u64> = entries().collect();
    check(sharded.snapshot(), || {
        sharded.insert(0, 1);
        sharded.insert(1000, 1);
        sharded.remove(&5);
        sharded.clear();
    });
    let read_mostly: ReadMostlyMap<u64, u64> = entries().collect();
    check(read_mostly.snapshot(), || {
        read_mostly.store(0, 1);
        read_mostly.store(1000, 1);
        read_mostly.delete(&5);
    });
    let rcu: RcuMap<u64, u64> = entries().collect();
    check(rcu.snapshot(), || {
        rcu.insert(0, 1);
        rcu.insert(1000, 1);
        rcu.remove(&5);
    });
}

/// Versions never go back, and move forward when the map changed in between.
#[test]
fn snapshot_versions_grow_with_history() {
    let atomic: AtomicMap<u64, u64> = AtomicMap::new();
    let first = atomic.snapshot().version();
    atomic.insert(1, 1);
    let second = atomic.snapshot().version();
    assert!(second > first);

    let sharded: ShardedMap<u64, u64> = ShardedMap::new();
    assert_eq!(sharded.snapshot().version(), 0);
    sharded.insert(1, 1);
    sharded.insert(2, 2);
    assert_eq!(sharded.snapshot().version(), 2);

    let read_mostly: ReadMostlyMap<u64, u64> = ReadMostlyMap::new();
    let first = read_mostly.snapshot().version();
    read_mostly.store(1, 1);
    assert!(read_mostly.snapshot().version() > first);

    let rcu: RcuMap<u64, u64> = RcuMap::new();
    let first = rcu.snapshot().version();
    rcu.insert(1, 1);
    assert_eq!(rcu.snapshot().version(), first + 1);
}

/// A snapshot of a `ShardedMap` shares its shards: writes made while it is alive copy the
/// shard they touch, and the map and the snapshot then evolve apart.
#[test]
fn sharded_map_snapshot_is_copy_on_write() {
    let map: ShardedMap<u64, String> = ShardedMap::with_shards(4).unwrap();
    for key in 0..1000 {
        map.insert(key, key.to_string());
    }
    let snapshot = map.snapshot();
    for key in 0..1000 {
        map.get_mut(&key, |value| value.push('!'));
    }
    map.insert(5000, "new".into());
    assert!(snapshot
        .iter()
        .all(|(key, value)| *value == key.to_string()));
    assert_eq!(map.get(&7).as_deref(), Some("7!"));
    assert_eq!(snapshot.get(&5000), None);
    drop(snapshot);
    map.insert(1, "after".into());
    assert_eq!(map.get(&1).as_deref(), Some("after"));
}

/// Snapshots of an `AtomicMap` while another thread grows and shrinks it: every snapshot has
/// exactly the keys the writer had completed and none it had not started (keys are inserted
/// in ascending order, then removed in ascending order).
#[test]
fn atomic_map_snapshot_during_resizes() {
    let map: AtomicMap<u64, u64> = AtomicMap::new();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for key in 0..20_000 {
                    map.insert(key, key);
                }
                for key in 0..20_000 {
                    map.remove(&key);
                }
            }
        });
        let deadline = Instant::now() + reading_time();
        let mut taken = 0;
        while Instant::now() < deadline {
            let snapshot = map.snapshot();
            let keys = snapshot.sorted_keys();
            taken += 1;
            if let (Some(&&low), Some(&&high)) = (keys.first(), keys.last()) {
                assert_eq!(
                    (high - low + 1) as usize,
                    keys.len(),
                    "keys of one snapshot are not one contiguous range"
                );
                assert!(
                    low == 0 || high == 19_999,
                    "neither a growing prefix nor a shrinking suffix"
                );
            }
            assert!(snapshot.iter().all(|(key, value)| key == value));
        }
        stop.store(true, Ordering::Relaxed);
        assert!(taken > 0);
    });
}
