//! `atomicmap-bench`: atomicmap's maps side by side with dashmap, papaya, scc, flurry, lock-based
//! baselines and the LIMIT of private unsynchronised maps. See `--help`.

mod adapter;
mod capture;
mod check;
mod cli;
mod files;
mod hasher;
mod hot_swap;
mod keys;
mod latency;
mod maps;
mod memory;
mod plot;
mod record;
mod regimes;
mod runner;
mod snapshots;
mod suite;
mod table;
mod workload;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::cli::Cli;
use crate::latency::TimerOverhead;

/// Counts allocations for allocs/op, B/op and B/entry.
#[global_allocator]
static ALLOCATOR: memory::CountingAlloc = memory::CountingAlloc;

/// Runs everything the command line asks for; prints tables; writes files.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let outputs = [("JSON", &cli.json), ("CSV", &cli.csv), ("plot", &cli.plot)];
    for (what, path) in outputs {
        if let Some(path) = path {
            if let Err(e) = files::check_writable(path) {
                eprintln!(
                    "error: cannot write the {what} file {}: {e}",
                    path.display()
                );
                return ExitCode::from(2);
            }
        }
    }
    let started = Instant::now();
    let timer = TimerOverhead::measure();
    let threads = cli.threads.map_or_else(suite::available_cores, usize::from);
    let workloads = cli.workloads();
    let mut records = Vec::new();
    if cli.regimes {
        records = regimes::run(&cli);
    } else if !workloads.is_empty() {
        records = suite::run_pass(
            &cli,
            suite::Pass {
                threads,
                keys: cli.keys,
                ops: cli.ops,
                maps: cli.maps.clone(),
                workloads,
            },
        );
    }
    if !records.is_empty() {
        suite::print_timer_overhead(&timer, &records);
        println!(
            "B/entry: live heap / len after prefill (at the end for workloads that start \
             empty); peak RSS: the whole process (VmHWM, including key table and op streams), \
             reset before each map"
        );
    }
    if cli.hot_swap() && !cli.regimes {
        records.extend(hot_swap::run(threads, cli.ops, cli.repeat));
    }
    println!("elapsed: {:.1}s", started.elapsed().as_secs_f64());

    let mut status = ExitCode::SUCCESS;
    let mut report = |what: &str, result: Result<(), String>| {
        if let Err(e) = result {
            eprintln!("error: cannot write {what}: {e}");
            status = ExitCode::FAILURE;
        }
    };
    if let Some(path) = &cli.json {
        report("JSON", files::write_json(path, &records));
    }
    if let Some(path) = &cli.csv {
        report("CSV", files::write_csv(path, &records));
    }
    if let Some(path) = &cli.plot {
        report("plot", crate::plot::draw(path, &records));
    }
    status
}
