//! `--workload hot-swap`: atomicmap's `HotSwap<T>` against arc-swap's `ArcSwap<T>`, the crate
//! built for the same job, on the same threads and the same value. Not a map workload, so it
//! has its own loop and table: each measurement runs both cells in rounds (so a noisy stretch
//! of the machine hits both alike) and reports the median round of each.
//!
//! What is timed, per operation:
//! - `load`: take the current value and read one field of it (each cell's `load`, which
//!   neither clones the `Arc` nor takes a lock);
//! - `load_full`: the current value as an owned `Arc`, one field read, the `Arc` dropped;
//! - `version`: the version of the current value. `HotSwap` keeps one with every publication;
//!   an arc-swap user keeps it in the value, so arc-swap's figure is a `load` reading that
//!   field;
//! - `publish`: one writer storing a freshly built `Arc` (its allocation included, as a user
//!   pays it), with no reader running;
//! - `publish while loading` and `load while publishing`: the same writer while the other
//!   threads run `load` back to back, timed on each side.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use atomicmap::HotSwap;

use crate::latency::median;
use crate::record::Record;
use crate::runner::{BATCH, RUN_LIMIT};
use crate::table::render;

/// The value both cells hold: a small configuration, one cache line.
struct Config {
    /// What an arc-swap user stores to know which value they read.
    version: u64,
    limits: [u64; 7],
}

impl Config {
    fn numbered(version: u64) -> Config {
        Config {
            version,
            limits: [version; 7],
        }
    }
}

/// What the comparison needs of a cell.
trait Cell: Sync {
    const NAME: &'static str;
    fn holding(initial: Config) -> Self;
    /// Loads the current value and reads a field of it.
    fn load_field(&self) -> u64;
    /// Loads the current value as an owned `Arc` and reads a field of it.
    fn load_full_field(&self) -> u64;
    /// The version of the current value.
    fn version(&self) -> u64;
    /// Publishes `next`.
    fn publish(&self, next: Arc<Config>);
}

impl Cell for HotSwap<Config> {
    const NAME: &'static str = "HotSwap";

    fn holding(initial: Config) -> Self {
        HotSwap::new(initial)
    }

    #[inline]
    fn load_field(&self) -> u64 {
        self.load().limits[0]
    }

    #[inline]
    fn load_full_field(&self) -> u64 {
        self.load_full().limits[0]
    }

    #[inline]
    fn version(&self) -> u64 {
        HotSwap::version(self)
    }

    #[inline]
    fn publish(&self, next: Arc<Config>) {
        black_box(self.store(next));
    }
}

impl Cell for ArcSwap<Config> {
    const NAME: &'static str = "arc-swap";

    fn holding(initial: Config) -> Self {
        ArcSwap::from_pointee(initial)
    }

    #[inline]
    fn load_field(&self) -> u64 {
        self.load().limits[0]
    }

    #[inline]
    fn load_full_field(&self) -> u64 {
        self.load_full().limits[0]
    }

    #[inline]
    fn version(&self) -> u64 {
        self.load().version
    }

    #[inline]
    fn publish(&self, next: Arc<Config>) {
        self.store(next);
    }
}

/// One measurement: what every thread but the writer does, and whether one writer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measurement {
    Load,
    LoadFull,
    Version,
    Publish,
    PublishWhileLoading,
    LoadWhilePublishing,
}

impl Measurement {
    const ALL: [Measurement; 6] = [
        Measurement::Load,
        Measurement::LoadFull,
        Measurement::Version,
        Measurement::Publish,
        Measurement::PublishWhileLoading,
        Measurement::LoadWhilePublishing,
    ];

    fn name(self) -> &'static str {
        match self {
            Measurement::Load => "load",
            Measurement::LoadFull => "load_full",
            Measurement::Version => "version",
            Measurement::Publish => "publish",
            Measurement::PublishWhileLoading => "publish while loading",
            Measurement::LoadWhilePublishing => "load while publishing",
        }
    }
}

