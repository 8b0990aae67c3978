//! `stop-the-world growth`: not a map, a reference for the workloads that start empty with
//! more than one thread. It asks whether `AtomicMap`'s lock-free, cooperative resize costs more
//! than the simplest resize a shared table can make: stop every thread and copy.
//!
//! One table of the bare slots of `bare_growth.rs`, shared by every worker, doubling at 5/8
//! full into successors made and mapped when the map is made (on huge pages, as `AtomicMap`'s).
//! A grow stops the world, so its copy does less atomic work than a lock-free copy:
//! - nobody writes a table while it is copied, so the copy reads each old slot with plain
//!   loads and leaves it as it is: no seal of an empty slot, no `MOVED` mark on a carried one;
//! - every thread copies its share of the chunks, and claims each carried key in the successor
//!   with one CAS (two copiers may probe into the same successor slots).
//!
//! It is not a bound: its threads wait for each other at every grow, first for the operation
//! in flight, then for the last chunk, and no operation runs while a table is copied, where
//! `AtomicMap`'s writers go on in the old table while the successor is allocated and copied. In
//! six runs on 2 Dec 2026 `AtomicMap` ran at 0.78-1.14x its speed (docs/scaling.md). It runs
//! only with more than one thread and at most one per core: a preempted thread would hold
//! every grow for its whole time slice.
//!
//! # How a grow stops the world
//! `state` holds the index of the current table, shifted left once, with [`GROWING`] set while
//! a grow is asked for. Each operation loads `state` once, at its start, and works only in that
//! table. A worker whose claims crowd the table sets `GROWING` and joins the grow:
//! 1. every registered worker joins at the start of its next operation (a worker counts as
//!    registered from its making to its drop, so a thread that has finished its operations
//!    does not hold the grow); the copy starts when all have joined, so no operation is in
//!    flight in the old table;
//! 2. each copies chunks of [`CHUNK`] slots, taken with a `fetch_add`, until none is left;
//! 3. the last to finish its chunks publishes the successor and clears `GROWING`; the others
//!    wait for it.
//!
//! The counts change under one mutex; the waits spin on two atomics set under it (the copy may
//! start; the grow has ended), since every thread has a core of its own and a sleeping thread
//! would take a wake-up of the OS per wait. Each wait ends with an Acquire load of a Release
//! store made after the writes it waits for, so everything a worker wrote before it joined
//! happens before the copy, and the copy happens before every later operation.
//! Claims are counted per worker and added to the shared count every [`report_every`] claims,
//! so counting takes no write to a shared line per insert.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::bare_growth::{key_word, ladder, Slot, Table, EMPTY};
use crate::adapter::{MapAdapter, Worker};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;

/// The bit of `state` set while a grow is asked for or running.
const GROWING: usize = 1;
/// Slots of the old table one copier takes at a time.
const CHUNK: usize = 1024;
/// Key space assumed when the run does not say (the correctness check builds maps that way).
const DEFAULT_KEY_SPACE: usize = 4096;

/// Who is registered, who has joined the grow in progress and finished copying, and how many
/// grows have ended.
#[derive(Default)]
struct Rendezvous {
    workers: usize,
    joined: usize,
    copied: usize,
    grows: u64,
}

/// Spins until `done` says so, yielding the core now and then in case another thread needs it.
fn spin_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The shared table and its successors.
pub struct StopTheWorldAdapter<S> {
    tables: Vec<Table>,
    /// Index of the current table << 1, `| GROWING` while a grow is asked for or running.
    state: AtomicUsize,
    /// Slots claimed in the current table (tombstones included), as far as workers reported.
    claimed: AtomicUsize,
    /// The next chunk of the table being copied, and the keys carried so far.
    next_chunk: AtomicUsize,
    carried: AtomicUsize,
    rendezvous: Mutex<Rendezvous>,
    /// The number of the grow whose copy may start, plus one: set when every worker joined.
    copy_open: AtomicU64,
    /// Grows ended: the successor of the last one is the current table.
    grows_ended: AtomicU64,
    hasher: S,
}

/// A thread's handle: the shared map, and the claims it has not reported yet. A thread holds
/// one at a time: making a second while a grow is asked for waits for a grow that waits for
/// the first.
pub struct StopTheWorldWorker<'a, S> {
    map: &'a StopTheWorldAdapter<S>,
    unreported: usize,
}

/// Claims a worker counts before adding them to the shared count: few in a small table, so
/// that the count stays close (with up to 128 workers the reports still lag behind by at most
/// an eighth of the table), 64 in a large one.
fn report_every(table: &Table) -> usize {
    (table.slots().len() >> 10).clamp(1, 64)
}

