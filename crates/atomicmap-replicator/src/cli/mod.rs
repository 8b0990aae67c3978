//! The command line: one subcommand per role.

mod bench;
mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use atomicmap_replicator::engine::redis::RedisEngine;
use atomicmap_replicator::engine::Layout;
use atomicmap_replicator::flow::FlowLevels;
use atomicmap_replicator::load::Load;
use atomicmap_replicator::metrics::{ReplicaStats, SourceStats};
use atomicmap_replicator::replica::{Replica, ReplicaConfig};
use atomicmap_replicator::resolve::{GCounter, LastWriterWins, Resolver};
use atomicmap_replicator::sink::{LocalMap, MapSink, RedisHashSink, Sink};
use atomicmap_replicator::source::{self, Source, SourceConfig, SourceMap};
use atomicmap_replicator::transform::{self, Transform};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::sync::watch;

/// Replicates an atomicmap over Redis Streams.
#[derive(Parser, Debug)]
#[command(name = "atomicmap-replicate", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter when RUST_LOG is not set.
    #[arg(long, global = true, default_value = "info")]
    log: String,
}

impl Cli {
    /// The tracing filter to use.
    pub fn log_filter(&self) -> String {
        self.log.clone()
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish a map under a synthetic write load (recovering it from Redis first).
    Source(SourceArgs),
    /// Follow one or more tasks into a local map or a Redis hash.
    Replica(ReplicaArgs),
    /// A local redis-server, a source under load and two replicas; ends with an equality check.
    Demo(demo::DemoArgs),
    /// End-to-end events/s and lag percentiles with a local redis-server.
    Bench(bench::BenchArgs),
}

/// Where the streams are.
#[derive(Args, Debug, Clone)]
struct Common {
    /// Redis URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis: String,
    /// Prefix of every key the replicator writes.
    #[arg(long, default_value = "atomicmap")]
    prefix: String,
    /// Partitions (streams) per task.
    #[arg(long, default_value_t = 4)]
    partitions: u16,
    /// Serve Prometheus metrics on this address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

#[derive(Args, Debug)]
struct SourceArgs {
    #[command(flatten)]
    common: Common,
    /// Task name.
    #[arg(long, default_value = "main")]
    task: String,
    /// Node id of this source (distinct per source writing the same keys).
    #[arg(long, default_value_t = 1)]
    node: u16,
    /// Spool file (default: ./TASK.spool).
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Seconds between snapshots.
    #[arg(long, default_value_t = 60.0)]
    snapshot_interval: f64,
    /// Distinct keys of the load.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Operations per second of the load (0: flat out).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Stop after this many operations (publishing a final snapshot); default: until SIGTERM.
    #[arg(long)]
    ops: Option<u64>,
    /// Percent of operations that remove a key.
    #[arg(long, default_value_t = 10)]
    remove_percent: u8,
    /// G-Counter load: each operation increments a key's counter.
    #[arg(long)]
    counters: bool,
    /// Writer threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Publish at most this many changes per second.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Key prefixes held back when Redis is slow (flow level 2).
    #[arg(long)]
    low_priority: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum SinkKind {
    /// A map in this process (not durable: a restart loads a snapshot).
    Memory,
    /// A Redis hash, with the checkpoint in the same transaction (durable).
    Hash,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ResolverKind {
    /// Last writer wins by hybrid logical clock.
    Lww,
    /// Grow-only counters.
    Gcounter,
}

#[derive(Args, Debug)]
struct ReplicaArgs {
    #[command(flatten)]
    common: Common,
    /// Replica name (its checkpoint and hash are named after it).
    #[arg(long, default_value = "replica")]
    name: String,
    /// Tasks to follow.
    #[arg(long = "task", default_value = "main")]
    tasks: Vec<String>,
    /// Where the replica is written.
    #[arg(long, value_enum, default_value_t = SinkKind::Hash)]
    sink: SinkKind,
    /// How concurrent writes resolve.
    #[arg(long, value_enum, default_value_t = ResolverKind::Lww)]
    resolver: ResolverKind,
    /// Transform: keep only keys with one of these prefixes.
    #[arg(long)]
    keep_prefix: Vec<String>,
    /// Transform: rename a key prefix, FROM=TO.
    #[arg(long, value_parser = parse_rename)]
    rename_prefix: Vec<(String, String)>,
    /// Transform: values expire this many seconds after they are applied (local map sink).
    #[arg(long)]
    ttl: Option<f64>,
}

fn parse_rename(arg: &str) -> Result<(String, String), String> {
    arg.split_once('=')
        .map(|(from, to)| (from.to_string(), to.to_string()))
        .ok_or_else(|| format!("expected FROM=TO, got {arg:?}"))
}

impl ReplicaArgs {
    /// Stage 2 as the flags ask: filter, then rename, then TTL.
    fn transform(&self) -> Transform {
        let mut stages = Vec::new();
        if !self.keep_prefix.is_empty() {
            stages.push(transform::keep_prefixes(self.keep_prefix.clone()));
        }
        for (from, to) in &self.rename_prefix {
            stages.push(transform::rename_prefix(from, to));
        }
        if let Some(ttl) = self.ttl {
            stages.push(transform::with_ttl(Duration::from_secs_f64(ttl.max(0.0))));
        }
        transform::chain(stages)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the chosen command.
pub async fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Source(args) => run_source(args).await,
        Command::Replica(args) => run_replica(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(args) => bench::run(args).await,
    }
}

fn install_metrics(address: Option<SocketAddr>) -> Result<(), BoxError> {
    if let Some(address) = address {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(address)
            .install()?;
        atomicmap_replicator::metrics::describe();
        tracing::info!(%address, "serving Prometheus metrics");
    }
    Ok(())
}

/// A watch that turns true on SIGINT or SIGTERM.
fn shutdown_on_signal() -> Result<watch::Receiver<bool>, BoxError> {
    let (tx, rx) = watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    Ok(rx)
}

async fn run_source(args: SourceArgs) -> Result<(), BoxError> {
    install_metrics(args.common.metrics)?;
    atomicmap_replicator::metrics::export_source_metrics();
    let engine = RedisEngine::new(&args.common.redis)?;
    let spool = args
        .spool
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.spool", args.task)));
    let mut config = SourceConfig::new(
        &args.task,
        args.common.partitions,
        Layout::new(&args.common.prefix),
        spool,
    );
    config.snapshot_interval = Some(Duration::from_secs_f64(args.snapshot_interval.max(0.1)));
    config.flow = FlowLevels {
        rate_limit: args.rate_limit.and_then(std::num::NonZeroU32::new),
        low_priority: args.low_priority.clone(),
        ..FlowLevels::default()
    };
    let map = Arc::new(SourceMap::with_node(args.node));
    let stats = Arc::new(SourceStats::default());
    let recovery = source::recover(&engine, &config, &map, &stats).await?;
    tracing::info!(keys = recovery.keys, "map ready");
    let seed = u64::from(args.node) << 32 ^ recovery.max_seen;
    let mut shutdown = shutdown_on_signal()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let publisher = {
        let source = Source::start(engine, config, map.clone(), stats.clone())
            .await?
            .with_recovery(recovery);
        tokio::spawn(source.run(stop_rx))
    };
    let load = Load {
        keys: args.keys,
        rate: (args.rate > 0).then_some(args.rate),
        ops: args.ops,
        remove_percent: if args.counters {
            0
        } else {
            args.remove_percent
        },
        counters: args.counters,
        threads: args.threads,
        seed,
    }
    .start(map.clone());
    let mut report = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = report.tick() => {
                tracing::info!(
                    ops = load.done(),
                    published = stats.published.load(std::sync::atomic::Ordering::Relaxed),
                    spool = stats.spool_depth.load(std::sync::atomic::Ordering::Relaxed),
                    keys = map.len(),
                    "source"
                );
                if load.is_finished() {
                    break;
                }
            }
        }
    }
    let ops = tokio::task::spawn_blocking(move || load.stop()).await?;
    let _ = stop_tx.send(true);
    publisher.await??;
    tracing::info!(
        ops,
        keys = map.len(),
        "source done; final snapshot published"
    );
    Ok(())
}

async fn run_replica(args: ReplicaArgs) -> Result<(), BoxError> {
    install_metrics(args.common.metrics)?;
    atomicmap_replicator::metrics::export_replica_metrics();
    let engine = RedisEngine::new(&args.common.redis)?;
    let layout = Layout::new(&args.common.prefix);
    let config = ReplicaConfig::new(
        &args.name,
        args.tasks.clone(),
        args.common.partitions,
        layout.clone(),
    );
    let shutdown = shutdown_on_signal()?;
    let transform = args.transform();
    match (args.sink, args.resolver) {
        (SinkKind::Hash, ResolverKind::Lww) => {
            let sink = RedisHashSink::new(&engine, &layout, &args.name);
            follow(config, engine, LastWriterWins, sink, transform, shutdown).await
        }
        (SinkKind::Hash, ResolverKind::Gcounter) => {
            let sink = RedisHashSink::new(&engine, &layout, &args.name);
            follow(config, engine, GCounter, sink, transform, shutdown).await
        }
        (SinkKind::Memory, ResolverKind::Lww) => {
            let sink = MapSink::new(Arc::new(LocalMap::new()));
            follow(config, engine, LastWriterWins, sink, transform, shutdown).await
        }
        (SinkKind::Memory, ResolverKind::Gcounter) => {
            let sink = MapSink::new(Arc::new(LocalMap::new()));
            follow(config, engine, GCounter, sink, transform, shutdown).await
        }
    }
}

async fn follow<R: Resolver, S: Sink>(
    config: ReplicaConfig,
    engine: RedisEngine,
    resolver: R,
    sink: S,
    transform: Transform,
    shutdown: watch::Receiver<bool>,
) -> Result<(), BoxError> {
    let name = config.name.clone();
    let mut replica = Replica::new(config, engine, resolver, sink).with_transform(transform);
    let stats = replica.stats();
    let reporter = tokio::spawn(report_replica(name.clone(), stats.clone()));
    replica.start(true).await?;
    let result = replica.run(shutdown).await;
    reporter.abort();
    result?;
    tracing::info!(replica = %name, keys = replica.values().len(), "replica stopped");
    Ok(())
}

async fn report_replica(name: String, stats: Arc<ReplicaStats>) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        tracing::info!(
            replica = %name,
            applied = stats.applied.load(Relaxed),
            lag_events = stats.lag_events.load(Relaxed),
            lag_ms = stats.lag_ms.load(Relaxed),
            conflicts = stats.conflicts.load(Relaxed),
            skipped_duplicates = stats.duplicates.load(Relaxed),
            reloads = stats.reloads.load(Relaxed),
            "replica"
        );
    }
}
