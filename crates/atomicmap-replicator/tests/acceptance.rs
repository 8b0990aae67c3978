//! Acceptance tests of issue 12 that run sources and replicas in this process against a real
//! `redis-server`: bootstrap under writes, Redis restarted mid-stream, bad entries injected,
//! two sources on the same keys. Each ends with an exact comparison (every key, every value)
//! of every replica with the source's final state and its final published snapshot.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use atomicmap::Version;
use atomicmap_replicator::codec::{decode_entry, encode_entry, ENTRY_FIELD};
use atomicmap_replicator::engine::redis::RedisEngine;
use atomicmap_replicator::engine::Layout;
use atomicmap_replicator::load::Load;
use atomicmap_replicator::resolve::{GCounter, LastWriterWins};
use atomicmap_replicator::sink::{LocalMap, MapSink, RedisHashSink};
use atomicmap_replicator::source::SourceMap;
use common::{assert_same, published_snapshot, RunningReplica, RunningSource, PARTITIONS};

async fn hash_contents(url: &str, key: &str) -> HashMap<String, Vec<u8>> {
    let client = redis::Client::open(url).unwrap();
    // A 100k-field reply takes a while to parse in a debug build.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut connection)
        .await
        .unwrap()
}

async fn wait_for(load: atomicmap_replicator::load::LoadHandle) -> u64 {
    tokio::task::spawn_blocking(move || {
        while !load.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
        }
        load.stop()
    })
    .await
    .unwrap()
}

/// Acceptance 1: a replica bootstraps from snapshot + anchor while 2 writer threads mutate
/// 100k keys; one replica into a local map, one into a Redis hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_from_snapshot_and_anchor_while_two_writers_mutate_100k_keys() {
    let redis = common::redis::start(false);
    let engine = RedisEngine::new(&redis.url()).unwrap();
    let layout = Layout::new("t1");
    let dir = tempfile::tempdir().unwrap();
    let map = Arc::new(SourceMap::with_node(1));
    for i in 0..100_000 {
        map.insert(format!("k{i}"), b"initial".to_vec());
    }
    let source = RunningSource::start(
        &engine,
        &layout,
        "main",
        map.clone(),
        dir.path(),
        Duration::from_millis(300),
    )
    .await;
    let load = Load {
        keys: 100_000,
        rate: Some(50_000),
        ops: None,
        remove_percent: 10,
        counters: false,
        threads: 2,
        seed: 1,
    }
    .start(map.clone());
    // Snapshots are taken while the writers run; the replicas start from the latest, and the
    // writers go on until the replicas have followed them for a while.
    while source.stats.snapshots.load(Relaxed) < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let local = Arc::new(LocalMap::new());
    let replica = RunningReplica::start(
        &engine,
        &layout,
        "r1",
        &["main"],
        LastWriterWins,
        MapSink::new(local.clone()),
    );
    let hash_sink = RedisHashSink::new(&engine, &layout, "r2");
    let hash_key = hash_sink.values_key().to_string();
    let replica2 =
        RunningReplica::start(&engine, &layout, "r2", &["main"], LastWriterWins, hash_sink);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ops = tokio::task::spawn_blocking(move || load.stop())
        .await
        .unwrap();
    assert!(ops > 0);
    source.stop().await;

    let expected: HashMap<String, Vec<u8>> = map.snapshot().to_map();
    assert_same(
        "final published snapshot",
        &published_snapshot(&engine, &layout, "main").await,
        &expected,
    );
    let r1 = replica.stop().await;
    // One load, or more if the replica fell behind the trimmed tail on a slow machine.
    assert!(r1.stats().reloads.load(Relaxed) >= 1);
    assert!(
        r1.stats().applied.load(Relaxed) > 0,
        "the replica applied changes from the stream"
    );
    assert_same("replica records", &r1.values(), &expected);
    assert_same("replica local map", &local.to_hash_map(), &expected);
    replica2.stop().await;
    assert_same(
        "replica Redis hash",
        &hash_contents(&redis.url(), &hash_key).await,
        &expected,
    );
}

