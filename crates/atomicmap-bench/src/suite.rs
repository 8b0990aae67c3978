//! The whole run: for each workload, generate its keys and operation streams once, then
//! check, run and record every selected map on them.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::adapter::{BenchHasher, BenchKey};
use crate::check::CheckVisitor;
use crate::cli::Cli;
use crate::maps::MapId;
use crate::metrics::{median, TimerOverhead};
use crate::output::{self, Record};
use crate::runner::{Measurement, Plan, RunVisitor, SAMPLE_EVERY};
use crate::workload::{self, KeyType, Workload};

/// Settings shared by every workload of a run.
struct Settings<'a> {
    cli: &'a Cli,
    threads: usize,
    maps: Vec<MapId>,
    hasher: BenchHasher,
    progress: ProgressBar,
    /// Pre-check results per map and key type: each map is checked once.
    checked: HashMap<(MapId, KeyType), Result<(), String>>,
}

/// Run everything the command line asks for; print tables; write files. Returns the exit
/// status.
pub fn main(cli: Cli) -> std::process::ExitCode {
    let started = Instant::now();
    let threads = cli.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let workloads: Vec<Workload> = cli.workload.iter().flat_map(|w| w.workloads()).collect();
    let maps = if cli.maps.is_empty() {
        MapId::ALL.to_vec()
    } else {
        cli.maps.clone()
    };
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(
            Some((workloads.len() * maps.len() * cli.repeat) as u64),
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
    let timer = TimerOverhead::measure();
    println!(
        "atomicmap-bench: {threads} threads, {} keys, {} ops per map, hasher {}, seed {}, median of {}",
        cli.keys,
        cli.ops,
        cli.hasher.name(),
        cli.seed,
        cli.repeat
    );
    let mut settings = Settings {
        cli: &cli,
        threads,
        maps,
        hasher: BenchHasher::from_kind(cli.hasher),
        progress,
        checked: HashMap::new(),
    };

    let mut records = Vec::new();
    for w in &workloads {
        let rows = match w.key_type {
            KeyType::U64 => run_workload::<u64>(&mut settings, w),
            KeyType::Text => run_workload::<String>(&mut settings, w),
        };
        settings.progress.suspend(|| {
            println!("\n{} ({} keys):", w.name, key_type_name(w.key_type));
            print!("{}", output::table(&rows));
        });
        records.extend(rows);
    }
    settings.progress.finish_and_clear();

    print_timer_overhead(&timer, &records);
    println!(
        "B/entry: live heap / len after prefill (at the end for workloads that start empty); \
         peak RSS: the whole process (VmHWM, including key table and op streams), reset before \
         each map"
    );
    println!("elapsed: {:.1}s", started.elapsed().as_secs_f64());

    let mut status = std::process::ExitCode::SUCCESS;
    let mut report = |what: &str, result: Result<(), String>| {
        if let Err(e) = result {
            eprintln!("error: cannot write {what}: {e}");
            status = std::process::ExitCode::FAILURE;
        }
    };
    if let Some(path) = &cli.json {
        report(
            "JSON",
            output::write_json(path, &records).map_err(|e| e.to_string()),
        );
    }
    if let Some(path) = &cli.csv {
        report(
            "CSV",
            output::write_csv(path, &records).map_err(|e| e.to_string()),
        );
    }
    if let Some(path) = &cli.plot {
        report("plot", crate::plot::draw(path, &records));
    }
    status
}

fn key_type_name(key_type: KeyType) -> &'static str {
    match key_type {
        KeyType::U64 => "u64",
        KeyType::Text => "String",
    }
}

/// The timer's cost, and what sampling adds to an operation of the fastest map timed.
fn print_timer_overhead(timer: &TimerOverhead, records: &[Record]) {
    let added = timer.per_op_ns(SAMPLE_EVERY);
    // Time one thread spends on one operation, for the fastest map (worst case for overhead).
    let fastest_op_ns = records
        .iter()
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

fn run_workload<K: BenchKey>(s: &mut Settings<'_>, w: &Workload) -> Vec<Record> {
    let cli = s.cli;
    s.progress
        .set_message(format!("{}: generating operations", w.name));
    let keys: Vec<K> = (0..cli.keys as u64).map(K::nth).collect();
    let streams = workload::generate(w, s.threads, cli.keys, cli.ops, cli.seed);
    let plan = Plan {
        workload: w,
        keys: &keys,
        streams: &streams,
        hasher: &s.hasher,
    };
    let mut records = Vec::new();
    for &map in &s.maps {
        s.progress
            .set_message(format!("{}: checking {}", w.name, map.name()));
        let check = s
            .checked
            .entry((map, w.key_type))
            .or_insert_with(|| map.visit::<K, _>(CheckVisitor(&s.hasher)))
            .clone();
        let mut record = Record {
            map: map.name().to_string(),
            workload: w.name.to_string(),
            key_type: key_type_name(w.key_type).to_string(),
            hasher: cli.hasher.name().to_string(),
            threads: s.threads,
            keys: cli.keys,
            ops: streams.timed.iter().map(|t| t.len() as u64).sum(),
            repeat: cli.repeat,
            status: "ok".to_string(),
            ..Record::default()
        };
        if let Err(e) = check {
            record.status = format!("FAILED correctness check, not timed: {e}");
            s.progress.inc(cli.repeat as u64);
            records.push(record);
            continue;
        }
        let mut runs: Vec<Measurement> = Vec::with_capacity(cli.repeat);
        for i in 0..cli.repeat {
            s.progress.set_message(format!(
                "{}: {} run {}/{}",
                w.name,
                map.name(),
                i + 1,
                cli.repeat
            ));
            runs.push(map.visit::<K, _>(RunVisitor(&plan)));
            s.progress.inc(1);
        }
        let mut mops: Vec<f64> = runs.iter().map(Measurement::mops).collect();
        let target = median(&mut mops);
        let m = runs
            .into_iter()
            .find(|r| r.mops() == target)
            .expect("the median is one of the runs");
        let per_op = |x: u64| (m.ops > 0).then(|| x as f64 / m.ops as f64);
        record.mops = Some(m.mops());
        record.p50_ns = Some(m.latency.value_at_quantile(0.50));
        record.p99_ns = Some(m.latency.value_at_quantile(0.99));
        record.p999_ns = Some(m.latency.value_at_quantile(0.999));
        record.allocs_per_op = per_op(m.allocs.allocs);
        record.bytes_alloc_per_op = per_op(m.allocs.allocated);
        record.bytes_per_entry = m.bytes_per_entry;
        record.peak_rss_bytes = m.peak_rss;
        record.growth = m.growth;
        records.push(record);
    }
    records
}
