//! Shared set-up of the replication tests: running sources and replicas in this process,
//! and exact comparisons.
#![allow(dead_code)] // each test binary uses its own part

pub mod redis;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use atomicmap_replicator::engine::redis::RedisEngine;
use atomicmap_replicator::engine::{Engine, Layout};
use atomicmap_replicator::metrics::{ReplicaStats, SourceStats};
use atomicmap_replicator::replica::{read_snapshot, Replica, ReplicaConfig, ReplicaError};
use atomicmap_replicator::resolve::Resolver;
use atomicmap_replicator::sink::Sink;
use atomicmap_replicator::source::{Recovery, Source, SourceConfig, SourceError, SourceMap};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const PARTITIONS: u16 = 4;

/// A source publishing in this process.
pub struct RunningSource {
    pub map: Arc<SourceMap>,
    pub stats: Arc<SourceStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), SourceError>>,
}

/// The tests' source configuration: `PARTITIONS` streams, 5,000 entries per chunk.
pub fn source_config(
    layout: &Layout,
    task: &str,
    dir: &Path,
    snapshot_interval: Duration,
) -> SourceConfig {
    let mut config = SourceConfig::new(
        task,
        PARTITIONS,
        layout.clone(),
        dir.join(format!("{task}.spool")),
    );
    config.snapshot_interval = Some(snapshot_interval);
    config.chunk_entries = 5_000;
    config
}

impl RunningSource {
    /// Publishes `map` as `task`, spooling into `dir`.
    pub async fn start(
        engine: &RedisEngine,
        layout: &Layout,
        task: &str,
        map: Arc<SourceMap>,
        dir: &Path,
        snapshot_interval: Duration,
    ) -> Self {
        Self::start_with(
            engine,
            source_config(layout, task, dir, snapshot_interval),
            map,
        )
        .await
    }

    /// Publishes `map` with `config`.
    pub async fn start_with(
        engine: &RedisEngine,
        config: SourceConfig,
        map: Arc<SourceMap>,
    ) -> Self {
        Self::start_recovered(engine, config, map, None).await
    }

    /// Publishes `map` with `config`, after `recovery` rebuilt it.
    pub async fn start_recovered(
        engine: &RedisEngine,
        config: SourceConfig,
        map: Arc<SourceMap>,
        recovery: Option<Recovery>,
    ) -> Self {
        let stats = Arc::new(SourceStats::default());
        let (stop, rx) = watch::channel(false);
        let mut source = Source::start(engine.fork(), config, map.clone(), stats.clone())
            .await
            .expect("source start");
        if let Some(recovery) = recovery {
            source = source.with_recovery(recovery);
        }
        let task = tokio::spawn(source.run(rx));
        RunningSource {
            map,
            stats,
            stop,
            task,
        }
    }

    /// Ends the source at once, as a crash would: nothing more is published or spooled.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Publishes what is committed, then a final snapshot, and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task
            .await
            .expect("source task panicked")
            .expect("source failed");
    }
}

/// A replica following in this process.
pub struct RunningReplica<R: Resolver, S: Sink> {
    pub stats: Arc<ReplicaStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<Replica<RedisEngine, R, S>, ReplicaError>>,
}

impl<R: Resolver, S: Sink> RunningReplica<R, S> {
    pub fn start(
        engine: &RedisEngine,
        layout: &Layout,
        name: &str,
        tasks: &[&str],
        resolver: R,
        sink: S,
    ) -> Self {
        let config = ReplicaConfig::new(
            name,
            tasks.iter().map(|t| t.to_string()).collect(),
            PARTITIONS,
            layout.clone(),
        );
        let mut replica = Replica::new(config, engine.fork(), resolver, sink);
        let stats = replica.stats();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            replica.start(true).await?;
            replica.run(rx).await?;
            Ok(replica)
        });
        RunningReplica { stats, stop, task }
    }

    /// Applies everything in the streams, then stops and hands the replica back.
    pub async fn stop(self) -> Replica<RedisEngine, R, S> {
        let _ = self.stop.send(true);
        match self.task.await.expect("replica task panicked") {
            Ok(replica) => replica,
            Err(e) => panic!("replica failed: {e}"),
        }
    }
}

/// The latest snapshot a task published, as a map.
pub async fn published_snapshot(
    engine: &RedisEngine,
    layout: &Layout,
    task: &str,
) -> HashMap<String, Vec<u8>> {
    let stats = ReplicaStats::default();
    let (_, entries) = read_snapshot(engine, layout, task, &stats)
        .await
        .expect("reading the snapshot")
        .expect("the task published no snapshot");
    // Tombstones are part of a snapshot, not of the map it shows.
    entries
        .into_iter()
        .filter_map(|e| Some((e.key, e.value?)))
        .collect()
}

/// Asserts two maps are equal, key by key, value by value, naming the first differences.
pub fn assert_same(
    what: &str,
    actual: &HashMap<String, Vec<u8>>,
    expected: &HashMap<String, Vec<u8>>,
) {
    if actual == expected {
        return;
    }
    let mut differences = Vec::new();
    for (key, value) in expected {
        match actual.get(key) {
            None => differences.push(format!("{key}: missing")),
            Some(v) if v != value => differences.push(format!(
                "{key}: {:?} instead of {:?}",
                String::from_utf8_lossy(v),
                String::from_utf8_lossy(value)
            )),
            Some(_) => {}
        }
    }
    for key in actual.keys().filter(|k| !expected.contains_key(*k)) {
        differences.push(format!("{key}: should not be there"));
    }
    differences.sort();
    panic!(
        "{what}: {} keys instead of {}, {} differences, the first: {:#?}",
        actual.len(),
        expected.len(),
        differences.len(),
        &differences[..differences.len().min(10)]
    );
}

/// A small xorshift for random moments (seeded from the clock; the seed is printed).
pub struct Random(u64);

impl Random {
    pub fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        println!("random seed {seed}");
        Random(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