/// Acceptance 4: redis-server (AOF, fsync always) is killed and restarted mid-stream; the
/// source spools meanwhile and drains afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_stream_source_spools_and_nothing_is_lost() {
    let mut redis = common::redis::start(true);
    let engine = RedisEngine::new(&redis.url()).unwrap();
    let layout = Layout::new("t4");
    let dir = tempfile::tempdir().unwrap();
    let map = Arc::new(SourceMap::with_node(1));
    let source = RunningSource::start(
        &engine,
        &layout,
        "main",
        map.clone(),
        dir.path(),
        Duration::from_millis(500),
    )
    .await;
    let local = Arc::new(LocalMap::new());
    let replica = RunningReplica::start(
        &engine,
        &layout,
        "r1",
        &["main"],
        LastWriterWins,
        MapSink::new(local.clone()),
    );
    let load = Load {
        keys: 20_000,
        rate: Some(10_000),
        ops: None,
        remove_percent: 10,
        counters: false,
        threads: 1,
        seed: 4,
    }
    .start(map.clone());
    while source.stats.published.load(Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| redis.kill());
    let ops_at_kill = load.done();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        source.stats.spooled.load(Relaxed) > 0,
        "the source spooled during the outage"
    );
    assert!(source.stats.spool_depth.load(Relaxed) > 0);
    assert!(
        load.done() > ops_at_kill,
        "the writers went on during the outage"
    );
    tokio::task::block_in_place(|| redis.restart()).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::spawn_blocking(move || load.stop())
        .await
        .unwrap();
    let stats = source.stats.clone();
    source.stop().await;
    assert_eq!(stats.spool_depth.load(Relaxed), 0, "spool drained");

    let expected: HashMap<String, Vec<u8>> = map.snapshot().to_map();
    assert_same(
        "final published snapshot",
        &published_snapshot(&engine, &layout, "main").await,
        &expected,
    );
    let replica = replica.stop().await;
    assert_same("replica", &replica.values(), &expected);
    assert_same("replica local map", &local.to_hash_map(), &expected);
}