impl<S> StopTheWorldAdapter<S> {
    fn with_key_space(key_space: usize, hasher: S) -> Self {
        StopTheWorldAdapter {
            tables: ladder(key_space),
            state: AtomicUsize::new(0),
            claimed: AtomicUsize::new(0),
            next_chunk: AtomicUsize::new(0),
            carried: AtomicUsize::new(0),
            rendezvous: Mutex::new(Rendezvous::default()),
            copy_open: AtomicU64::new(0),
            grows_ended: AtomicU64::new(0),
            hasher,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Rendezvous> {
        self.rendezvous.lock().expect("a worker panicked in a grow")
    }

    /// Joins the grow in progress (if it has not ended meanwhile): waits until every
    /// registered worker has joined, copies chunks until none is left, and waits until the
    /// successor is the current table.
    fn join_grow(&self) {
        let mut rendezvous = self.lock();
        if self.state.load(Ordering::Acquire) & GROWING == 0 {
            return;
        }
        let grow = rendezvous.grows;
        rendezvous.joined += 1;
        self.open_copy_if_all_joined(&rendezvous);
        drop(rendezvous);
        spin_until(|| self.copy_open.load(Ordering::Acquire) == grow + 1);
        self.copy_chunks();
        let mut rendezvous = self.lock();
        rendezvous.copied += 1;
        if rendezvous.copied == rendezvous.joined {
            self.publish_successor(&mut rendezvous);
        }
        drop(rendezvous);
        spin_until(|| self.grows_ended.load(Ordering::Acquire) > grow);
    }

    /// Lets the copy of the grow in progress start if every registered worker has joined it.
    fn open_copy_if_all_joined(&self, rendezvous: &Rendezvous) {
        if rendezvous.joined > 0 && rendezvous.joined == rendezvous.workers {
            self.copy_open
                .store(rendezvous.grows + 1, Ordering::Release);
        }
    }

    /// Copies chunks of the current table into its successor until none is left.
    fn copy_chunks(&self) {
        let current = self.state.load(Ordering::Acquire) >> 1;
        let (old, new) = (self.tables[current].slots(), &self.tables[current + 1]);
        let mut carried = 0;
        loop {
            let start = self.next_chunk.fetch_add(CHUNK, Ordering::Relaxed);
            let Some(chunk) = old.get(start..(start + CHUNK).min(old.len())) else {
                break;
            };
            carried += chunk.iter().filter(|slot| carry(slot, new)).count();
        }
        self.carried.fetch_add(carried, Ordering::Relaxed);
    }

    /// Makes the successor the current table: called by the last worker to finish copying.
    fn publish_successor(&self, rendezvous: &mut Rendezvous) {
        let current = self.state.load(Ordering::Acquire) >> 1;
        self.claimed
            .store(self.carried.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        self.next_chunk.store(0, Ordering::Relaxed);
        self.state.store((current + 1) << 1, Ordering::Release);
        rendezvous.joined = 0;
        rendezvous.copied = 0;
        rendezvous.grows += 1;
        self.grows_ended.store(rendezvous.grows, Ordering::Release);
    }
}

/// Carries `slot`'s key and value into `new` if it has a value, with plain loads (nobody
/// writes the old table during the copy); true if it did.
fn carry(slot: &Slot, new: &Table) -> bool {
    let word = slot.key.load(Ordering::Relaxed);
    let value = slot.value.load(Ordering::Relaxed);
    if word == EMPTY || value == EMPTY {
        return false;
    }
    new.claim(word).0.value.store(value, Ordering::Relaxed);
    true
}

impl<'a, S: BenchHasher> StopTheWorldWorker<'a, S> {
    /// The table this operation works in, after any grow asked for has ended.
    #[inline]
    fn table(&mut self) -> &'a Table {
        let mut state = self.map.state.load(Ordering::Acquire);
        if state & GROWING != 0 {
            self.map.join_grow();
            // The claims not reported were carried, and are counted in the new table.
            self.unreported = 0;
            state = self.map.state.load(Ordering::Acquire);
        }
        &self.map.tables[state >> 1]
    }

    #[inline]
    fn word<K: BenchKey>(&self, key: &K) -> u64 {
        key_word(self.map.hasher.hash_one(key))
    }

    /// Counts a claim in `table`, and asks for a grow (and joins it) when the claims reported
    /// crowd it.
    fn count_claim(&mut self, table: &Table) {
        self.unreported += 1;
        if self.unreported < report_every(table) {
            return;
        }
        let claimed = self
            .map
            .claimed
            .fetch_add(self.unreported, Ordering::Relaxed)
            + self.unreported;
        self.unreported = 0;
        if table.is_crowded(claimed) {
            // Before asking: a grow that cannot copy would hold every worker for good.
            assert!(
                !std::ptr::eq(table, &self.map.tables[self.map.tables.len() - 1]),
                "stop-the-world growth: more keys than the key space it was made for (its \
                 tables are made up front)"
            );
            self.map.state.fetch_or(GROWING, Ordering::AcqRel);
            self.map.join_grow();
        }
    }
}

impl<K: BenchKey, S: BenchHasher> MapAdapter<K, S> for StopTheWorldAdapter<S> {
    type Worker<'a> = StopTheWorldWorker<'a, S>;

    fn build(capacity: Option<usize>, hasher: S) -> Self {
        Self::with_key_space(capacity.unwrap_or(DEFAULT_KEY_SPACE), hasher)
    }

    fn build_for_keys(key_space: usize, capacity: Option<usize>, hasher: S) -> Self {
        Self::with_key_space(key_space.max(capacity.unwrap_or(0)), hasher)
    }

    /// Registers the worker, after any grow in progress: a grow waits for every registered
    /// worker.
    fn worker(&self) -> StopTheWorldWorker<'_, S> {
        let mut rendezvous = self.lock();
        while self.state.load(Ordering::Acquire) & GROWING != 0 {
            drop(rendezvous);
            spin_until(|| self.state.load(Ordering::Acquire) & GROWING == 0);
            rendezvous = self.lock();
        }
        rendezvous.workers += 1;
        StopTheWorldWorker {
            map: self,
            unreported: 0,
        }
    }
}

impl<S> Drop for StopTheWorldWorker<'_, S> {
    /// Reports its claims and leaves: a grow that waits only for this worker may start.
    fn drop(&mut self) {
        let mut rendezvous = self.map.lock();
        self.map
            .claimed
            .fetch_add(self.unreported, Ordering::Relaxed);
        rendezvous.workers -= 1;
        self.map.open_copy_if_all_joined(&rendezvous);
    }
}

