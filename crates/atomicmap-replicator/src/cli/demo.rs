//! `demo`: a private redis-server, a source under write load and two replicas, with live
//! lag and throughput, ending with an exact comparison of each replica with the source.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atomicmap_replicator::engine::redis::RedisEngine;
use atomicmap_replicator::engine::{Engine, Layout};
use atomicmap_replicator::load::Load;
use atomicmap_replicator::local_redis::LocalRedis;
use atomicmap_replicator::metrics::{ReplicaStats, SourceStats};
use atomicmap_replicator::replica::{read_snapshot, Replica, ReplicaConfig};
use atomicmap_replicator::resolve::LastWriterWins;
use atomicmap_replicator::sink::{LocalMap, MapSink};
use atomicmap_replicator::source::{Source, SourceConfig, SourceMap};
use clap::Args;
use tokio::sync::watch;

use super::BoxError;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Seconds of write load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 50_000)]
    keys: u64,
    /// Writes per second.
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Partitions.
    #[arg(long, default_value_t = 4)]
    partitions: u16,
    /// Seconds between snapshots (short, so the demo shows trimming too).
    #[arg(long, default_value_t = 3.0)]
    snapshot_interval: f64,
}

type ReplicaTask = tokio::task::JoinHandle<
    Result<
        Replica<RedisEngine, LastWriterWins, MapSink>,
        atomicmap_replicator::replica::ReplicaError,
    >,
>;

pub async fn run(args: DemoArgs) -> Result<(), BoxError> {
    let redis = LocalRedis::start(false)?;
    println!(
        "redis-server on port {} in {}",
        redis.port(),
        redis.dir().display()
    );
    let engine = RedisEngine::new(&redis.url())?;
    let layout = Layout::new("demo");
    let spool_dir = tempfile::tempdir()?;
    let mut config = SourceConfig::new(
        "demo",
        args.partitions,
        layout.clone(),
        spool_dir.path().join("spool"),
    );
    config.snapshot_interval = Some(Duration::from_secs_f64(args.snapshot_interval.max(0.1)));
    let map = Arc::new(SourceMap::with_node(1));
    let source_stats = Arc::new(SourceStats::default());
    let (source_stop, source_rx) = watch::channel(false);
    let publisher = {
        let source =
            Source::start(engine.fork(), config, map.clone(), source_stats.clone()).await?;
        tokio::spawn(source.run(source_rx))
    };

    let (replica_stop, replica_rx) = watch::channel(false);
    let mut replicas: Vec<(String, Arc<LocalMap>, Arc<ReplicaStats>, ReplicaTask)> = Vec::new();
    for name in ["replica-a", "replica-b"] {
        let local = Arc::new(LocalMap::new());
        let config = ReplicaConfig::new(name, vec!["demo".into()], args.partitions, layout.clone());
        let mut replica = Replica::new(
            config,
            engine.fork(),
            LastWriterWins,
            MapSink::new(local.clone()),
        );
        let stats = replica.stats();
        let rx = replica_rx.clone();
        let task = tokio::spawn(async move {
            replica.start(true).await?;
            replica.run(rx).await?;
            Ok(replica)
        });
        replicas.push((name.to_string(), local, stats, task));
    }

    let load = Load {
        keys: args.keys,
        rate: Some(args.rate),
        ops: None,
        remove_percent: 10,
        counters: false,
        threads: 1,
        seed: 2026,
    }
    .start(map.clone());
    println!(
        "{:>4} {:>10} {:>10} | {:>22} | {:>22}",
        "s", "writes/s", "publish/s", "replica-a applied/s lag", "replica-b applied/s lag"
    );
    let started = Instant::now();
    let mut last = (0u64, 0u64, vec![0u64; replicas.len()]);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tick.tick().await;
        let writes = load.done();
        let published = source_stats.published.load(Relaxed);
        let mut line = format!(
            "{:>4} {:>10} {:>10}",
            started.elapsed().as_secs(),
            writes - last.0,
            published - last.1
        );
        for (i, (_, _, stats, _)) in replicas.iter().enumerate() {
            let applied = stats.applied.load(Relaxed);
            line += &format!(
                " | {:>9} {:>6} ev {:>4} ms",
                applied - last.2[i],
                stats.lag_events.load(Relaxed),
                stats.lag_ms.load(Relaxed)
            );
            last.2[i] = applied;
        }
        println!("{line}");
        last.0 = writes;
        last.1 = published;
    }
    let writes = tokio::task::spawn_blocking(move || load.stop()).await?;
    let _ = source_stop.send(true);
    publisher.await??;
    let _ = replica_stop.send(true);

    let expected: HashMap<String, Vec<u8>> = map.snapshot().to_map();
    let stats = Arc::new(ReplicaStats::default());
    let published = read_snapshot(&engine, &layout, "demo", &stats)
        .await?
        .map(|(_, entries)| {
            entries
                .into_iter()
                .filter_map(|e| Some((e.key, e.value?)))
                .collect::<HashMap<_, _>>()
        })
        .unwrap_or_default();
    println!(
        "\n{writes} writes; source map: {} keys; its final snapshot in Redis: {} keys",
        expected.len(),
        published.len()
    );
    let mut all_equal = published == expected;
    for (name, local, stats, task) in replicas {
        let replica = task.await??;
        let equal = replica.values() == expected && local.to_hash_map() == expected;
        all_equal &= equal;
        println!(
            "{name}: {} keys, applied {}, snapshot loads {}: {}",
            local.len(),
            stats.applied.load(Relaxed),
            stats.reloads.load(Relaxed),
            if equal {
                "EQUAL to the source (every key, every value)"
            } else {
                "DIFFERENT"
            }
        );
    }
    if all_equal {
        Ok(())
    } else {
        Err("a replica differs from the source".into())
    }
}
