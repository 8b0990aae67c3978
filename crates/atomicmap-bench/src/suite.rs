//! The whole run: for each workload, generate its keys and operation streams once, then
//! check, run and record every selected map on them (for the snapshot workload, every
//! selected map that can take snapshots).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::capture::{CanCapture, CaptureMeasurement, CaptureRunVisitor};
use crate::check::CheckVisitor;
use crate::cli::Cli;
use crate::hasher::{BenchHasher, HasherVisitor};
use crate::keys::BenchKey;
use crate::latency::{median, TimerOverhead};
use crate::maps::MapId;
use crate::record::{CaptureFigures, Record, SnapshotFigures};
use crate::runner::{Measurement, Plan, RunVisitor, RUN_LIMIT, SAMPLE_EVERY};
use crate::snapshots::{self, CanSnapshot, SnapshotMeasurement, SnapshotVisitor};
use crate::table;
use crate::workload::{self, KeyType, Lookups, Measure, Prefill, Workload};

/// Settings shared by every workload of a run.
struct Settings<'a, S> {
    cli: &'a Cli,
    threads: usize,
    keys: usize,
    ops: usize,
    maps: Vec<MapId>,
    hasher: S,
    progress: ProgressBar,
    /// Pre-check results per map and key type: each map is checked once.
    checked: HashMap<(MapId, KeyType), Result<(), String>>,
}

/// One workload's results: its records, and the lines printed under its table.
struct WorkloadResults {
    records: Vec<Record>,
    notes: Vec<String>,
}

/// The cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One pass over a list of workloads with one thread count and key space: the command line's,
/// or one regime's.
pub struct Pass {
    /// Benchmark threads.
    pub threads: usize,
    /// Size of the key space.
    pub keys: usize,
    /// Timed operations per map.
    pub ops: usize,
    /// The maps to run; empty for all of them.
    pub maps: Vec<MapId>,
    /// The workloads, in order.
    pub workloads: Vec<Workload>,
}

/// Runs `pass`, printing a header and each workload's table; returns all records.
pub fn run_pass(cli: &Cli, pass: Pass) -> Vec<Record> {
    let maps = if pass.maps.is_empty() {
        MapId::ALL.to_vec()
    } else {
        pass.maps.clone()
    };
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(
            Some((pass.workloads.len() * (maps.len() + 1) * cli.repeat) as u64),
            ProgressDrawTarget::stderr(),
        )
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    println!(
        "atomicmap-bench: {} threads, {} keys ({}), {} ops per map, hasher {}, seed {}, median \
         of {}",
        pass.threads,
        pass.keys,
        cli.key_pattern.name(),
        pass.ops,
        cli.hasher.name(),
        cli.seed,
        cli.repeat
    );
    cli.hasher.visit(RunWorkloads {
        cli,
        pass: &pass,
        maps,
        progress,
    })
}

/// Every workload of a pass, with the hasher the command line chose.
struct RunWorkloads<'a> {
    cli: &'a Cli,
    pass: &'a Pass,
    maps: Vec<MapId>,
    progress: ProgressBar,
}

impl HasherVisitor for RunWorkloads<'_> {
    type Output = Vec<Record>;

    /// Runs and prints each workload; returns all records.
    fn visit<S: BenchHasher>(self, hasher: S) -> Vec<Record> {
        let mut settings = Settings {
            cli: self.cli,
            threads: self.pass.threads,
            keys: self.pass.keys,
            ops: self.pass.ops,
            maps: self.maps,
            hasher,
            progress: self.progress,
            checked: HashMap::new(),
        };
        let mut records = Vec::new();
        for w in &self.pass.workloads {
            let results = match w.key_type {
                KeyType::U64 => run_workload::<u64, S>(&mut settings, w),
                KeyType::Text => run_workload::<String, S>(&mut settings, w),
            };
            settings.progress.suspend(|| {
                println!("\n{} ({} keys):", w.name, key_type_name(w.key_type));
                print!("{}", table::table(&results.records));
                for note in &results.notes {
                    println!("{note}");
                }
            });
            records.extend(results.records);
        }
        settings.progress.finish_and_clear();
        records
    }
}

fn key_type_name(key_type: KeyType) -> &'static str {
    match key_type {
        KeyType::U64 => "u64",
        KeyType::Text => "String",
    }
}