/// Operations and the time they took, on one side of a run (all its threads).
#[derive(Clone, Copy, Debug, Default)]
struct Side {
    ops: u64,
    /// The slowest thread's time.
    elapsed: Duration,
    threads: usize,
}

impl Side {
    fn add_thread(&mut self, ops: u64, elapsed: Duration) {
        self.ops += ops;
        self.elapsed = self.elapsed.max(elapsed);
        self.threads += 1;
    }

    fn mops(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }

    /// Time one thread spends on one operation.
    fn ns_per_op(&self) -> f64 {
        self.threads as f64 * 1e3 / self.mops()
    }
}

/// Runs `op` with the operation's number `ops` times, or until [`RUN_LIMIT`] has passed at a
/// multiple of [`BATCH`] operations; returns how many ran and how long they took.
#[inline]
fn timed(ops: u64, mut op: impl FnMut(u64)) -> (u64, Duration) {
    let start = Instant::now();
    let mut ran = 0;
    while ran < ops {
        let end = (ran + BATCH as u64).min(ops);
        for i in ran..end {
            op(i);
        }
        ran = end;
        if start.elapsed() >= RUN_LIMIT {
            break;
        }
    }
    (ran, start.elapsed())
}

/// Runs one measurement on a fresh cell of type `C` with `threads` threads, `ops` operations
/// per reading thread; returns the readers' side and the writer's (empty when none runs).
fn run_once<C: Cell>(measurement: Measurement, threads: usize, ops: u64) -> (Side, Side) {
    let cell = C::holding(Config::numbered(0));
    let with_writer = matches!(
        measurement,
        Measurement::PublishWhileLoading | Measurement::LoadWhilePublishing
    );
    let readers = match measurement {
        Measurement::Publish => 0,
        _ if with_writer => threads.saturating_sub(1).max(1),
        _ => threads,
    };
    let writer = with_writer || measurement == Measurement::Publish;
    let barrier = Barrier::new(readers + usize::from(writer));
    let writing = AtomicBool::new(writer);
    std::thread::scope(|s| {
        let reader_threads: Vec<_> = (0..readers)
            .map(|_| {
                let (cell, barrier, writing) = (&cell, &barrier, &writing);
                s.spawn(move || {
                    barrier.wait();
                    match measurement {
                        Measurement::LoadFull => timed(ops, |_| {
                            black_box(cell.load_full_field());
                        }),
                        Measurement::Version => timed(ops, |_| {
                            black_box(cell.version());
                        }),
                        _ if with_writer => {
                            // At least one batch, so a writer that finishes first still
                            // leaves a measurement.
                            let start = Instant::now();
                            let mut ran = 0;
                            loop {
                                for _ in 0..BATCH {
                                    black_box(cell.load_field());
                                }
                                ran += BATCH as u64;
                                if !writing.load(Ordering::Relaxed) {
                                    break;
                                }
                            }
                            (ran, start.elapsed())
                        }
                        _ => timed(ops, |_| {
                            black_box(cell.load_field());
                        }),
                    }
                })
            })
            .collect();
        let writer_thread = writer.then(|| {
            let (cell, barrier, writing) = (&cell, &barrier, &writing);
            s.spawn(move || {
                barrier.wait();
                // Publishing allocates and reclaims, so it runs a tenth of a reader's count.
                let ran = timed(ops / 10, |i| {
                    cell.publish(Arc::new(Config::numbered(i + 1)))
                });
                writing.store(false, Ordering::Relaxed);
                ran
            })
        });
        let mut reading = Side::default();
        for r in reader_threads {
            let (ops, elapsed) = r.join().expect("reader panicked");
            reading.add_thread(ops, elapsed);
        }
        let mut publishing = Side::default();
        if let Some(w) = writer_thread {
            let (ops, elapsed) = w.join().expect("writer panicked");
            publishing.add_thread(ops, elapsed);
        }
        (reading, publishing)
    })
}

/// The side a measurement reports: the writer's for the publish rows, the readers' otherwise.
fn reported(measurement: Measurement, (reading, publishing): (Side, Side)) -> Side {
    match measurement {
        Measurement::Publish | Measurement::PublishWhileLoading => publishing,
        _ => reading,
    }
}