/// Acceptance 5: foreign, truncated, corrupted, duplicated, reordered, misplaced,
/// from-the-future and old-session entries injected into the streams while the source
/// publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_bad_entries_are_counted_and_skipped() {
    let redis = common::redis::start(false);
    let engine = RedisEngine::new(&redis.url()).unwrap();
    let layout = Layout::new("t5");
    let dir = tempfile::tempdir().unwrap();
    let map = Arc::new(SourceMap::with_node(1));
    let source = RunningSource::start(
        &engine,
        &layout,
        "main",
        map.clone(),
        dir.path(),
        Duration::from_millis(700),
    )
    .await;
    let replica = RunningReplica::start(
        &engine,
        &layout,
        "r1",
        &["main"],
        LastWriterWins,
        MapSink::new(Arc::new(LocalMap::new())),
    );
    let load = Load {
        keys: 5_000,
        rate: Some(10_000),
        ops: None,
        remove_percent: 10,
        counters: false,
        threads: 1,
        seed: 5,
    }
    .start(map.clone());

    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    // A fixed number of injections (12 of each kind) while the writers run, however slow
    // the machine.
    let mut injected = 0;
    let mut round = 0u64;
    while injected < 108 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        round += 1;
        let p = (round % u64::from(PARTITIONS)) as u16;
        let stream = layout.stream("main", p);
        let recent: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(8)
            .query_async(&mut connection)
            .await
            .unwrap();
        // Ours and intact (injected copies have other magics, or fail their CRC).
        let ours: Vec<Vec<u8>> = recent
            .ids
            .iter()
            .filter_map(|id| match id.map.get(ENTRY_FIELD) {
                Some(redis::Value::BulkString(b)) if decode_entry(b).is_ok() => Some(b.clone()),
                _ => None,
            })
            .collect();
        let (Some(newest), Some(older)) = (ours.first(), ours.last()) else {
            continue;
        };
        let (target, field, payload): (String, &str, Vec<u8>) = match injected % 9 {
            0 => (stream, "foo", b"bar".to_vec()),
            1 => (stream, ENTRY_FIELD, b"not ours at all".to_vec()),
            2 => (stream, ENTRY_FIELD, newest[..newest.len() / 2].to_vec()),
            3 => (stream, ENTRY_FIELD, newest.clone()),
            4 => (stream, ENTRY_FIELD, older.clone()),
            5 => (
                layout.stream("main", (p + 1) % PARTITIONS),
                ENTRY_FIELD,
                newest.clone(),
            ),
            6 => {
                let mut entry = decode_entry(newest).unwrap();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                let future_ms = now.as_millis() as u64 + 3_600_000;
                for change in &mut entry.changes {
                    change.version = Version::new(future_ms << 16, change.version.node());
                }
                (
                    stream,
                    ENTRY_FIELD,
                    encode_entry(&entry.header, &entry.changes),
                )
            }
            7 => {
                let mut flipped = newest.clone();
                let middle = flipped.len() / 2;
                flipped[middle] ^= 0x5a;
                (stream, ENTRY_FIELD, flipped)
            }
            _ => {
                // As from a publisher session before the current one.
                let mut entry = decode_entry(newest).unwrap();
                entry.header.epoch -= 1;
                entry.header.seq = 1;
                (
                    stream,
                    ENTRY_FIELD,
                    encode_entry(&entry.header, &entry.changes),
                )
            }
        };
        redis::cmd("XADD")
            .arg(&target)
            .arg("*")
            .arg(field)
            .arg(payload)
            .query_async::<redis::Value>(&mut connection)
            .await
            .unwrap();
        injected += 1;
    }
    tokio::task::spawn_blocking(move || load.stop())
        .await
        .unwrap();
    source.stop().await;

    let expected: HashMap<String, Vec<u8>> = map.snapshot().to_map();
    assert_same(
        "final published snapshot",
        &published_snapshot(&engine, &layout, "main").await,
        &expected,
    );
    let replica = replica.stop().await;
    let stats = replica.stats();
    for (what, count) in [
        ("foreign", stats.foreign.load(Relaxed)),
        ("corrupt", stats.corrupt.load(Relaxed)),
        ("duplicate", stats.duplicates.load(Relaxed)),
        ("from the future", stats.from_the_future.load(Relaxed)),
        ("wrong partition", stats.wrong_partition.load(Relaxed)),
        ("stale epoch", stats.stale_epochs.load(Relaxed)),
    ] {
        assert!(count > 0, "no {what} entry was counted");
    }
    assert_same("replica", &replica.values(), &expected);
}