/// The timer's cost, and what sampling adds to an operation of the fastest map timed.
pub fn print_timer_overhead(timer: &TimerOverhead, records: &[Record]) {
    let added = timer.per_op_ns(SAMPLE_EVERY);
    // Time one thread spends on one operation, for the fastest map (worst case for overhead).
    let fastest_op_ns = records
        .iter()
        .filter(|r| r.map != MapId::Harness.name())
        .filter_map(|r| r.mops.map(|m| r.threads as f64 * 1e3 / m))
        .fold(f64::INFINITY, f64::min);
    print!(
        "\nlatency sampling: 1 op in {SAMPLE_EVERY} timed with Instant::now(); timer pair {:.1}ns \
         (included in p50/p99/p999), histogram record {:.1}ns; amortised {added:.2}ns per op",
        timer.pair_ns, timer.record_ns
    );
    if fastest_op_ns.is_finite() {
        println!(
            " = {:.1}% of the fastest map's {fastest_op_ns:.1}ns per op",
            100.0 * added / fastest_op_ns
        );
    } else {
        println!();
    }
}

fn run_workload<K: BenchKey, S: BenchHasher>(
    s: &mut Settings<'_, S>,
    w: &Workload,
) -> WorkloadResults {
    let cli = s.cli;
    s.progress
        .set_message(format!("{}: generating operations", w.name));
    let keys: Vec<K> = (0..s.keys as u64).map(|i| w.key_pattern.nth(i)).collect();
    let streams = workload::generate(w, s.threads, s.keys, s.ops, cli.seed);
    let plan = Plan {
        workload: w,
        keys: &keys,
        streams: &streams,
        hasher: &s.hasher,
    };
    let snapshots = w.measure == Measure::Snapshots;
    let capture = w.measure == Measure::Capture;
    let mut cannot_snapshot = Vec::new();
    let mut cannot_capture = Vec::new();
    // Each map's record, and whether it is timed (it passed its check and can run here).
    let mut entries: Vec<(MapId, Record, bool)> = Vec::new();
    let grows = w.prefill == Prefill::Empty && !w.presized;
    let bounds: &[MapId] = match w.measure {
        Measure::Throughput if grows && s.threads == 1 => &[
            MapId::Floor,
            MapId::GrowingFloor,
            MapId::GrowingFloorPlainCopy,
            MapId::Harness,
        ],
        // A grow that stops the world would wait for a preempted thread's whole time slice.
        Measure::Throughput if grows && s.threads <= available_cores() => {
            &[MapId::Floor, MapId::StopTheWorld, MapId::Harness]
        }
        Measure::Throughput => &[MapId::Floor, MapId::Harness],
        _ => &[],
    };
    for map in s.maps.iter().copied().chain(bounds.iter().copied()) {
        if snapshots && !map.visit::<K, S, _>(CanSnapshot) {
            cannot_snapshot.push(map.name());
            s.progress.inc(cli.repeat as u64);
            continue;
        }
        if capture && map.visit_captured::<K, S, _>(CanCapture).is_none() {
            cannot_capture.push(map.name());
            s.progress.inc(cli.repeat as u64);
            continue;
        }
        s.progress
            .set_message(format!("{}: checking {}", w.name, map.name()));
        let check = s
            .checked
            .entry((map, w.key_type))
            .or_insert_with(|| match map {
                MapId::Harness => Ok(()),
                _ => map.visit::<K, S, _>(CheckVisitor(&s.hasher)),
            })
            .clone();
        let mut record = Record {
            map: map.name().to_string(),
            workload: w.name.to_string(),
            key_type: key_type_name(w.key_type).to_string(),
            hasher: cli.hasher.name().to_string(),
            key_pattern: w.key_pattern.name().to_string(),
            threads: s.threads,
            keys: s.keys,
            ops: streams.timed.iter().map(|t| t.len() as u64).sum(),
            repeat: cli.repeat,
            status: "ok".to_string(),
            ..Record::default()
        };
        let timed = match check {
            Ok(()) => true,
            Err(e) => {
                record.status = format!("FAILED correctness check, not timed: {e}");
                s.progress.inc(cli.repeat as u64);
                false
            }
        };
        entries.push((map, record, timed));
    }
    // Repeats run in rounds over all maps rather than back to back per map, so that a noisy
    // stretch of a shared machine lands on every map's runs alike instead of on one map.
    let mut throughput_runs: Vec<Vec<Measurement>> = entries.iter().map(|_| Vec::new()).collect();
    let mut snapshot_runs: Vec<Vec<Option<SnapshotMeasurement>>> =
        entries.iter().map(|_| Vec::new()).collect();
    let mut capture_runs: Vec<Vec<CaptureMeasurement>> =
        entries.iter().map(|_| Vec::new()).collect();
    for round in 1..=cli.repeat {
        for (index, (map, _, timed)) in entries.iter().enumerate() {
            if !timed {
                continue;
            }
            s.progress.set_message(format!(
                "{}: {} run {round}/{}",
                w.name,
                map.name(),
                cli.repeat
            ));
            let run_started = Instant::now();
            let mut mops = None;
            if snapshots {
                snapshot_runs[index].push(map.visit::<K, S, _>(SnapshotVisitor(&plan)));
            } else if capture {
                capture_runs[index].extend(map.visit_captured::<K, S, _>(CaptureRunVisitor(&plan)));
            } else {
                let run = map.visit::<K, S, _>(RunVisitor(&plan));
                mops = Some(run.mops());
                throughput_runs[index].push(run);
            }
            s.progress.inc(1);
            if s.progress.is_hidden() {
                // No bar to watch: a line per run, so a piped run is not silent for minutes.
                let rate = mops.map_or(String::new(), |m| format!(", {m:.2} Mops/s"));
                eprintln!(
                    "{}: {} run {round}/{} done in {:.1}s{rate}",
                    w.name,
                    map.name(),
                    cli.repeat,
                    run_started.elapsed().as_secs_f64()
                );
            }
        }
    }
    let mut records = Vec::new();
    for ((((_, mut record, timed), throughput), snapshot), captured) in entries
        .into_iter()
        .zip(throughput_runs)
        .zip(snapshot_runs)
        .zip(capture_runs)
    {
        if timed && capture {
            record_capture(&mut record, captured);
        } else if timed && snapshots {
            match snapshot.into_iter().collect::<Option<Vec<_>>>() {
                Some(runs) => record_snapshots(&mut record, runs, w),
                None => record.status = "not run: no snapshot()".to_string(),
            }
        } else if timed {
            record_throughput(&mut record, throughput);
        }
        records.push(record);
    }
    let mut notes = match w.measure {
        Measure::Snapshots => snapshot_notes(s.threads, &cannot_snapshot),
        Measure::Capture => capture_notes(s.threads, &cannot_capture),
        Measure::Throughput | Measure::Growth { .. } => Vec::new(),
    };
    match w.lookups {
        Lookups::Batched(size) if w.mix.insert == 100 => notes.push(format!(
            "batched-insert: presized's inserts, every key once into a map built with \
             with_capacity, {size} per batch, the keys made before the timed loop; AtomicMap \
             inserts each batch with pin().insert_all (what extend does), every other map (and \
             LIMIT) one insert per key; p50/p99/p999 are of a whole batch of {size}"
        )),
        Lookups::Batched(size) => notes.push(format!(
            "batched: read-heavy's keys, all read, {size} per batch, the keys made before the \
             timed loop; AtomicMap looks each batch up with pin().get_each, every other map \
             (and LIMIT) one get per key; Mops/s counts lookups; p50/p99/p999 are of a whole \
             batch of {size}"
        )),
        Lookups::Single => {}
    }
    WorkloadResults { records, notes }
}