impl<K: BenchKey, S: BenchHasher> Worker<K> for StopTheWorldWorker<'_, S> {
    #[inline]
    fn get(&mut self, key: &K) -> Option<u64> {
        let word = self.word(key);
        self.table().get(word)
    }

    #[inline]
    fn insert(&mut self, key: K, value: u64) {
        let word = self.word(&key);
        let table = self.table();
        if table.set(word, value) {
            self.count_claim(table);
        }
    }

    #[inline]
    fn remove(&mut self, key: &K) -> bool {
        let word = self.word(key);
        self.table().remove(word)
    }

    #[inline]
    fn update(&mut self, key: &K) -> bool {
        let word = self.word(key);
        self.table().update(word)
    }

    fn len(&self) -> usize {
        self.map.tables[self.map.state.load(Ordering::Acquire) >> 1].live_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Hasher = foldhash::fast::FixedState;

    const THREADS: u64 = 4;
    const KEYS_PER_THREAD: u64 = 10_000;

    /// Runs of a thread's race with the others' grows differ from one round to the next.
    const ROUNDS: usize = 20;

    /// Four threads (more than this machine's cores) grow the table from its smallest size
    /// through many grows, leaving and registering again in the middle of them (as the
    /// runner's threads do at its barriers): no key may be lost, and no grow may wait for
    /// good.
    #[test]
    fn threads_that_grow_the_table_together_keep_every_key() {
        for _ in 0..ROUNDS {
            grow_together_and_check();
        }
    }

    fn grow_together_and_check() {
        let keys = THREADS * KEYS_PER_THREAD;
        let map = StopTheWorldAdapter::with_key_space(keys as usize, Hasher::default());
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let map = &map;
                s.spawn(move || {
                    let mut w = MapAdapter::<u64, Hasher>::worker(map);
                    for i in t * KEYS_PER_THREAD..(t + 1) * KEYS_PER_THREAD {
                        if i % 2_500 == 0 {
                            drop(w);
                            w = MapAdapter::<u64, Hasher>::worker(map);
                        }
                        w.insert(i, i);
                    }
                });
            }
        });
        let mut w = MapAdapter::<u64, Hasher>::worker(&map);
        assert_eq!(Worker::<u64>::len(&w), keys as usize);
        for i in 0..keys {
            assert_eq!(w.get(&i), Some(i), "key {i}");
        }
        let grows = map.state.load(Ordering::Acquire) >> 1;
        assert_eq!(
            map.tables[grows].slots().len(),
            map.tables.last().unwrap().slots().len(),
            "the table did not grow to the size that holds every key"
        );
    }
}