/// Acceptance 6a: two sources increment the same G-Counters; every replica's totals equal the
/// exact number of increments, whichever order it follows the sources in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_gcounter_totals_are_exact() {
    let redis = common::redis::start(false);
    let engine = RedisEngine::new(&redis.url()).unwrap();
    let layout = Layout::new("t6g");
    let dir = tempfile::tempdir().unwrap();
    let east = Arc::new(SourceMap::with_node(1));
    let west = Arc::new(SourceMap::with_node(2));
    let interval = Duration::from_millis(400);
    let east_source =
        RunningSource::start(&engine, &layout, "east", east.clone(), dir.path(), interval).await;
    let west_source =
        RunningSource::start(&engine, &layout, "west", west.clone(), dir.path(), interval).await;
    let local = Arc::new(LocalMap::new());
    let a = RunningReplica::start(
        &engine,
        &layout,
        "a",
        &["east", "west"],
        GCounter,
        MapSink::new(local.clone()),
    );
    let hash_sink = RedisHashSink::new(&engine, &layout, "b");
    let hash_key = hash_sink.values_key().to_string();
    let b = RunningReplica::start(
        &engine,
        &layout,
        "b",
        &["west", "east"],
        GCounter,
        hash_sink,
    );
    let counting = |seed| Load {
        keys: 1_000,
        rate: Some(10_000),
        ops: Some(20_000),
        remove_percent: 0,
        counters: true,
        threads: 2,
        seed,
    };
    let east_load = counting(61).start(east.clone());
    let west_load = counting(62).start(west.clone());
    assert_eq!(
        wait_for(east_load).await + wait_for(west_load).await,
        40_000
    );
    east_source.stop().await;
    west_source.stop().await;

    let count = |map: &SourceMap, key: &str| {
        map.get(key)
            .map_or(0, |v| u64::from_le_bytes(v.as_slice().try_into().unwrap()))
    };
    let mut expected: HashMap<String, u64> = HashMap::new();
    for (key, _) in east.snapshot().iter().chain(west.snapshot().iter()) {
        expected.insert(key.clone(), count(&east, key) + count(&west, key));
    }
    assert_eq!(expected.values().sum::<u64>(), 40_000);
    let totals = |values: HashMap<String, Vec<u8>>| -> HashMap<String, u64> {
        values
            .into_iter()
            .map(|(k, v)| (k, GCounter::total(&v).expect("a G-Counter record")))
            .collect()
    };
    let a = a.stop().await;
    assert_eq!(totals(a.values()), expected, "replica a");
    assert_eq!(
        totals(local.to_hash_map()),
        expected,
        "replica a's local map"
    );
    b.stop().await;
    assert_eq!(
        totals(hash_contents(&redis.url(), &hash_key).await),
        expected,
        "replica b"
    );
}

/// Acceptance 6b: two sources write the same keys; last-writer-wins converges on every
/// replica to the value of the larger version, whichever order it follows the sources in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_lww_converges_on_every_replica() {
    let redis = common::redis::start(false);
    let engine = RedisEngine::new(&redis.url()).unwrap();
    let layout = Layout::new("t6l");
    let dir = tempfile::tempdir().unwrap();
    let east = Arc::new(SourceMap::with_node(1));
    let west = Arc::new(SourceMap::with_node(2));
    let interval = Duration::from_millis(400);
    let east_source =
        RunningSource::start(&engine, &layout, "east", east.clone(), dir.path(), interval).await;
    let west_source =
        RunningSource::start(&engine, &layout, "west", west.clone(), dir.path(), interval).await;
    let a = RunningReplica::start(
        &engine,
        &layout,
        "a",
        &["east", "west"],
        LastWriterWins,
        MapSink::new(Arc::new(LocalMap::new())),
    );
    let b = RunningReplica::start(
        &engine,
        &layout,
        "b",
        &["west", "east"],
        LastWriterWins,
        MapSink::new(Arc::new(LocalMap::new())),
    );
    let writing = |seed| Load {
        keys: 2_000,
        rate: Some(10_000),
        ops: Some(20_000),
        remove_percent: 0,
        counters: false,
        threads: 1,
        seed,
    };
    let east_load = writing(63).start(east.clone());
    let west_load = writing(64).start(west.clone());
    wait_for(east_load).await;
    wait_for(west_load).await;
    east_source.stop().await;
    west_source.stop().await;

    let mut expected: HashMap<String, (Version, Vec<u8>)> = HashMap::new();
    for snapshot in [east.snapshot(), west.snapshot()] {
        for (key, versioned) in snapshot.iter() {
            let newer = expected
                .get(key)
                .is_none_or(|(v, _)| versioned.version > *v);
            if newer {
                expected.insert(key.clone(), (versioned.version, versioned.value.clone()));
            }
        }
    }
    let expected: HashMap<String, Vec<u8>> =
        expected.into_iter().map(|(k, (_, v))| (k, v)).collect();
    let a = a.stop().await;
    let b = b.stop().await;
    assert!(
        a.stats().conflicts.load(Relaxed) > 0,
        "the sources did write the same keys"
    );
    assert_same("replica a", &a.values(), &expected);
    assert_same("replica b", &b.values(), &expected);
}