/// Fill `record` from the run with the median throughput.
fn record_throughput(record: &mut Record, runs: Vec<Measurement>) {
    let mut mops: Vec<f64> = runs.iter().map(Measurement::mops).collect();
    let target = median(&mut mops);
    let m = runs
        .into_iter()
        .find(|r| r.mops() == target)
        .expect("the median is one of the runs");
    let per_op = |x: u64| (m.ops > 0).then(|| x as f64 / m.ops as f64);
    record.ops = m.ops;
    record.mops = Some(m.mops());
    record.p50_ns = Some(m.latency.value_at_quantile(0.50));
    record.p99_ns = Some(m.latency.value_at_quantile(0.99));
    record.p999_ns = Some(m.latency.value_at_quantile(0.999));
    record.allocs_per_op = per_op(m.allocs.allocs);
    record.bytes_alloc_per_op = per_op(m.allocs.allocated);
    record.bytes_per_entry = m.bytes_per_entry;
    record.peak_rss_bytes = m.peak_rss;
    record.growth = m.growth;
}

/// Fill `record` from the run with the median throughput with snapshots: the common fields
/// from its run alone, the snapshot fields from the rest. A snapshot whose size is outside
/// [`snapshots::expected_entries`] fails the record.
fn record_snapshots(record: &mut Record, runs: Vec<SnapshotMeasurement>, w: &Workload) {
    let mut mops: Vec<f64> = runs.iter().map(|r| r.with_snapshots.mops()).collect();
    let target = median(&mut mops);
    let m = runs
        .into_iter()
        .find(|r| r.with_snapshots.mops() == target)
        .expect("the median is one of the runs");
    let (alone, with) = (&m.alone, &m.with_snapshots);
    record.ops = alone.ops;
    record.mops = Some(alone.mops());
    record.p50_ns = Some(alone.latency.value_at_quantile(0.50));
    record.p99_ns = Some(alone.latency.value_at_quantile(0.99));
    record.p999_ns = Some(alone.latency.value_at_quantile(0.999));
    let expected = snapshots::expected_entries(w, record.keys);
    let (fewest, most) = (*m.entries.start(), *m.entries.end());
    if !expected.contains(&fewest) || !expected.contains(&most) {
        record.status = format!(
            "FAILED: snapshots held {fewest} to {most} entries, expected {} to {}",
            expected.start(),
            expected.end()
        );
    }
    record.snapshot = Some(SnapshotFigures {
        ops_with_snapshots: with.ops,
        mops_with_snapshots: with.mops(),
        throughput_ratio_with_snapshots: (alone.ops > 0).then(|| with.mops() / alone.mops()),
        p99_ns_with_snapshots: with.latency.value_at_quantile(0.99),
        p999_ns_with_snapshots: with.latency.value_at_quantile(0.999),
        snapshots_taken: m.snapshot_latency.len(),
        snapshot_p50_ns: m.snapshot_latency.value_at_quantile(0.50),
        snapshot_p99_ns: m.snapshot_latency.value_at_quantile(0.99),
        snapshot_max_ns: m.snapshot_latency.max(),
        snapshot_entries_min: fewest,
        snapshot_entries_max: most,
    });
}

