//! Runs one workload on one map: threads, barriers, prefill, warm-up, the timed loop and
//! latency sampling.
//!
//! Phases, separated by barriers that the main thread also joins (it measures between them
//! while the workers wait, so its own allocations never land inside a measurement):
//! prefill -> (main: heap after prefill) -> warm-up -> (main: allocation counters) -> timed
//! operations, in one step or, for the growth workload, in steps with a heap sample after
//! each -> (main: allocation counters).
//!
//! Latency: every [`SAMPLE_EVERY`]-th operation is timed with a pair of `Instant::now()`
//! and recorded into a per-thread HDR histogram; the others run back to back. Epoch-based
//! maps re-take their guard every [`BATCH`] operations.

use std::borrow::Borrow;
use std::hint::black_box;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::adapter::{MapAdapter, Worker};
use crate::hasher::BenchHasher;
use crate::keys::{BenchKey, KeyPattern};
use crate::latency::new_histogram;
use crate::maps::MapVisitor;
use crate::memory::{peak_rss_bytes, reset_peak_rss, AllocCounts};
use crate::workload::{Lookups, Measure, Op, OpKind, Prefill, Streams, Workload};

/// Operations between two guard re-pins.
pub const BATCH: usize = 1024;
/// One operation in this many is timed for the latency histogram.
pub const SAMPLE_EVERY: usize = 128;

/// How long one timed run may take before it stops at the next batch boundary. Without a
/// limit one map would decide the length of the whole benchmark: `RcuMap` copies a path of
/// its persistent map on every write and runs a hundred times slower than the others. The
/// operations actually run are what the throughput is computed from.
pub const RUN_LIMIT: Duration = Duration::from_secs(3);

/// Everything a run needs besides the map: generated before any map is built and shared by
/// all maps, so each map sees exactly the same operations.
pub struct Plan<'p, K, S> {
    /// The workload.
    pub workload: &'p Workload,
    /// The key table; operations refer to keys by index into it.
    pub keys: &'p [K],
    /// The operation streams, one per thread.
    pub streams: &'p Streams,
    /// The hasher every map uses.
    pub hasher: &'p S,
}

/// Live heap at one point of the growth workload.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct GrowthSample {
    /// Entries in the map(s).
    pub keys: usize,
    /// Live heap bytes attributable to the map(s).
    pub bytes: i64,
}

/// What one run of one map measured.
pub struct Measurement {
    /// Timed operations, all threads.
    pub ops: u64,
    /// Wall time from the first thread starting its timed operations to the last one finishing
    /// (summed over the steps of the growth workload). Not the slowest thread's own time: with
    /// more threads than cores a thread's clock starts only once it is scheduled, so that time
    /// would leave out what the others ran before it.
    pub elapsed: Duration,
    /// Sampled latencies, all threads.
    pub latency: Histogram<u64>,
    /// Allocations during the timed operations.
    pub allocs: AllocCounts,
    /// Live heap bytes per entry after prefill (or at the end when nothing is prefilled).
    pub bytes_per_entry: Option<f64>,
    /// Peak RSS of the process since this map was built.
    pub peak_rss: Option<u64>,
    /// Heap samples of the growth workload.
    pub growth: Vec<GrowthSample>,
}

impl Measurement {
    /// Millions of operations per second.
    pub fn mops(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// When one thread started and ended a stretch of timed operations.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    /// The thread's clock when its first operation started.
    pub began: Instant,
    /// The thread's clock when its last operation ended.
    pub ended: Instant,
}

impl Span {
    /// The span from the earliest start to the latest end of `self` and `other`: the wall
    /// time of two threads' runs together.
    pub fn cover(self, other: Span) -> Span {
        Span {
            began: self.began.min(other.began),
            ended: self.ended.max(other.ended),
        }
    }

    /// How long the span lasted.
    pub fn duration(self) -> Duration {
        self.ended - self.began
    }
}

/// Runs the plan on the visited adapter.
pub struct RunVisitor<'a, 'p, K, S>(pub &'a Plan<'p, K, S>);

impl<K: BenchKey, S: BenchHasher> MapVisitor<K, S> for RunVisitor<'_, '_, K, S> {
    type Output = Measurement;