/// A replica that stopped, while the source went on snapshotting and trimming, finds its
/// checkpoint behind the trimmed streams when it restarts and loads the latest snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_replica_behind_the_trimmed_tail_reloads_a_snapshot() {
    let redis = common::redis::start(false);
    let engine = RedisEngine::new(&redis.url()).unwrap();
    let layout = Layout::new("trim");
    let dir = tempfile::tempdir().unwrap();
    let map = Arc::new(SourceMap::with_node(1));
    let source = RunningSource::start(
        &engine,
        &layout,
        "main",
        map.clone(),
        dir.path(),
        Duration::from_millis(200),
    )
    .await;
    let load = Load {
        keys: 5_000,
        rate: Some(10_000),
        ops: None,
        remove_percent: 10,
        counters: false,
        threads: 1,
        seed: 7,
    }
    .start(map.clone());
    let sink = RedisHashSink::new(&engine, &layout, "r");
    let hash_key = sink.values_key().to_string();
    let replica = RunningReplica::start(&engine, &layout, "r", &["main"], LastWriterWins, sink);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = replica.stop().await;
    let checkpoint = stopped.checkpoint();
    let snapshots = source.stats.snapshots.load(Relaxed);
    while source.stats.snapshots.load(Relaxed) < snapshots + 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lost = false;
    for (p, cursor) in checkpoint.tasks[0].cursors.iter().enumerate() {
        lost |= atomicmap_replicator::engine::Engine::lost_after(
            &engine,
            &layout.stream("main", p as u16),
            cursor.position,
        )
        .await
        .unwrap();
    }
    assert!(
        lost,
        "the streams were trimmed past the stopped replica's checkpoint"
    );

    let sink = RedisHashSink::new(&engine, &layout, "r");
    let replica = RunningReplica::start(&engine, &layout, "r", &["main"], LastWriterWins, sink);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::spawn_blocking(move || load.stop())
        .await
        .unwrap();
    source.stop().await;
    let replica = replica.stop().await;
    assert_eq!(
        replica.stats().reloads.load(Relaxed),
        1,
        "reloaded a snapshot"
    );
    let expected: HashMap<String, Vec<u8>> = map.snapshot().to_map();
    assert_same(
        "replica Redis hash",
        &hash_contents(&redis.url(), &hash_key).await,
        &expected,
    );
}

/// A sink that takes its time, so that its replica falls behind while following.
struct SlowSink(MapSink, Duration);

impl atomicmap_replicator::sink::Sink for SlowSink {
    const DURABLE: bool = false;

    async fn recover(
        &mut self,
    ) -> Result<atomicmap_replicator::sink::Recovered, atomicmap_replicator::engine::EngineError>
    {
        self.0.recover().await
    }

    async fn reset(&mut self) -> Result<(), atomicmap_replicator::engine::EngineError> {
        self.0.reset().await
    }

    async fn apply(
        &mut self,
        records: &[(String, atomicmap_replicator::resolve::Record)],
        checkpoint: Option<&atomicmap_replicator::codec::Checkpoint>,
    ) -> Result<(), atomicmap_replicator::engine::EngineError> {
        tokio::time::sleep(self.1).await;
        self.0.apply(records, checkpoint).await
    }
}