/// Fill `record` from the run with the median capture-on throughput: the common fields from
/// its capture-off run, the capture fields from its capture-on run. A run whose subscriber's
/// replica diverged from the map fails the record.
fn record_capture(record: &mut Record, runs: Vec<CaptureMeasurement>) {
    if runs.iter().any(|run| !run.converged) {
        record.status = "FAILED: the subscriber's replica differs from the map".to_string();
        return;
    }
    let mut mops: Vec<f64> = runs.iter().map(|r| r.on.mops()).collect();
    let target = median(&mut mops);
    let Some(m) = runs.into_iter().find(|r| r.on.mops() == target) else {
        record.status = "not run".to_string();
        return;
    };
    let off_mops = m.off.mops();
    record.capture = Some(CaptureFigures {
        mops_versioned_storage: m.stored.mops(),
        ops_with_capture: m.on.ops,
        mops_with_capture: m.on.mops(),
        capture_ratio: (m.off.ops > 0).then(|| m.on.mops() / off_mops),
        p99_ns_with_capture: m.on.latency.value_at_quantile(0.99),
        events: m.events,
        drain_tail_ns: m.drain_tail.as_nanos() as u64,
    });
    record_throughput(record, vec![m.off]);
}

/// What the capture table's columns mean, and which maps it leaves out.
fn capture_notes(workers: usize, cannot_capture: &[&str]) -> Vec<String> {
    let cores = available_cores();
    let mut notes = vec![format!(
        "Mops/s off: the map alone; versioned: the same map holding every value with a version \
         (what a CapturedMap stores), no capture; on: the same map type as a CapturedMap, while \
         1 more thread \
         drains every change into a HashMap replica ({} threads on {cores} cores), lossless \
         (writers wait when its 64Ki-event buffer is full); the replica is checked against the \
         map after each run. on/off is the ratio of the median runs by capture-on throughput; \
         drain tail: from the workers' end to the subscriber's last event",
        workers + 1
    )];
    if !cannot_capture.is_empty() {
        notes.push(format!(
            "not run, no change capture: {}",
            cannot_capture.join(", ")
        ));
    }
    notes
}

/// What the snapshot table's columns mean, and which maps it leaves out.
fn snapshot_notes(workers: usize, cannot_snapshot: &[&str]) -> Vec<String> {
    let cores = available_cores();
    let competes = if workers + 1 > cores {
        ": the snapshot thread competes with the workers for CPU"
    } else {
        ""
    };
    let mut notes = vec![
        format!(
            "Mops/s: the {workers} worker threads' operations per second, alone, then again on \
             the same map while 1 more thread takes snapshots back to back ({} threads on \
             {cores} cores{competes}); each run stops after {}s if its operations are not done",
            workers + 1,
            RUN_LIMIT.as_secs()
        ),
        "snapshot latency (units as shown): snapshot() until it returns, its drop not \
         included; entries/snapshot: len() of each snapshot, fewest-most"
            .to_string(),
    ];
    if !cannot_snapshot.is_empty() {
        notes.push(format!(
            "not run, no snapshot(): {}",
            cannot_snapshot.join(", ")
        ));
    }
    notes
}