/// The median of `repeat` rounds of `measurement` on both cells, HotSwap's first.
fn measure(measurement: Measurement, threads: usize, ops: u64, repeat: usize) -> [Side; 2] {
    let mut runs: [Vec<Side>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..repeat {
        let ours = run_once::<HotSwap<Config>>(measurement, threads, ops);
        runs[0].push(reported(measurement, ours));
        let theirs = run_once::<ArcSwap<Config>>(measurement, threads, ops);
        runs[1].push(reported(measurement, theirs));
    }
    runs.map(|sides| {
        let mut mops: Vec<f64> = sides.iter().map(Side::mops).collect();
        let target = median(&mut mops);
        *sides
            .iter()
            .find(|s| s.mops() == target)
            .expect("the median is one of the runs")
    })
}

/// Runs every measurement with `threads` threads and `ops` operations in all (split between
/// the reading threads; a writer runs a tenth of that); prints the table and returns one
/// record per cell and measurement.
pub fn run(threads: usize, ops: usize, repeat: usize) -> Vec<Record> {
    let per_thread = (ops / threads.max(1)).max(1) as u64;
    println!(
        "\nhot-swap: HotSwap<T> against arc_swap::ArcSwap<T>, {threads} threads, {per_thread} \
         operations per reading thread (a writer runs a tenth of that), median of {repeat}"
    );
    let mut rows = Vec::new();
    let mut records = Vec::new();
    for measurement in Measurement::ALL {
        let [ours, theirs] = measure(measurement, threads, per_thread, repeat);
        rows.push(vec![
            measurement.name().to_string(),
            ours.threads.to_string(),
            format!("{:.1}", ours.ns_per_op()),
            format!("{:.1}", theirs.ns_per_op()),
            format!("{:.2}", ours.ns_per_op() / theirs.ns_per_op()),
        ]);
        for (name, side) in [
            (<HotSwap<Config> as Cell>::NAME, ours),
            (<ArcSwap<Config> as Cell>::NAME, theirs),
        ] {
            records.push(Record {
                map: name.to_string(),
                workload: format!("hot-swap {}", measurement.name()),
                threads: side.threads,
                ops: side.ops,
                repeat,
                status: "ok".to_string(),
                mops: Some(side.mops()),
                ..Record::default()
            });
        }
    }
    print!(
        "{}",
        render(
            &[
                "operation",
                "threads",
                "HotSwap ns/op",
                "arc-swap ns/op",
                "HotSwap / arc-swap",
            ],
            &rows,
        )
    );
    println!(
        "ns/op: one thread's time per operation (lower is better); load and load_full read one \
         field; arc-swap's version is a field of the value; publish builds and stores a new \
         Arc; the while-rows run 1 writer against {} reader(s)",
        threads.saturating_sub(1).max(1)
    );
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_cells_publish_what_readers_then_see() {
        fn check<C: Cell>() {
            let cell = C::holding(Config::numbered(0));
            assert_eq!(cell.load_field(), 0);
            cell.publish(Arc::new(Config::numbered(7)));
            assert_eq!(cell.load_field(), 7);
            assert_eq!(cell.load_full_field(), 7);
        }
        check::<HotSwap<Config>>();
        check::<ArcSwap<Config>>();
    }

    #[test]
    fn hot_swap_counts_versions_and_arc_swap_reads_the_field() {
        let ours = HotSwap::holding(Config::numbered(0));
        ours.publish(Arc::new(Config::numbered(5)));
        assert_eq!(Cell::version(&ours), 1);
        let theirs = ArcSwap::holding(Config::numbered(0));
        theirs.publish(Arc::new(Config::numbered(5)));
        assert_eq!(Cell::version(&theirs), 5);
    }

    #[test]
    fn every_measurement_reports_operations() {
        for measurement in Measurement::ALL {
            for side in measure(measurement, 2, 2_000, 1) {
                assert!(side.ops > 0, "{measurement:?}");
                assert!(side.threads >= 1, "{measurement:?}");
            }
        }
    }
}
