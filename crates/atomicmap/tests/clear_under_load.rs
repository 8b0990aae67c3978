//! `clear()` (and `retain` that removes everything) racing inserts, on every map: three threads
//! insert random keys while a fourth clears the map in a loop, until they are done. Every
//! thread must finish, and the map must still work afterwards. Each test runs in a child
//! process under a watchdog (`common/child.rs`), so a livelock fails it instead of stalling
//! the run.
//!
//! `ATOMICMAP_STRESS_SCALE` (percent, default 100) scales the insert counts.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use atomicmap::{AtomicMap, DefaultHashBuilder, RcuMap, ReadMostlyMap, ShardedMap};
use common::child::child_test;
use common::maps::TestMap;
use common::scale::scaled;

const INSERTERS: u64 = 3;
const INSERTS_PER_THREAD: usize = 1 << 16;
/// Rounds for `AtomicMap`, whose livelock shows in a minority of rounds; one for the others.
const ATOMIC_MAP_ROUNDS: usize = 8;

/// xorshift64*: a different stream of keys per thread.
fn random_keys(seed: u64) -> impl Iterator<Item = u64> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    std::iter::repeat_with(move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 1
    })
}

/// `rounds` times, on a new map: three inserters against one thread that calls `wipe` until
/// they are done; then checks that the map still stores, reads and lists a key. The livelock
/// this guards against shows in a minority of rounds, hence several.
fn inserts_racing<M: TestMap<u64, u64, Hasher = DefaultHashBuilder>>(
    rounds: usize,
    wipe: impl Fn(&M) + Sync + Copy,
) {
    for round in 0..rounds {
        race_once(round as u64, wipe);
    }
}

fn race_once<M: TestMap<u64, u64, Hasher = DefaultHashBuilder>>(
    round: u64,
    wipe: impl Fn(&M) + Sync,
) {
    let map = M::with_hasher(DefaultHashBuilder::default());
    let inserts = scaled(INSERTS_PER_THREAD);
    let started = Instant::now();
    let inserters_left = AtomicU64::new(INSERTERS);
    let mut wipes = 0;
    thread::scope(|scope| {
        for inserter in 0..INSERTERS {
            let (map, inserters_left) = (&map, &inserters_left);
            scope.spawn(move || {
                for key in random_keys(round * INSERTERS + inserter + 1).take(inserts) {
                    map.insert(key, key);
                }
                inserters_left.fetch_sub(1, Ordering::SeqCst);
            });
        }
        scope.spawn(|| {
            while inserters_left.load(Ordering::SeqCst) > 0 {
                wipe(&map);
                wipes += 1;
            }
        });
    });
    // Above every random key (they are shifted right by one bit).
    let marker = u64::MAX;
    map.insert(marker, 1);
    assert_eq!(
        map.get(&marker),
        Some(1),
        "{}: a key after the race",
        M::NAME
    );
    let listed = map.snapshot_entries();
    assert!(listed.contains(&(marker, 1)), "{}: its snapshot", M::NAME);
    assert!(
        listed
            .iter()
            .all(|&(key, value)| key == value || key == marker),
        "{}: an entry that was never inserted",
        M::NAME
    );
    let _ = writeln!(
        std::io::stderr(),
        "{}: {} inserts racing {wipes} clears finished in {:.1?}",
        M::NAME,
        INSERTERS as usize * inserts,
        started.elapsed()
    );
}

fn clear<M: TestMap<u64, u64>>(map: &M) {
    map.clear();
}

fn retain_nothing<M: TestMap<u64, u64>>(map: &M) {
    map.retain(|_, _| false);
}

child_test! {
    fn atomic_map_clear_racing_inserts() {
        inserts_racing::<AtomicMap<u64, u64>>(ATOMIC_MAP_ROUNDS, clear);
    }
}

child_test! {
    fn atomic_map_retain_nothing_racing_inserts() {
        inserts_racing::<AtomicMap<u64, u64>>(ATOMIC_MAP_ROUNDS, retain_nothing);
    }
}

child_test! {
    fn sharded_map_clear_racing_inserts() {
        inserts_racing::<ShardedMap<u64, u64>>(1, clear);
    }
}

child_test! {
    fn read_mostly_map_clear_racing_inserts() {
        inserts_racing::<ReadMostlyMap<u64, u64>>(1, clear);
    }
}

child_test! {
    fn rcu_map_clear_racing_inserts() {
        inserts_racing::<RcuMap<u64, u64>>(1, clear);
    }
}
