//! Acceptance tests of issue 12 with the real binary killed by SIGKILL: a replica process
//! killed 5 times at random moments, and a source process killed mid-publish. Each ends with
//! an exact comparison (every key, every value) against the source's final snapshot.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atomicmap_replicator::engine::redis::RedisEngine;
use atomicmap_replicator::engine::Layout;
use atomicmap_replicator::load::Load;
use atomicmap_replicator::resolve::LastWriterWins;
use atomicmap_replicator::sink::{LocalMap, MapSink};
use atomicmap_replicator::source::SourceMap;
use common::{assert_same, published_snapshot, Random, RunningReplica, RunningSource, PARTITIONS};

const BINARY: &str = env!("CARGO_BIN_EXE_atomicmap-replicate");

/// A child process of the test, killed when dropped: a failing test leaves no replica or
/// source running behind it.
struct Process(Child);

impl Process {
    /// Starts the binary with `args`, its log appended to `log`.
    fn spawn(args: &[&str], log: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(BINARY)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Process(child)
    }

    /// SIGKILL, and the process is gone.
    fn kill_9(&mut self) {
        self.0.kill().unwrap();
        let status = self.0.wait().unwrap();
        assert!(!status.success(), "killed, not exited");
    }

    /// SIGTERM (a graceful stop), and its exit status.
    fn terminate(mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        self.0.wait().unwrap()
    }

