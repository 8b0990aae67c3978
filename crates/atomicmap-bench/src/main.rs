//! `atomicmap-bench`: atomicmap's maps side by side with dashmap, papaya, scc, flurry, lock-based
//! baselines and the LIMIT of private unsynchronised maps. See `--help`.

mod adapter;
mod capture;
mod check;
mod cli;
mod files;
mod hasher;
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

use clap::Parser;

/// Counts allocations for allocs/op, B/op and B/entry.
#[global_allocator]
static ALLOCATOR: memory::CountingAlloc = memory::CountingAlloc;

fn main() -> std::process::ExitCode {
    suite::main(cli::Cli::parse())
}