/// A replica that falls behind the trimmed tail while it follows (a slow sink, frequent
/// snapshots) loads the latest snapshot by itself and ends exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_replica_that_falls_behind_the_trimmed_tail_reloads_a_snapshot() {
    let redis = common::redis::start(false);
    let engine = RedisEngine::new(&redis.url()).unwrap();
    let layout = Layout::new("slow");
    let dir = tempfile::tempdir().unwrap();
    let map = Arc::new(SourceMap::with_node(1));
    let source = RunningSource::start(
        &engine,
        &layout,
        "main",
        map.clone(),
        dir.path(),
        Duration::from_millis(100),
    )
    .await;
    let local = Arc::new(LocalMap::new());
    let sink = SlowSink(MapSink::new(local.clone()), Duration::from_millis(400));
    let replica = RunningReplica::start(&engine, &layout, "r", &["main"], LastWriterWins, sink);
    let load = Load {
        keys: 5_000,
        rate: Some(10_000),
        ops: Some(25_000),
        remove_percent: 10,
        counters: false,
        threads: 1,
        seed: 8,
    }
    .start(map.clone());
    wait_for(load).await;
    source.stop().await;
    let replica = replica.stop().await;
    assert!(
        replica.stats().reloads.load(Relaxed) >= 2,
        "the replica reloaded a snapshot after its first load"
    );
    let expected: HashMap<String, Vec<u8>> = map.snapshot().to_map();
    assert_same("replica", &replica.values(), &expected);
    assert_same("replica local map", &local.to_hash_map(), &expected);
}

/// Snapshots are chunked: a map of a million entries is published and loaded exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_a_million_entries_loads_exactly() {
    let redis = common::redis::start(false);
    let engine = RedisEngine::new(&redis.url()).unwrap();
    let layout = Layout::new("big");
    let dir = tempfile::tempdir().unwrap();
    let map = Arc::new(SourceMap::with_node(1));
    for i in 0..1_000_000u32 {
        map.insert(format!("key-{i}"), i.to_le_bytes().to_vec());
    }
    let source = RunningSource::start(
        &engine,
        &layout,
        "main",
        map.clone(),
        dir.path(),
        Duration::from_secs(3600),
    )
    .await;
    while source.stats.snapshots.load(Relaxed) < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replica = RunningReplica::start(
        &engine,
        &layout,
        "r",
        &["main"],
        LastWriterWins,
        MapSink::new(Arc::new(LocalMap::new())),
    );
    for i in 0..1_000u32 {
        map.insert(format!("key-{i}"), b"changed".to_vec());
    }
    let replica = replica.stop().await;
    let expected: HashMap<String, Vec<u8>> = map.snapshot().to_map();
    assert_eq!(expected.len(), 1_000_000);
    assert_same("replica", &replica.values(), &expected);
    source.stop().await;
}

/// A source that dies while Redis is down loses nothing it had spooled: the next run drains
/// the spool its predecessor left before rebuilding the map from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_crash_while_spooling_loses_nothing_that_was_spooled() {
    let mut redis = common::redis::start(true);
    let engine = RedisEngine::new(&redis.url()).unwrap();
    let layout = Layout::new("crash");
    let dir = tempfile::tempdir().unwrap();
    let config = common::source_config(&layout, "main", dir.path(), Duration::from_secs(3600));
    let map = Arc::new(SourceMap::with_node(1));
    let source = RunningSource::start_with(&engine, config.clone(), map.clone()).await;
    let writes = |seed, ops| Load {
        keys: 3_000,
        rate: Some(20_000),
        ops: Some(ops),
        remove_percent: 10,
        counters: false,
        threads: 1,
        seed,
    };
    wait_for(writes(9, 5_000).start(map.clone())).await;
    while source.stats.published.load(Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::block_in_place(|| redis.kill());
    wait_for(writes(10, 5_000).start(map.clone())).await;
    // Everything the writers did is spooled once the spool stops growing.
    let mut spooled = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = source.stats.spooled.load(Relaxed);
        if now > 0 && now == spooled {
            break;
        }
        spooled = now;
    }
    source.crash().await;
    tokio::task::block_in_place(|| redis.restart()).unwrap();

    let recovered = Arc::new(SourceMap::with_node(1));
    let stats = atomicmap_replicator::metrics::SourceStats::default();
    let recovery = atomicmap_replicator::source::recover(&engine, &config, &recovered, &stats)
        .await
        .unwrap();
    assert!(recovery.spool_entries_drained > 0, "{recovery:?}");
    let expected: HashMap<String, Vec<u8>> = map.snapshot().to_map();
    assert_same("recovered map", &recovered.snapshot().to_map(), &expected);

    // The new session goes on; a replica ends equal to it.
    let source =
        RunningSource::start_recovered(&engine, config, recovered.clone(), Some(recovery)).await;
    let replica = RunningReplica::start(
        &engine,
        &layout,
        "r",
        &["main"],
        LastWriterWins,
        MapSink::new(Arc::new(LocalMap::new())),
    );
    wait_for(writes(11, 5_000).start(recovered.clone())).await;
    source.stop().await;
    let replica = replica.stop().await;
    assert_same("replica", &replica.values(), &recovered.snapshot().to_map());
}

