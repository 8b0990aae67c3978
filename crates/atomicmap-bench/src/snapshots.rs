//! The snapshot workload: one prefilled map runs the workload's operation streams twice, first
//! alone, then while one more thread takes snapshots back to back (take, read `len`, drop).
//! Both runs use the same map, the same operations and one shared warm-up, so the difference
//! in throughput is what the snapshots cost the workers, including the CPU time the snapshot
//! thread takes from them when there are no spare cores.
//!
//! Phases, separated by a barrier the workers and the snapshot thread join: prefill ->
//! (snapshot thread: `len()`) -> warm-up -> run alone -> run with snapshots. The snapshot
//! thread stops after the last worker finishes, having taken at least one snapshot.
//!
//! The `len()` after the prefill is the one the other workloads read for B/entry, kept for the
//! state it leaves: on `ReadMostlyMap` it is a `Range`, which promotes the dirty map the
//! prefill built. Without it the run alone would time the mutex-bound phase before promotion
//! (the first snapshot promotes too, so the run with snapshots would not), and neither run
//! would match the mixed workload's.
//!
//! Each timed run stops at the first batch boundary after [`RUN_LIMIT`], as every throughput
//! run does: writers that copy-on-write behind back-to-back snapshots can slow down by orders
//! of magnitude. Both runs get the same limit, and the operations actually run are reported.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::adapter::{MapAdapter, TakeSnapshot, Worker};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;
use crate::latency::new_histogram;
use crate::maps::MapVisitor;
use crate::runner::{prefill, run_ops, Plan, Span, RUN_LIMIT};
use crate::workload::{Prefill, Workload};

/// One timed run of the workers.
pub struct TimedRun {
    /// Operations run, all threads.
    pub ops: u64,
    /// From the first thread's start to the last one's end (`None` before any thread is in).
    pub span: Option<Span>,
    /// Sampled operation latencies, all threads.
    pub latency: Histogram<u64>,
}

impl TimedRun {
    /// A run with nothing in it yet, for [`add_thread`](Self::add_thread).
    pub fn empty() -> Self {
        TimedRun {
            ops: 0,
            span: None,
            latency: new_histogram(),
        }
    }

    /// Adds one worker thread's operations, span and latencies. The run lasts from the first
    /// thread's start to the last one's end: with more threads than cores (the snapshot
    /// workload adds a snapshot thread, the capture workload a subscriber) a thread's own
    /// time leaves out what the others ran before it was scheduled.
    pub fn add_thread(&mut self, ops: u64, span: Span, latency: Histogram<u64>) {
        self.ops += ops;
        self.span = Some(self.span.map_or(span, |all| all.cover(span)));
        self.latency.add(latency).expect("same histogram bounds");
    }

    /// Wall time of the run.
    pub fn elapsed(&self) -> Duration {
        self.span.map_or(Duration::ZERO, Span::duration)
    }

    /// Millions of operations per second.
    pub fn mops(&self) -> f64 {
        self.ops as f64 / self.elapsed().as_secs_f64().max(1e-9) / 1e6
    }
}

/// What the snapshot workload measured on one map.
pub struct SnapshotMeasurement {
    /// The workers without snapshots.
    pub alone: TimedRun,
    /// The same workers on the same operations while snapshots were taken.
    pub with_snapshots: TimedRun,
    /// Nanoseconds from calling `snapshot()` to its return (the drop not included), one
    /// value per snapshot taken.
    pub snapshot_latency: Histogram<u64>,
    /// The fewest and the most entries one snapshot held.
    pub entries: RangeInclusive<usize>,
}

/// The entries every snapshot of `workload` over `keys` keys must hold: at most the key
/// space, and all of it when the map was prefilled with it and no operation removes a key
/// (a snapshot missing keys then is a wrong snapshot, not a plausible one).
pub fn expected_entries(workload: &Workload, keys: usize) -> RangeInclusive<usize> {
    let keeps_all = workload.prefill == Prefill::Full && workload.mix.remove == 0;
    (if keeps_all { keys } else { 0 })..=keys
}

/// Whether the visited adapter can take snapshots.
pub struct CanSnapshot;

impl<K: BenchKey, S: BenchHasher> MapVisitor<K, S> for CanSnapshot {
    type Output = bool;

    fn visit<A: MapAdapter<K, S>>(self) -> bool {
        A::SNAPSHOT.is_some()
    }
}

/// Runs the plan with snapshots on the visited adapter; `None` if it cannot take them.
pub struct SnapshotVisitor<'a, 'p, K, S>(pub &'a Plan<'p, K, S>);

impl<K: BenchKey, S: BenchHasher> MapVisitor<K, S> for SnapshotVisitor<'_, '_, K, S> {
    type Output = Option<SnapshotMeasurement>;

    fn visit<A: MapAdapter<K, S>>(self) -> Option<SnapshotMeasurement> {
        A::SNAPSHOT.map(|take| run::<K, S, A>(self.0, take, RUN_LIMIT))
    }
}

/// Take snapshots of `map` back to back until no worker is `running` (at least one).
/// Returns their latencies and the range of their sizes.
fn take_snapshots<K: BenchKey, S: BenchHasher, A: MapAdapter<K, S>>(
    map: &A,
    take: TakeSnapshot<A, K, S>,
    running: &AtomicUsize,
) -> (Histogram<u64>, RangeInclusive<usize>) {
    let mut latency = new_histogram();
    let (mut fewest, mut most) = (usize::MAX, 0);
    loop {
        let t0 = Instant::now();
        let snapshot = take(map);
        latency.saturating_record(t0.elapsed().as_nanos() as u64);
        let entries = snapshot.len();
        drop(snapshot);
        fewest = fewest.min(entries);
        most = most.max(entries);
        if running.load(Ordering::Relaxed) == 0 {
            return (latency, fewest..=most);
        }
    }
}