    fn visit<A: MapAdapter<K, S>>(self) -> Measurement {
        run::<K, S, A>(self.0)
    }
}

#[inline(always)]
fn apply<K: BenchKey, W: Worker<K>, const SEQUENTIAL: bool>(w: &mut W, keys: &[K], op: Op) {
    let key = K::key::<SEQUENTIAL>(keys, op.key);
    let key = key.borrow();
    match op.kind {
        OpKind::Read => {
            black_box(w.get(key));
        }
        OpKind::Insert => w.insert(key.clone(), u64::from(op.key)),
        OpKind::Remove => {
            black_box(w.remove(key));
        }
        OpKind::Update => {
            black_box(w.update(key));
        }
    }
}

/// Runs `ops` on keys made by `pattern`, timing the first of every [`SAMPLE_EVERY`] into
/// `latency` and re-pinning every [`BATCH`], until all have run or, at a batch boundary,
/// `limit` has passed since the start. Returns how many ran and how long they took.
///
/// Between two samples the operations run back to back with nothing else in the loop: the
/// clock is read only by the sample and at batch boundaries, and the key pattern is chosen
/// once here, not per operation.
pub fn run_ops<K: BenchKey, W: Worker<K>>(
    w: &mut W,
    keys: &[K],
    pattern: KeyPattern,
    ops: &[Op],
    limit: Option<Duration>,
    latency: &mut Histogram<u64>,
) -> (u64, Span) {
    match pattern {
        KeyPattern::Mixed => run_ops_on::<K, W, false>(w, keys, ops, limit, latency),
        KeyPattern::Sequential => run_ops_on::<K, W, true>(w, keys, ops, limit, latency),
    }
}

fn run_ops_on<K: BenchKey, W: Worker<K>, const SEQUENTIAL: bool>(
    w: &mut W,
    keys: &[K],
    ops: &[Op],
    limit: Option<Duration>,
    latency: &mut Histogram<u64>,
) -> (u64, Span) {
    const _: () = assert!(
        BATCH.is_multiple_of(SAMPLE_EVERY),
        "a batch holds whole sample groups"
    );
    let start = Instant::now();
    let mut ran = 0;
    for batch in ops.chunks(BATCH) {
        for group in batch.chunks(SAMPLE_EVERY) {
            let (&first, rest) = group.split_first().expect("chunks are never empty");
            let t0 = Instant::now();
            apply::<K, W, SEQUENTIAL>(w, keys, first);
            latency.saturating_record(t0.elapsed().as_nanos() as u64);
            for &op in rest {
                apply::<K, W, SEQUENTIAL>(w, keys, op);
            }
        }
        w.repin();
        ran += batch.len() as u64;
        if limit.is_some_and(|limit| start.elapsed() >= limit) {
            break;
        }
    }
    (
        ran,
        Span {
            began: start,
            ended: Instant::now(),
        },
    )
}

/// The keys of a stream of reads or of inserts (with the values the one-at-a-time loop would
/// insert), made before anything is timed, so that a batched run hands each map slices of
/// ready keys and does no per-key work of its own.
pub struct BatchKeys<K> {
    keys: Vec<K>,
    values: Vec<u64>,
    inserts: bool,
}

impl<K: BenchKey> BatchKeys<K> {
    /// The key of each operation of `ops`, in order, as the one-at-a-time loop makes it. The
    /// operations must be all reads or all inserts.
    pub fn new(table: &[K], pattern: KeyPattern, ops: &[Op]) -> Self {
        let key = |op: &Op| match pattern {
            KeyPattern::Mixed => K::key::<false>(table, op.key).borrow().clone(),
            KeyPattern::Sequential => K::key::<true>(table, op.key).borrow().clone(),
        };
        let inserts = ops.first().is_some_and(|op| op.kind == OpKind::Insert);
        let kind = if inserts {
            OpKind::Insert
        } else {
            OpKind::Read
        };
        assert!(
            ops.iter().all(|op| op.kind == kind),
            "a batched stream is all reads or all inserts"
        );
        BatchKeys {
            keys: ops.iter().map(key).collect(),
            values: ops.iter().map(|op| u64::from(op.key)).collect(),
            inserts,
        }
    }