    /// Its exit status, once it exits by itself.
    fn wait(mut self) -> ExitStatus {
        self.0.wait().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Already reaped after kill_9, terminate or wait: these then fail harmlessly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address whose port was free a moment ago.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Waits until the Prometheus text served at `address` names every metric of `names` (a
/// metric appears with its first value); fails after 20 s.
fn wait_for_metrics(address: &str, names: &[&str]) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut reply = String::new();
        if let Ok(mut stream) = std::net::TcpStream::connect(address) {
            let request =
                format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_string(&mut reply);
            }
        }
        if names.iter().all(|name| reply.contains(name)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{address}/metrics lacks some of {names:?}:\n{reply}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until the replicas logging to `path` have started `count` times: each start ends with
/// the replica resuming from the sink's checkpoint or loading the published snapshots.
fn wait_for_starts(path: &Path, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = log_of(path);
        let starts = log.matches("resumed from the sink's checkpoint").count()
            + log.matches("loaded snapshots").count();
        if starts >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica started {starts} times, not {count}; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn hash_contents(url: &str, key: &str) -> HashMap<String, Vec<u8>> {
    let client = redis::Client::open(url).unwrap();
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

/// Acceptance 2: the replica binary (Redis hash sink, checkpoint in the same transaction) is
/// killed with SIGKILL at 5 random moments and restarted; it ends exactly equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_process_killed_5_times_resumes_from_its_checkpoint() {
    let redis = common::redis::start(false);
    let url = redis.url();
    let engine = RedisEngine::new(&url).unwrap();
    let layout = Layout::new("t2");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("replica.log");
    let map = Arc::new(SourceMap::with_node(1));
    let source = RunningSource::start(
        &engine,
        &layout,
        "main",
        map.clone(),
        dir.path(),
        // No trim during the test: every restart should find its checkpoint still readable.
        Duration::from_secs(30),
    )
    .await;
    let load = Load {
        keys: 20_000,
        rate: Some(10_000),
        ops: None,
        remove_percent: 10,
        counters: false,
        threads: 1,
        seed: 2,
    }
    .start(map.clone());
    let partitions = PARTITIONS.to_string();
    let metrics = free_address();
    let args = [
        "replica",
        "--redis",
        &url,
        "--prefix",
        "t2",
        "--name",
        "r",
        "--task",
        "main",
        "--partitions",
        &partitions,
        "--sink",
        "hash",
        "--log",
        "info",
        "--metrics",
        &metrics,
    ];
    let mut random = Random::from_clock();
    let mut child = Process::spawn(&args, &log);
    for spawned in 1..=5 {
        // The random delay counts from the replica's start, not its spawn: on a loaded
        // machine a start-up can outlast the delay, and a replica killed before it started
        // has nothing to resume from.
        let started = log.clone();
        tokio::task::spawn_blocking(move || wait_for_starts(&started, spawned))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300 + random.below(1200))).await;
        child.kill_9();
        child = Process::spawn(&args, &log);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
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
    let hash = layout.replica_hash("r");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut actual = hash_contents(&url, &hash).await;
    while actual != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        actual = hash_contents(&url, &hash).await;
    }
    // The replica's Prometheus endpoint (every counter is exported from the start).
    let names = [
        "replicator_applied_events_total",
        "replicator_lag_events",
        "replicator_lag_seconds",
    ];
    tokio::task::spawn_blocking(move || wait_for_metrics(&metrics, &names))
        .await
        .unwrap();
    let exit = tokio::task::spawn_blocking(move || child.terminate())
        .await
        .unwrap();
    let log = log_of(&log);
    assert!(exit.success(), "the replica failed; its log:\n{log}");
    assert_same("replica Redis hash", &actual, &expected);
    let resumed = log.matches("resumed from the sink's checkpoint").count();
    assert!(
        resumed >= 3,
        "only {resumed} of 5 restarts resumed from the checkpoint; log:\n{log}"
    );
}

/// Acceptance 3: the source binary is killed with SIGKILL mid-publish, twice, and restarted;
/// it recovers its map from Redis, and a replica that followed throughout ends exactly equal
/// to the final snapshot of the last run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_process_killed_mid_publish_recovers_with_nothing_lost() {
    let redis = common::redis::start(false);
    let url = redis.url();
    let engine = RedisEngine::new(&url).unwrap();
    let layout = Layout::new("t3");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("source.log");
    let spool = dir.path().join("spool");
    let spool = spool.to_str().unwrap();
    let local = Arc::new(LocalMap::new());
    let replica = RunningReplica::start(
        &engine,
        &layout,
        "r",
        &["main"],
        LastWriterWins,
        MapSink::new(local.clone()),
    );
    let partitions = PARTITIONS.to_string();
    let args = vec![
        "source",
        "--redis",
        &url,
        "--prefix",
        "t3",
        "--task",
        "main",
        "--node",
        "1",
        "--spool",
        spool,
        "--snapshot-interval",
        "0.5",
        "--keys",
        "20000",
        "--rate",
        "20000",
        "--partitions",
        &partitions,
        "--log",
        "info",
    ];
    let mut random = Random::from_clock();
    let stats = replica.stats.clone();
    for run in 1..=2 {
        let mut child = Process::spawn(&args, &log);
        // Killed mid-publish: once it has recovered and its own changes reach the replica (the
        // replica may still be applying the previous run's), at a random moment.
        let deadline = Instant::now() + Duration::from_secs(60);
        while log_of(&log)
            .matches("recovered the map from the engine")
            .count()
            < run
        {
            assert!(
                Instant::now() < deadline,
                "run {run} did not recover; log:\n{}",
                log_of(&log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = stats.applied.load(std::sync::atomic::Ordering::Relaxed);
        while stats.applied.load(std::sync::atomic::Ordering::Relaxed) == before {
            assert!(
                Instant::now() < deadline,
                "the source published nothing; log:\n{}",
                log_of(&log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(random.below(1500))).await;
        child.kill_9();
    }
    let mut last = args.clone();
    last.extend(["--ops", "20000"]);
    let child = Process::spawn(&last, &log);
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();
    assert!(
        exit.success(),
        "the last run failed; log:\n{}",
        log_of(&log)
    );
    assert_eq!(
        log_of(&log)
            .matches("recovered the map from the engine")
            .count(),
        3,
        "every run recovers first"
    );

    let expected = published_snapshot(&engine, &layout, "main").await;
    assert!(expected.len() > 10_000, "{} keys", expected.len());
    let replica = replica.stop().await;
    assert_same("replica", &replica.values(), &expected);
    assert_same("replica local map", &local.to_hash_map(), &expected);
}

/// The `demo` command, as the README shows it: it starts its own redis-server, a source under
/// load and two replicas, and exits 0 only if both replicas equal the source exactly.
#[test]
fn demo_ends_with_both_replicas_equal_to_the_source() {
    let output = Command::new(BINARY)
        .args([
            "demo",
            "--seconds",
            "2",
            "--rate",
            "5000",
            "--keys",
            "2000",
            "--log",
            "warn",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("EQUAL to the source").count(), 2, "{stdout}");
}
