//! `bench`: one source and one replica with a private redis-server. Measures end-to-end
//! events per second (writes flat out until the replica has applied the last one), then the
//! lag distribution at half that rate.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atomicmap_replicator::engine::redis::RedisEngine;
use atomicmap_replicator::engine::{Engine, Layout};
use atomicmap_replicator::load::Load;
use atomicmap_replicator::local_redis::LocalRedis;
use atomicmap_replicator::metrics::SourceStats;
use atomicmap_replicator::replica::{Replica, ReplicaConfig};
use atomicmap_replicator::resolve::LastWriterWins;
use atomicmap_replicator::sink::{LocalMap, MapSink};
use atomicmap_replicator::source::{Source, SourceConfig, SourceMap};
use clap::Args;
use hdrhistogram::Histogram;
use tokio::sync::watch;

use super::BoxError;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Events of the throughput run.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Partitions.
    #[arg(long, default_value_t = 4)]
    partitions: u16,
    /// Seconds of the lag run.
    #[arg(long, default_value_t = 10)]
    lag_seconds: u64,
    /// Offered rate of the lag run (default: half the measured throughput).
    #[arg(long)]
    lag_rate: Option<u64>,
    /// Stream entries the replica reads per stream per round trip.
    #[arg(long, default_value_t = 64)]
    read_count: usize,
}

struct Run {
    events: u64,
    elapsed: Duration,
    lag: Histogram<u64>,
}

/// One source and one replica on a fresh server: `load` until it is done (or `duration`),
/// then until the replica applied every event.
async fn run_once(
    args: &BenchArgs,
    load: Load,
    duration: Option<Duration>,
) -> Result<Run, BoxError> {
    let redis = LocalRedis::start(false)?;
    let engine = RedisEngine::new(&redis.url())?;
    let layout = Layout::new("bench");
    let spool = tempfile::tempdir()?;
    let config = SourceConfig::new(
        "bench",
        args.partitions,
        layout.clone(),
        spool.path().join("spool"),
    );
    let map = Arc::new(SourceMap::with_node(1));
    let stats = Arc::new(SourceStats::default());
    let (source_stop, source_rx) = watch::channel(false);
    let publisher = {
        let source = Source::start(engine.fork(), config, map.clone(), stats.clone()).await?;
        tokio::spawn(source.run(source_rx))
    };

    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let mut config = ReplicaConfig::new("bench", vec!["bench".into()], args.partitions, layout);
    config.read_count = args.read_count;
    let mut replica = Replica::new(
        config,
        engine.fork(),
        LastWriterWins,
        MapSink::new(Arc::new(LocalMap::new())),
    )
    .with_lag_histogram(histogram.clone());
    let replica_stats = replica.stats();
    let (replica_stop, replica_rx) = watch::channel(false);
    replica.start(true).await?;
    let follower = tokio::spawn(async move { replica.run(replica_rx).await });

    let started = Instant::now();
    let handle = load.start(map.clone());
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if handle.is_finished() || duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    let events = tokio::task::spawn_blocking(move || handle.stop()).await?;
    while replica_stats.applied.load(Relaxed) < events {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    let _ = source_stop.send(true);
    publisher.await??;
    let _ = replica_stop.send(true);
    follower.await??;
    let lag = histogram
        .lock()
        .map_err(|_| "lag histogram poisoned")?
        .clone();
    Ok(Run {
        events,
        elapsed,
        lag,
    })
}

pub async fn run(args: BenchArgs) -> Result<(), BoxError> {
    let flat_out = Load {
        keys: args.keys,
        rate: None,
        ops: Some(args.events),
        remove_percent: 0,
        counters: false,
        threads: 1,
        seed: 7,
    };
    let throughput = run_once(&args, flat_out, None).await?;
    let rate = throughput.events as f64 / throughput.elapsed.as_secs_f64();
    println!(
        "throughput: {} events end to end in {:.2} s = {:.0} events/s (1 source, 1 replica, {} partitions, local redis-server)",
        throughput.events,
        throughput.elapsed.as_secs_f64(),
        rate,
        args.partitions
    );
    let offered = args.lag_rate.unwrap_or((rate / 2.0) as u64).max(1);
    let paced = Load {
        rate: Some(offered),
        ops: Some(offered * args.lag_seconds),
        ..Load {
            seed: 8,
            ..flat_out_template(&args)
        }
    };
    let lag = run_once(
        &args,
        paced,
        Some(Duration::from_secs(args.lag_seconds + 5)),
    )
    .await?;
    println!(
        "lag at {} events/s offered ({} events): p50 {} ms, p99 {} ms, max {} ms (commit at the source to apply at the replica)",
        offered,
        lag.events,
        lag.lag.value_at_quantile(0.5),
        lag.lag.value_at_quantile(0.99),
        lag.lag.max()
    );
    Ok(())
}

fn flat_out_template(args: &BenchArgs) -> Load {
    Load {
        keys: args.keys,
        rate: None,
        ops: None,
        remove_percent: 0,
        counters: false,
        threads: 1,
        seed: 0,
    }
}