    /// References to the keys, the form a batched lookup takes.
    pub fn refs(&self) -> Vec<&K> {
        self.keys.iter().collect()
    }
}

/// Runs the operations `range` of `stream` (whose [`BatchKeys::refs`] are `refs`) in batches
/// of `size`: each batch of reads in one [`Worker::get_each`] call with every value passed to
/// `black_box`, each batch of inserts in one [`Worker::insert_each`] call. Times one batch in
/// every [`SAMPLE_EVERY`] keys into `latency` (so its figures are of a whole batch); re-pins
/// after at least [`BATCH`] keys and stops then once `limit` has passed. Returns how many keys
/// ran and how long they took.
pub fn run_batches<K: BenchKey, W: Worker<K>>(
    w: &mut W,
    stream: &BatchKeys<K>,
    refs: &[&K],
    range: Range<usize>,
    size: usize,
    limit: Option<Duration>,
    latency: &mut Histogram<u64>,
) -> (u64, Span) {
    let run = |w: &mut W, first: usize, batch: &[&K]| {
        if stream.inserts {
            let values = &stream.values[first..first + batch.len()];
            w.insert_each(
                batch
                    .iter()
                    .map(|&key| key.clone())
                    .zip(values.iter().copied()),
            );
        } else {
            w.get_each(batch, |_, value| {
                black_box(value);
            });
        }
    };
    let start = Instant::now();
    let mut ran = 0;
    let mut next_sample = 0;
    let mut since_repin = 0;
    for (index, batch) in refs[range.clone()].chunks(size).enumerate() {
        let first = range.start + index * size;
        if ran >= next_sample {
            let t0 = Instant::now();
            run(w, first, batch);
            latency.saturating_record(t0.elapsed().as_nanos() as u64);
            next_sample += SAMPLE_EVERY as u64;
        } else {
            run(w, first, batch);
        }
        ran += batch.len() as u64;
        since_repin += batch.len();
        if since_repin >= BATCH {
            w.repin();
            since_repin = 0;
            if limit.is_some_and(|limit| start.elapsed() >= limit) {
                break;
            }
        }
    }
    (
        ran,
        Span {
            began: start,
            ended: Instant::now(),
        },
    )
}

/// Thread `t` of `threads` inserts its share of `keys`, each with its index as the value: a
/// slice of them into a shared map, all of them into a private one.
pub fn prefill<K: BenchKey, S: BenchHasher, A: MapAdapter<K, S>>(
    w: &mut A::Worker<'_>,
    keys: &[K],
    t: usize,
    threads: usize,
) {
    let (first, step) = if A::PRIVATE { (0, 1) } else { (t, threads) };
    for i in (first..keys.len()).step_by(step) {
        w.insert(keys[i].clone(), i as u64);
    }
    w.repin();
}

/// Run the plan on a fresh map of type `A`.
pub fn run<K: BenchKey, S: BenchHasher, A: MapAdapter<K, S>>(plan: &Plan<'_, K, S>) -> Measurement {
    let workload = plan.workload;
    let threads = plan.streams.timed.len();
    let keys = plan.keys;
    let steps = match workload.measure {
        Measure::Throughput | Measure::Snapshots | Measure::Capture => 1,
        Measure::Growth { samples } => samples.max(1),
    };
    // The keys a batched run hands over belong to the harness, not to the map: they are made
    // before the heap is first measured, so that B/entry leaves them out.
    let batch_keys: Vec<Option<[BatchKeys<K>; 2]>> = (0..threads)
        .map(|t| match workload.lookups {
            Lookups::Batched(_) => Some(
                [&plan.streams.warmup[t], &plan.streams.timed[t]]
                    .map(|ops| BatchKeys::new(keys, workload.key_pattern, ops)),
            ),
            Lookups::Single => None,
        })
        .collect();
    let batch_refs: Vec<Option<[Vec<&K>; 2]>> = batch_keys
        .iter()
        .map(|streams| {
            streams
                .as_ref()
                .map(|streams| streams.each_ref().map(BatchKeys::refs))
        })
        .collect();
    // Each thread's latency histogram and step spans are the harness's too: made here, before
    // the heap is first measured, or a run that starts empty would count them (hundreds of KiB
    // per thread) as the map's, and B/entry would grow with the thread count for every map.
    let harness_state: Vec<(Histogram<u64>, Vec<Span>)> = (0..threads)
        .map(|_| (new_histogram(), Vec::with_capacity(steps)))
        .collect();
    let rss_known = reset_peak_rss();
    let heap_before = AllocCounts::now().live();
    let map = A::build_for_keys(
        keys.len(),
        workload.presized.then_some(keys.len()),
        plan.hasher.clone(),
    );
    let barrier = Barrier::new(threads + 1);
    // Entries of each private map, written before each barrier (shared maps are asked).
    let lens: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
    let entries = || -> usize {
        if A::PRIVATE {
            lens.iter().map(|l| l.load(Ordering::Relaxed)).sum()
        } else {
            map.worker().len()
        }
    };
    let heap_per_entry = |entries: usize| -> Option<f64> {
        let bytes = AllocCounts::now().live() - heap_before;
        (entries > 0).then(|| bytes as f64 / entries as f64)
    };

    std::thread::scope(|s| {
        let workers: Vec<_> = harness_state
            .into_iter()
            .enumerate()
            .map(|(t, (mut latency, mut spans))| {
                let (map, barrier, lens) = (&map, &barrier, &lens);
                let timed = &plan.streams.timed[t];
                let warmup = &plan.streams.warmup[t];
                let (batch_keys, batch_refs) = (&batch_keys[t], &batch_refs[t]);
                s.spawn(move || {
                    let mut w = map.worker();
                    if workload.prefill == Prefill::Full {
                        prefill::<K, S, A>(&mut w, keys, t, threads);
                    }
                    if A::PRIVATE {
                        lens[t].store(w.len(), Ordering::Relaxed);
                    }
                    // A shared map's worker is dropped while the thread waits, as an idle
                    // thread of a service holds no pin: an epoch-based map frees a table retired
                    // late in the prefill only once no pin from before its retirement is left,
                    // and the heap is measured now. A private map's worker is the map itself.
                    let parked = A::PRIVATE.then_some(w);
                    barrier.wait(); // prefill done
                    barrier.wait(); // main has measured the heap
                    let mut w = parked.unwrap_or_else(|| map.worker());
                    let batched = match (workload.lookups, batch_keys, batch_refs) {
                        (
                            Lookups::Batched(size),
                            Some([warmup, timed]),
                            Some([warmup_refs, timed_refs]),
                        ) => Some(((warmup, warmup_refs), (timed, timed_refs), size)),
                        _ => None,
                    };
                    match &batched {
                        Some(((warmup, refs), _, size)) => {
                            run_batches(
                                &mut w,
                                warmup,
                                refs,
                                0..refs.len(),
                                *size,
                                None,
                                &mut latency,
                            );
                        }
                        None => {
                            run_ops(
                                &mut w,
                                keys,
                                workload.key_pattern,
                                warmup,
                                None,
                                &mut latency,
                            );
                        }
                    }
                    latency.reset();
                    // Idle while main reads the counters, so holding no pin (as after the
                    // prefill).
                    let mut parked = A::PRIVATE.then_some(w);
                    barrier.wait(); // warm-up done
                    barrier.wait(); // main has read the counters: go
                    let mut ran = 0;
                    let per_step = timed.len().div_ceil(steps).max(1);
                    for step in 0..steps {
                        let from = (step * per_step).min(timed.len());
                        let to = ((step + 1) * per_step).min(timed.len());
                        let limit =
                            matches!(workload.measure, Measure::Throughput | Measure::Capture)
                                .then_some(RUN_LIMIT);
                        let mut w = parked.take().unwrap_or_else(|| map.worker());
                        let (step_ran, span) = match &batched {
                            Some((_, (timed, refs), size)) => run_batches(
                                &mut w,
                                timed,
                                refs,
                                from..to,
                                *size,
                                limit,
                                &mut latency,
                            ),
                            None => run_ops(
                                &mut w,
                                keys,
                                workload.key_pattern,
                                &timed[from..to],
                                limit,
                                &mut latency,
                            ),
                        };
                        spans.push(span);
                        ran += step_ran;
                        if A::PRIVATE {
                            lens[t].store(w.len(), Ordering::Relaxed);
                        }
                        // Idle while main samples the heap, so holding no pin (as after the
                        // prefill).
                        parked = A::PRIVATE.then_some(w);
                        barrier.wait(); // step done
                        barrier.wait(); // main has sampled
                    }
                    (spans, latency, ran)
                })
            })
            .collect();

        barrier.wait(); // prefill done
        let prefilled_bytes_per_entry = match workload.prefill {
            Prefill::Full => heap_per_entry(entries()),
            Prefill::Empty => None,
        };
        barrier.wait();
        barrier.wait(); // warm-up done
                        // Allocated before the counters are read, so pushing samples does not count.
        let mut growth = Vec::with_capacity(steps);
        let counts_before = AllocCounts::now();
        barrier.wait(); // go
        let mut counts_during = AllocCounts::default();
        let mut bytes_per_entry = prefilled_bytes_per_entry;
        for step in 0..steps {
            barrier.wait(); // step done
            let last = step + 1 == steps;
            if last {
                counts_during = AllocCounts::now().since(&counts_before);
            }
            if let Measure::Growth { .. } = workload.measure {
                growth.push(GrowthSample {
                    keys: entries(),
                    bytes: AllocCounts::now().live() - heap_before,
                });
            }
            if last && bytes_per_entry.is_none() {
                // Before the last barrier: after it, workers drop their private maps.
                bytes_per_entry = heap_per_entry(entries());
            }
            barrier.wait();
        }
        let peak_rss = if rss_known { peak_rss_bytes() } else { None };

        let mut latency = new_histogram();
        let mut ops = 0;
        let mut step_spans: Vec<Option<Span>> = vec![None; steps];
        for w in workers {
            let (spans, h, ran) = w.join().expect("benchmark thread panicked");
            for (step, span) in step_spans.iter_mut().zip(spans) {
                *step = Some(step.map_or(span, |all| all.cover(span)));
            }
            ops += ran;
            latency.add(h).expect("same histogram bounds");
        }
        let elapsed = step_spans.into_iter().flatten().map(Span::duration).sum();
        Measurement {
            ops,
            elapsed,
            latency,
            allocs: counts_during,
            bytes_per_entry,
            peak_rss,
            growth,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{generate, BATCHED, BATCHED_INSERT};

    /// Records every batch it is handed: keys, and for inserts their values.
    #[derive(Default)]
    struct Recorder {
        batches: Vec<Vec<u64>>,
        values: Vec<u64>,
        repins: usize,
    }

    impl Worker<u64> for Recorder {
        fn get(&mut self, _key: &u64) -> Option<u64> {
            unreachable!("a batched run looks keys up in batches only")
        }
        fn get_each(&mut self, keys: &[&u64], mut visit: impl FnMut(usize, Option<u64>)) {
            self.batches.push(keys.iter().map(|&&k| k).collect());
            for index in 0..keys.len() {
                visit(index, None);
            }
        }
        fn insert(&mut self, _key: u64, _value: u64) {
            unreachable!("a batched run inserts keys in batches only")
        }
        fn insert_each(&mut self, entries: impl Iterator<Item = (u64, u64)>) {
            let (keys, values): (Vec<u64>, Vec<u64>) = entries.unzip();
            self.batches.push(keys);
            self.values.extend(values);
        }
        fn remove(&mut self, _key: &u64) -> bool {
            false
        }
        fn update(&mut self, _key: &u64) -> bool {
            false
        }
        fn len(&self) -> usize {
            0
        }
        fn repin(&mut self) {
            self.repins += 1;
        }
    }

    /// Runs `ops[range]` in batches of 48 on a recorder; checks that every key (and, for
    /// inserts, the value the one-at-a-time loop gives it) was handed over once, in order.
    fn hands_over_in_order(table: &[u64], ops: &[Op], range: Range<usize>) -> Recorder {
        let stream = BatchKeys::new(table, KeyPattern::Mixed, ops);
        let mut recorder = Recorder::default();
        let (ran, _) = run_batches(
            &mut recorder,
            &stream,
            &stream.refs(),
            range.clone(),
            48,
            None,
            &mut new_histogram(),
        );
        assert_eq!(ran, range.len() as u64);
        assert!(recorder.batches[..recorder.batches.len() - 1]
            .iter()
            .all(|b| b.len() == 48));
        let handed: Vec<u64> = recorder.batches.concat();
        let expected: Vec<u64> = ops[range.clone()]
            .iter()
            .map(|op| table[op.key as usize])
            .collect();
        assert_eq!(handed, expected);
        assert!(recorder.repins >= range.len() / BATCH);
        recorder
    }

    #[test]
    fn batches_of_reads_hand_over_every_key_once_in_order() {
        let table: Vec<u64> = (0..1000).map(u64::nth).collect();
        let streams = generate(&BATCHED, 1, table.len(), 5000, 3);
        let recorder = hands_over_in_order(&table, &streams.timed[0], 0..5000);
        assert!(recorder.values.is_empty(), "reads insert nothing");
    }

    #[test]
    fn batches_of_inserts_hand_over_every_key_once_in_order_with_its_value() {
        let table: Vec<u64> = (0..5000).map(u64::nth).collect();
        let streams = generate(&BATCHED_INSERT, 1, table.len(), 0, 3);
        let ops = &streams.timed[0];
        let recorder = hands_over_in_order(&table, ops, 1000..4000);
        let expected: Vec<u64> = ops[1000..4000].iter().map(|op| u64::from(op.key)).collect();
        assert_eq!(recorder.values, expected);
    }
}