/// Run the plan on a fresh shared map of type `A` (maps with snapshots are never private),
/// alone and then with snapshots taken by `take`; each timed run stops after `limit`.
pub fn run<K: BenchKey, S: BenchHasher, A: MapAdapter<K, S>>(
    plan: &Plan<'_, K, S>,
    take: TakeSnapshot<A, K, S>,
    limit: Duration,
) -> SnapshotMeasurement {
    let threads = plan.streams.timed.len();
    let keys = plan.keys;
    let map = A::build(
        plan.workload.presized.then_some(keys.len()),
        plan.hasher.clone(),
    );
    let barrier = Barrier::new(threads + 1);
    let running = AtomicUsize::new(threads);

    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (map, barrier, running) = (&map, &barrier, &running);
                let timed = &plan.streams.timed[t];
                let warmup = &plan.streams.warmup[t];
                s.spawn(move || {
                    let mut w = map.worker();
                    if plan.workload.prefill == Prefill::Full {
                        prefill::<K, S, A>(&mut w, keys, t, threads);
                    }
                    barrier.wait(); // prefill done
                    barrier.wait(); // len read
                    run_ops(
                        &mut w,
                        keys,
                        plan.workload.key_pattern,
                        warmup,
                        None,
                        &mut new_histogram(),
                    );
                    barrier.wait(); // warm-up done: run alone
                    let mut alone_latency = new_histogram();
                    let alone = run_ops(
                        &mut w,
                        keys,
                        plan.workload.key_pattern,
                        timed,
                        Some(limit),
                        &mut alone_latency,
                    );
                    barrier.wait(); // alone done: run with snapshots
                    let mut with_latency = new_histogram();
                    let with = run_ops(
                        &mut w,
                        keys,
                        plan.workload.key_pattern,
                        timed,
                        Some(limit),
                        &mut with_latency,
                    );
                    running.fetch_sub(1, Ordering::Relaxed);
                    ((alone, alone_latency), (with, with_latency))
                })
            })
            .collect();
        let snapshotter = s.spawn(|| {
            barrier.wait(); // prefill done
            map.worker().len(); // leaves the state the mixed workload times (module docs)
            barrier.wait(); // len read
            barrier.wait(); // warm-up done
            barrier.wait(); // alone done
            take_snapshots(&map, take, &running)
        });

        let mut alone = TimedRun::empty();
        let mut with_snapshots = TimedRun::empty();
        for w in workers {
            let (a, b) = w.join().expect("benchmark thread panicked");
            for (run, ((ops, span), latency)) in [(&mut alone, a), (&mut with_snapshots, b)] {
                run.add_thread(ops, span, latency);
            }
        }
        let (snapshot_latency, entries) = snapshotter.join().expect("snapshot thread panicked");
        SnapshotMeasurement {
            alone,
            with_snapshots,
            snapshot_latency,
            entries,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::atomicmap::{AtomicMapAdapter, ShardedAdapter};
    use crate::maps::MapId;
    use crate::runner::BATCH;
    use crate::workload::{self, generate};

    const KEYS: usize = 2000;

    type Hasher = foldhash::fast::FixedState;

    fn measure<A: MapAdapter<u64, Hasher>>(limit: Duration) -> SnapshotMeasurement {
        let keys: Vec<u64> = (0..KEYS as u64).map(u64::nth).collect();
        let streams = generate(&workload::SNAPSHOT, 2, KEYS, 20_000, 1);
        let hasher = Hasher::default();
        let plan = Plan {
            workload: &workload::SNAPSHOT,
            keys: &keys,
            streams: &streams,
            hasher: &hasher,
        };
        run::<u64, Hasher, A>(&plan, A::SNAPSHOT.expect("the map snapshots"), limit)
    }

    #[test]
    fn both_runs_complete_and_every_snapshot_holds_the_key_space() {
        let m = measure::<AtomicMapAdapter<u64, Hasher>>(Duration::from_secs(60));
        assert_eq!(m.alone.ops, 20_000);
        assert_eq!(m.with_snapshots.ops, 20_000);
        assert!(!m.snapshot_latency.is_empty());
        assert_eq!(m.entries, KEYS..=KEYS);
    }

    #[test]
    fn a_run_past_its_limit_stops_after_one_batch() {
        let m = measure::<ShardedAdapter<u64, Hasher>>(Duration::ZERO);
        // Two threads, each stopping after its first batch.
        assert_eq!(m.alone.ops, 2 * BATCH as u64);
        assert_eq!(m.with_snapshots.ops, 2 * BATCH as u64);
        assert_eq!(m.entries, KEYS..=KEYS);
    }

    #[test]
    fn expected_entries_are_the_whole_key_space_unless_keys_can_go() {
        assert_eq!(expected_entries(&workload::SNAPSHOT, 100), 100..=100);
        assert_eq!(expected_entries(&workload::EXCHANGE, 100), 0..=100);
        assert_eq!(expected_entries(&workload::RAPID_GROW, 100), 0..=100);
    }

    #[test]
    fn exactly_atomicmaps_maps_can_snapshot() {
        for &id in MapId::ALL {
            let ours = matches!(
                id,
                MapId::AtomicMap | MapId::ReadMostlyMap | MapId::ShardedMap | MapId::RcuMap
            );
            assert_eq!(
                id.visit::<u64, Hasher, _>(CanSnapshot),
                ours,
                "{}",
                id.name()
            );
        }
    }
}