/// At flow level 2 (here forced by thresholds of zero) changes of low-priority prefixes are
/// held back while the others flow; they are all published in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_priority_prefixes_are_held_back_at_level_2() {
    let redis = common::redis::start(false);
    let engine = RedisEngine::new(&redis.url()).unwrap();
    let layout = Layout::new("pause");
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::source_config(&layout, "main", dir.path(), Duration::from_secs(3600));
    config.flow = atomicmap_replicator::flow::FlowLevels {
        slow: Duration::ZERO,
        very_slow: Duration::ZERO,
        low_priority: vec!["temp:".into()],
        ..Default::default()
    };
    let map = Arc::new(SourceMap::with_node(1));
    let source = RunningSource::start_with(&engine, config, map.clone()).await;
    let local = Arc::new(LocalMap::new());
    let replica = RunningReplica::start(
        &engine,
        &layout,
        "r",
        &["main"],
        LastWriterWins,
        MapSink::new(local.clone()),
    );
    // The first append measures a latency above zero: level 2 from then on.
    map.insert("user:first".into(), b"1".to_vec());
    while local.get("user:first").is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..1_000 {
        map.insert(format!("temp:{i}"), b"t".to_vec());
        map.insert(format!("user:{i}"), b"u".to_vec());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (0..1_000).any(|i| local.get(&format!("user:{i}")).is_none()) {
        assert!(
            std::time::Instant::now() < deadline,
            "user keys did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        (0..1_000).all(|i| local.get(&format!("temp:{i}")).is_none()),
        "temp: keys were held back"
    );
    assert_eq!(source.stats.held_back.load(Relaxed), 1_000);
    source.stop().await;
    let replica = replica.stop().await;
    let expected: HashMap<String, Vec<u8>> = map.snapshot().to_map();
    assert_same("replica", &replica.values(), &expected);
    assert_same("replica local map", &local.to_hash_map(), &expected);
}

/// Per key, the newest change: its version and its value (`None`: removed).
type Newest = HashMap<String, (Version, Option<Vec<u8>>)>;

/// Every change a map makes, folded last-writer-wins with tombstones: what replicas of all
/// the maps given to it must converge to.
struct Truth {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    changes: Arc<std::sync::Mutex<Newest>>,
}

impl Truth {
    fn new() -> Self {
        Truth {
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            threads: Vec::new(),
            changes: Arc::default(),
        }
    }

    /// Follows `map` from now on.
    fn follow(&mut self, map: &SourceMap) {
        let subscription = map.subscribe(atomicmap::SubscribeOptions::waiting(1 << 16));
        let (stop, changes) = (self.stop.clone(), self.changes.clone());
        self.threads.push(std::thread::spawn(move || {
            let mut events = Vec::new();
            loop {
                let stopping = stop.load(Relaxed);
                events.clear();
                let n = subscription
                    .recv_batch(&mut events, 4096, Duration::from_millis(10))
                    .unwrap();
                if n == 0 && stopping {
                    return;
                }
                let mut changes = changes.lock().unwrap();
                for event in events.drain(..) {
                    let (key, version, value) = match event {
                        atomicmap::ChangeEvent::Insert {
                            key,
                            value,
                            version,
                        }
                        | atomicmap::ChangeEvent::Update {
                            key,
                            value,
                            version,
                        } => (key, version, Some(value)),
                        atomicmap::ChangeEvent::Remove { key, version } => (key, version, None),
                    };
                    let newer = changes.get(&key).is_none_or(|(v, _)| version > *v);
                    if newer {
                        changes.insert(key, (version, value));
                    }
                }
            }
        }));
    }

    /// The live keys and values, once the writers are done.
    fn finish(self) -> HashMap<String, Vec<u8>> {
        self.stop.store(true, Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let changes = std::mem::take(&mut *self.changes.lock().unwrap());
        changes
            .into_iter()
            .filter_map(|(key, (_, value))| Some((key, value?)))
            .collect()
    }
}

/// Acceptance 6b with removals and a restart: two sources write and remove the same keys,
/// one of them restarts (rebuilding its map from Redis); a replica that followed from the start
/// and one that starts from the final snapshots both converge to last-writer-wins over every
/// change made (snapshots carry tombstones and the original versions of restored keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_lww_with_removals_and_a_restart_converge_on_every_replica() {
    let redis = common::redis::start(false);
    let engine = RedisEngine::new(&redis.url()).unwrap();
    let layout = Layout::new("t6r");
    let dir = tempfile::tempdir().unwrap();
    let interval = Duration::from_millis(300);
    let mut truth = Truth::new();
    let east = Arc::new(SourceMap::with_node(1));
    let west = Arc::new(SourceMap::with_node(2));
    truth.follow(&east);
    truth.follow(&west);
    let east_source =
        RunningSource::start(&engine, &layout, "east", east.clone(), dir.path(), interval).await;
    let west_config = common::source_config(&layout, "west", dir.path(), interval);
    let west_source = RunningSource::start_with(&engine, west_config.clone(), west.clone()).await;
    let following = RunningReplica::start(
        &engine,
        &layout,
        "following",
        &["east", "west"],
        LastWriterWins,
        MapSink::new(Arc::new(LocalMap::new())),
    );
    let writing = |seed, ops| Load {
        keys: 1_000,
        rate: Some(10_000),
        ops: Some(ops),
        remove_percent: 30,
        counters: false,
        threads: 1,
        seed,
    };
    // Both write the same keys (at once, then east alone: many keys end with east's write).
    let east_load = writing(65, 5_000).start(east.clone());
    wait_for(writing(66, 10_000).start(west.clone())).await;
    wait_for(east_load).await;
    wait_for(writing(68, 10_000).start(east.clone())).await;

    // West restarts: its map comes back from Redis, with new versions for the same values.
    west_source.stop().await;
    let west = Arc::new(SourceMap::with_node(2));
    let stats = atomicmap_replicator::metrics::SourceStats::default();
    let recovery = atomicmap_replicator::source::recover(&engine, &west_config, &west, &stats)
        .await
        .unwrap();
    truth.follow(&west);
    let west_source =
        RunningSource::start_recovered(&engine, west_config, west.clone(), Some(recovery)).await;
    wait_for(writing(67, 500).start(west.clone())).await;
    east_source.stop().await;
    west_source.stop().await;

    // A replica that starts now has only the two final snapshots: the removals and the
    // restored keys' original versions must be in them.
    let loading = RunningReplica::start(
        &engine,
        &layout,
        "loading",
        &["west", "east"],
        LastWriterWins,
        MapSink::new(Arc::new(LocalMap::new())),
    );
    let expected = truth.finish();
    let following = following.stop().await;
    let loading = loading.stop().await;
    assert!(
        following.stats().conflicts.load(Relaxed) > 0,
        "the sources wrote the same keys"
    );
    assert_same("replica that followed", &following.values(), &expected);
    assert_same(
        "replica that loaded snapshots",
        &loading.values(),
        &expected,
    );
}
