//! Stage 1, the source: follows a map's change capture and publishes it to the streams.
//!
//! # Protocol
//!
//! **Sessions.** Each run of a source is a publisher session with an *epoch*: a tick of the
//! map's hybrid clock taken after the clock has observed every version and epoch found in
//! the engine, so a restarted source's epoch and versions are larger than anything it
//! published before. Within an epoch, each partition's entries are numbered 1, 2, 3...
//!
//! **Capture.** A dedicated thread blocks on the [`Subscription`] (a waiting one: when the
//! publisher falls behind, the map's writers wait rather than the replicator losing changes)
//! and forwards batches through a bounded channel to the publisher task.
//!
//! **Publishing.** The publisher splits a batch by key hash into partitions (a key always
//! lands in the same partition, so its changes stay in commit order), cuts each partition's
//! changes into entries of at most the flow's batch size, numbers them, and appends them all
//! in one pipelined round trip. When the engine does not answer, the same entries are sent
//! again; before resending, the publisher reads back the tail of each stream to find the
//! highest sequence of its epoch already stored, and drops what is there: publishing is
//! idempotent at the stream, not only at the replica. After `failures_to_spool` failures in a
//! row the entries go to the local [`Spool`], and so does everything after them until the
//! spool is drained, in order, with the same check.
//!
//! **Snapshot + anchor.** The anchor is taken *before* the snapshot: the cursors of the last
//! entries known to be in the streams (nothing in flight, nothing spooled), then the map's
//! snapshot. Every change in the streams up to the anchor was committed before the snapshot,
//! so it is in it; every change committed after the snapshot is published after the anchor;
//! a change in between is in both, and applying it twice changes nothing (per-key versions).
//! Writers are never stopped: the snapshot is the map's own, taken while they run. Keys
//! removed within `tombstone_ttl` go in as tombstones (the map itself forgets removed keys).
//! The chunks
//! are written first, then the anchor under `{prefix}/anchors/{task}` (the switch), then the
//! previous snapshot's chunks are deleted and the streams trimmed to the previous anchor, so
//! a replica that is less than one snapshot interval behind can still catch up from the log.
//!
//! **Shutdown.** The final snapshot is taken while the capture still runs; only then is the
//! capture stopped, and what it still held is published after that snapshot's anchor. So the
//! final snapshot plus the streams equal the map as the capture last saw it, for a replica
//! that loads it as for one that followed all along.
//!
//! **Recovery.** After a crash, [`recover`] first drains a spool the dead process left, then
//! rebuilds the map from the latest snapshot and the streams (as a replica would), so
//! everything that reached the engine survives (RPO = 0 for what was acknowledged by Redis,
//! or fsynced to the spool). The map's API stamps the restored entries with new versions
//! (same values), above everything seen; [`Source::with_recovery`] makes the session's
//! snapshots publish their original versions instead (while the key is not written again),
//! and carry the removals found as tombstones, so that under multi-writer LWW a replica
//! loading them resolves as one that followed the streams. The new session then publishes a
//! fresh snapshot and anchor; the restored entries are not published as changes, since every
//! replica already has their values.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atomicmap::capture::{RecvError, VersionedSnapshot};
use atomicmap::{CapturedMap, ChangeEvent, SubscribeOptions, Subscription, Version};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::codec::{
    decode_entry, encode_anchor, encode_chunk, encode_entry, Anchor, Change, Cursor, EntryHeader,
    SnapshotEntry,
};
use crate::engine::{Engine, EngineError, Layout, Position};
use crate::flow::{FlowControl, FlowLevel, FlowLevels};
use crate::metrics::SourceStats;
use crate::replica::{now_ms, retrying, Replica, ReplicaConfig, ReplicaError};
use crate::resolve::LastWriterWins;
use crate::sink::Discard;
use crate::spool::{Spool, SpoolError};

/// The map a source publishes: string keys, byte values.
pub type SourceMap = CapturedMap<String, Vec<u8>>;

/// How a source publishes.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// The task: names the streams, snapshots and anchor.
    pub task: String,
    /// Streams (partitions) the keys are spread over by hash.
    pub partitions: u16,
    /// Key names.
    pub layout: Layout,
    /// Changes the capture subscription buffers before the map's writers wait.
    pub capture_capacity: usize,
    /// Most changes the capture thread hands over at once.
    pub capture_batch: usize,
    /// Capture batches in flight between the capture thread and the publisher.
    pub channel_capacity: usize,
    /// How often a snapshot is published (besides at start and at shutdown).
    pub snapshot_interval: Option<Duration>,
    /// Entries per snapshot chunk.
    pub chunk_entries: usize,
    /// Approximate bound of each stream's length (`XADD MAXLEN ~`); must exceed what one
    /// snapshot interval publishes, or replicas keep reloading snapshots.
    pub max_stream_len: Option<u64>,
    /// The spool file.
    pub spool_path: PathBuf,
    /// The spool's bound.
    pub spool_max_bytes: u64,
    /// Flow control.
    pub flow: FlowLevels,
    /// How long snapshots carry a removed key as a tombstone. Past it, a replica that loads a
    /// snapshot can show the key again if another source wrote it before this one removed it
    /// (multi-writer LWW only); memory is one entry per key removed within the period.
    pub tombstone_ttl: Duration,
}

impl SourceConfig {
    /// Defaults for `task`, spooling to `spool_path`.
    pub fn new(
        task: impl Into<String>,
        partitions: u16,
        layout: Layout,
        spool_path: PathBuf,
    ) -> Self {
        SourceConfig {
            task: task.into(),
            partitions: partitions.max(1),
            layout,
            capture_capacity: 1 << 16,
            capture_batch: 4096,
            channel_capacity: 8,
            snapshot_interval: Some(Duration::from_secs(60)),
            chunk_entries: 10_000,
            max_stream_len: None,
            spool_path,
            spool_max_bytes: 1 << 30,
            flow: FlowLevels::default(),
            tombstone_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a source stopped.
#[derive(Debug)]
pub enum SourceError {
    /// The engine refused in a way a retry cannot fix.
    Engine(EngineError),
    /// The spool failed (disk error, damaged frame).
    Spool(SpoolError),
    /// Recovering the map failed.
    Recovery(ReplicaError),
    /// The capture subscription lost changes (only possible with a lagging subscription).
    CaptureLagged {
        /// How many.
        missed: u64,
    },
    /// A thread or task of the source could not start, or panicked.
    Task(String),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Engine(e) => write!(f, "{e}"),
            SourceError::Spool(e) => write!(f, "{e}"),
            SourceError::Recovery(e) => write!(f, "recovering the map: {e}"),
            SourceError::CaptureLagged { missed } => {
                write!(f, "the capture subscription lost {missed} changes")
            }
            SourceError::Task(e) => write!(f, "source task: {e}"),
        }
    }
}

impl std::error::Error for SourceError {}

impl From<EngineError> for SourceError {
    fn from(e: EngineError) -> Self {
        SourceError::Engine(e)
    }
}

impl From<SpoolError> for SourceError {
    fn from(e: SpoolError) -> Self {
        SourceError::Spool(e)
    }
}

/// The partition of `key`: a hash that is the same in every process and version (CRC-32),
/// unlike the maps' seeded hashers.
pub fn partition_of(key: &str, partitions: u16) -> u16 {
    (crc32fast::hash(key.as_bytes()) % u32::from(partitions.max(1))) as u16
}

fn change_of(event: ChangeEvent<String, Vec<u8>>) -> Change {
    match event {
        ChangeEvent::Insert {
            key,
            value,
            version,
        } => Change {
            inserted: true,
            ..Change::upsert(key, value, version)
        },
        ChangeEvent::Update {
            key,
            value,
            version,
        } => Change::upsert(key, value, version),
        ChangeEvent::Remove { key, version } => Change::remove(key, version),
    }
}

/// What [`recover`] found.
#[derive(Clone, Default)]
pub struct Recovery {
    /// Keys restored into the map.
    pub keys: usize,
    /// Spooled entries of a previous run sent to the engine.
    pub spool_entries_drained: usize,
    /// The largest version or epoch seen, which the map's clock has observed.
    pub max_seen: u64,
    /// Per restored key, the version the map gave it and the version it had: snapshots
    /// publish the original while the key keeps the restored one, so that a replica loading
    /// them resolves exactly as a replica that followed the streams.
    originals: HashMap<String, (Version, Version)>,
    /// Removals found (tombstones), carried into the new session's snapshots.
    tombstones: HashMap<String, Version>,
}

/// Rebuilds `map` (expected empty) from what a previous run of the task left in the engine
/// and in its spool.
///
/// The restored entries get new versions from the map's clock, which first observes every
/// version and epoch found, so that everything the new session publishes is newer.
pub async fn recover<E: Engine>(
    engine: &E,
    config: &SourceConfig,
    map: &SourceMap,
    stats: &SourceStats,
) -> Result<Recovery, SourceError> {
    let spool = Spool::open(&config.spool_path, config.spool_max_bytes)?;
    let spool = Arc::new(Mutex::new(spool));
    let drained = drain_leftovers(engine, config, &spool, stats).await?;
    let mut replica = Replica::new(
        ReplicaConfig::new(
            format!("{}-recovery", config.task),
            vec![config.task.clone()],
            config.partitions,
            config.layout.clone(),
        ),
        engine.fork(),
        LastWriterWins,
        Discard,
    );
    replica.start(false).await.map_err(SourceError::Recovery)?;
    replica.catch_up().await.map_err(SourceError::Recovery)?;
    let max_epoch = replica
        .checkpoint()
        .tasks
        .iter()
        .flat_map(|t| t.cursors.iter().map(|c| c.epoch))
        .max()
        .unwrap_or(0);
    let max_version = replica
        .records()
        .values()
        .map(|r| r.version.time())
        .max()
        .unwrap_or(0);
    let max_seen = max_epoch.max(max_version);
    map.clock().observe(Version::new(max_seen, u16::MAX));
    let mut originals = HashMap::new();
    let mut tombstones = HashMap::new();
    for (key, record) in replica.records() {
        match &record.value {
            Some(value) => {
                map.insert(key.clone(), value.clone());
                // Nothing else writes the map yet: this is the version the insert got.
                if let Some(restored) = map.get_versioned(key.as_str()) {
                    originals.insert(key.clone(), (restored.version, record.version));
                }
            }
            None => {
                tombstones.insert(key.clone(), record.version);
            }
        }
    }
    let keys = originals.len();
    tracing::info!(task = %config.task, keys, drained, "recovered the map from the engine");
    Ok(Recovery {
        keys,
        spool_entries_drained: drained,
        max_seen,
        originals,
        tombstones,
    })
}

impl fmt::Debug for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovery")
            .field("keys", &self.keys)
            .field("spool_entries_drained", &self.spool_entries_drained)
            .field("max_seen", &self.max_seen)
            .field("tombstones", &self.tombstones.len())
            .finish()
    }
}

/// Sends what a previous run left in the spool, dropping what the streams already have.
async fn drain_leftovers<E: Engine>(
    engine: &E,
    config: &SourceConfig,
    spool: &Arc<Mutex<Spool>>,
    stats: &SourceStats,
) -> Result<usize, SourceError> {
    let mut drained = 0;
    loop {
        let batch = spool_call(spool, |s| s.peek(SPOOL_DRAIN_BATCH)).await?;
        if batch.is_empty() {
            return Ok(drained);
        }
        let n = batch.len();
        let streams: Vec<String> = (0..config.partitions)
            .map(|p| config.layout.stream(&config.task, p))
            .collect();
        let fresh = retrying(
            "drain",
            |op| stats.retry(op),
            || without_stored(engine, &streams, &batch),
        )
        .await?;
        let items: Vec<(String, Vec<u8>)> = fresh
            .iter()
            .map(|&i| (streams[usize::from(batch[i].0)].clone(), batch[i].1.clone()))
            .collect();
        retrying(
            "drain",
            |op| stats.retry(op),
            || engine.append(&items, config.max_stream_len),
        )
        .await?;
        spool_call(spool, move |s| s.consume(n)).await?;
        drained += n;
    }
}

/// Entries per spool read while draining.
const SPOOL_DRAIN_BATCH: usize = 256;
/// Stream entries per page when reading a stream's tail back.
const READ_BACK_PAGE: usize = 64;

async fn spool_call<T: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    call: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SourceError> {
    let spool = spool.clone();
    // File I/O with fsync: off the async workers.
    let result = tokio::task::spawn_blocking(move || match spool.lock() {
        Ok(mut spool) => call(&mut spool),
        Err(poisoned) => call(&mut poisoned.into_inner()),
    })
    .await;
    match result {
        Ok(result) => Ok(result?),
        Err(join) => Err(SourceError::Task(join.to_string())),
    }
}

/// The highest sequence of `epoch` stored in `stream`: 0 when none, `u64::MAX` when a newer
/// epoch has published there (everything of `epoch` not yet stored is obsolete).
async fn stored_seq<E: Engine>(engine: &E, stream: &str, epoch: u64) -> Result<u64, EngineError> {
    let mut before = None;
    loop {
        let page = engine.read_back(stream, before, READ_BACK_PAGE).await?;
        for entry in &page {
            let Some(header) = entry
                .payload
                .as_deref()
                .and_then(|p| decode_entry(p).ok())
                .map(|e| e.header)
            else {
                continue;
            };
            if header.epoch == epoch {
                return Ok(header.seq);
            }
            if header.epoch > epoch {
                return Ok(u64::MAX);
            }
            return Ok(0);
        }
        match page.last() {
            Some(last) if page.len() == READ_BACK_PAGE => before = Some(last.position),
            _ => return Ok(0),
        }
    }
}

/// Indexes of the `(partition, entry)` pairs not yet in their streams.
async fn without_stored<E: Engine>(
    engine: &E,
    streams: &[String],
    batch: &[(u16, Vec<u8>)],
) -> Result<Vec<usize>, EngineError> {
    let mut stored: HashMap<(u16, u64), u64> = HashMap::new();
    let mut fresh = Vec::with_capacity(batch.len());
    for (i, (partition, blob)) in batch.iter().enumerate() {
        let Ok(entry) = decode_entry(blob) else {
            // Our own spool wrote it; a damaged frame was caught by the spool's CRC.
            continue;
        };
        let key = (*partition, entry.header.epoch);
        let seq = match stored.get(&key) {
            Some(&seq) => seq,
            None => {
                let stream = &streams[usize::from(*partition)];
                let seq = stored_seq(engine, stream, entry.header.epoch).await?;
                stored.insert(key, seq);
                seq
            }
        };
        if entry.header.seq > seq {
            fresh.push(i);
        }
    }
    Ok(fresh)
}

/// The capture thread: blocks on the subscription, forwards batches. Ends when the
/// publisher goes away, or after one last empty read once `stop` is set (so what was
/// committed before the stop is forwarded).
fn spawn_capture(
    subscription: Subscription<String, Vec<u8>>,
    tx: mpsc::Sender<Result<Vec<Change>, u64>>,
    stop: Arc<AtomicBool>,
    batch: usize,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("replicator-capture".into())
        .spawn(move || loop {
            let stopping = stop.load(Ordering::Acquire);
            let mut events = Vec::with_capacity(batch);
            let wait = if stopping {
                Duration::ZERO
            } else {
                Duration::from_millis(20)
            };
            match subscription.recv_batch(&mut events, batch, wait) {
                Ok(0) if stopping => return,
                Ok(0) => {}
                Ok(_) => {
                    let changes = events.into_iter().map(change_of).collect();
                    if tx.blocking_send(Ok(changes)).is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged { missed }) => {
                    let _ = tx.blocking_send(Err(missed));
                    return;
                }
                Err(RecvError::Closed) => return,
            }
        })
}

/// A snapshot being published in the background.
type SnapshotJob = JoinHandle<Result<Anchor, SourceError>>;

/// The publisher's state for one session.
struct Publisher<E: Engine> {
    engine: E,
    config: SourceConfig,
    map: Arc<SourceMap>,
    stats: Arc<SourceStats>,
    flow: FlowControl,
    spool: Arc<Mutex<Spool>>,
    /// Entries in the spool (cached to avoid a blocking call per batch).
    spooled: usize,
    /// When the next drain may be tried, and the wait after that one.
    next_drain: Instant,
    drain_backoff: Duration,
    streams: Vec<String>,
    epoch: u64,
    /// Per partition: last sequence number given, and changes published so far.
    seqs: Vec<u64>,
    totals: Vec<u64>,
    /// Per partition: position of the last entry known stored.
    positions: Vec<Position>,
    /// Changes of low-priority prefixes held back at flow level 2.
    held: VecDeque<Change>,
    job: Option<SnapshotJob>,
    last_anchor: Option<Anchor>,
    /// Shutting down: nothing is held back any more.
    stopping: bool,
    /// Keys removed, with the removal's version, kept for `tombstone_ttl`: snapshots carry
    /// them, so that a replica loading a snapshot cannot bring back, from another source's
    /// snapshot, a key this source removed later than the other wrote it.
    tombstones: HashMap<String, Version>,
    /// See [`Recovery`]: versions to publish for keys restored after a crash.
    originals: Arc<HashMap<String, (Version, Version)>>,
}

/// A source session, subscribed and ready to publish: [`start`](Source::start) it before
/// the map's writers start (changes committed between `start` and [`run`](Source::run) are
/// buffered by the subscription, not lost), then `run` it.
pub struct Source<E: Engine> {
    publisher: Publisher<E>,
    rx: mpsc::Receiver<Result<Vec<Change>, u64>>,
    stop: Arc<AtomicBool>,
    capture: std::thread::JoinHandle<()>,
    first: VersionedSnapshot<String, Vec<u8>>,
}

impl<E: Engine> Source<E> {
    /// Opens the spool and subscribes to `map`'s changes (taking the session's first
    /// snapshot with the subscription). Call [`recover`] first after a crash.
    pub async fn start(
        engine: E,
        config: SourceConfig,
        map: Arc<SourceMap>,
        stats: Arc<SourceStats>,
    ) -> Result<Self, SourceError> {
        let path = config.spool_path.clone();
        let max_bytes = config.spool_max_bytes;
        let spool = tokio::task::spawn_blocking(move || Spool::open(&path, max_bytes))
            .await
            .map_err(|e| SourceError::Task(e.to_string()))??;
        let spooled = spool.len();
        let streams: Vec<String> = (0..config.partitions)
            .map(|p| config.layout.stream(&config.task, p))
            .collect();
        let (first, subscription) =
            map.snapshot_and_subscribe(SubscribeOptions::waiting(config.capture_capacity));
        let epoch = map.clock().tick().time();
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let capture = spawn_capture(subscription, tx, stop.clone(), config.capture_batch.max(1))
            .map_err(|e| SourceError::Task(format!("cannot start the capture thread: {e}")))?;
        let partitions = usize::from(config.partitions);
        let publisher = Publisher {
            flow: FlowControl::new(config.flow.clone()),
            engine,
            map,
            stats,
            spool: Arc::new(Mutex::new(spool)),
            spooled,
            next_drain: Instant::now(),
            drain_backoff: Duration::from_millis(20),
            streams,
            epoch,
            seqs: vec![0; partitions],
            totals: vec![0; partitions],
            positions: vec![Position::ZERO; partitions],
            held: VecDeque::new(),
            job: None,
            last_anchor: None,
            stopping: false,
            tombstones: HashMap::new(),
            originals: Arc::new(HashMap::new()),
            config,
        };
        tracing::info!(task = %publisher.config.task, epoch, "source session starts");
        Ok(Source {
            publisher,
            rx,
            stop,
            capture,
            first,
        })
    }

    /// Carries what [`recover`] found into this session's snapshots: the restored keys'
    /// original versions and the removals.
    pub fn with_recovery(mut self, recovery: Recovery) -> Self {
        self.publisher.tombstones = recovery.tombstones;
        self.publisher.originals = Arc::new(recovery.originals);
        self
    }

    /// Publishes the map's changes until `shutdown` turns true (or its sender goes). Then it
    /// publishes what was committed before, a final snapshot, drains the spool if the engine
    /// answers, and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), SourceError> {
        let Source {
            mut publisher,
            mut rx,
            stop,
            capture,
            first,
        } = self;
        let result = publisher
            .publish_all(&mut rx, &mut shutdown, &stop, first)
            .await;
        stop.store(true, Ordering::Release);
        drop(rx);
        // The capture thread notices the closed channel or the stop within one read timeout.
        let _ = tokio::task::spawn_blocking(move || capture.join()).await;
        result
    }
}

impl<E: Engine> Drop for Publisher<E> {
    fn drop(&mut self) {
        // A snapshot job outliving its session could write its anchor over a newer
        // session's.
        if let Some(job) = self.job.take() {
            job.abort();
        }
    }
}

impl<E: Engine> Publisher<E> {
    async fn publish_all(
        &mut self,
        rx: &mut mpsc::Receiver<Result<Vec<Change>, u64>>,
        shutdown: &mut watch::Receiver<bool>,
        stop: &AtomicBool,
        first: VersionedSnapshot<String, Vec<u8>>,
    ) -> Result<(), SourceError> {
        // The first anchor: the streams' tails now, before any change of the subscription
        // (which starts right after `first`) is published.
        self.drain_spool().await?;
        if self.spooled == 0 {
            for p in 0..self.streams.len() {
                let stats = self.stats.clone();
                let tail = retrying(
                    "tail",
                    |op| stats.retry(op),
                    || self.engine.read_back(&self.streams[p], None, 1),
                )
                .await?;
                self.positions[p] = tail.first().map_or(Position::ZERO, |e| e.position);
            }
            self.start_snapshot(Some(first));
        }
        let mut ticker = tokio::time::interval(
            self.config
                .snapshot_interval
                .unwrap_or(Duration::from_secs(3600)),
        );
        ticker.tick().await;
        let mut drain_tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                batch = rx.recv() => match batch {
                    Some(Ok(changes)) => {
                        let mut changes = changes;
                        // Gather what else is ready, up to a few capture batches, so one
                        // round trip carries as much as the flow allows.
                        while changes.len() < 4 * self.config.capture_batch {
                            match rx.try_recv() {
                                Ok(Ok(more)) => changes.extend(more),
                                Ok(Err(missed)) => return Err(SourceError::CaptureLagged { missed }),
                                Err(_) => break,
                            }
                        }
                        self.publish(changes).await?;
                    }
                    Some(Err(missed)) => return Err(SourceError::CaptureLagged { missed }),
                    None => break,
                },
                _ = ticker.tick(), if self.config.snapshot_interval.is_some() => {
                    // A job still running (Redis down, or a huge map) is left alone rather
                    // than awaited: the publisher must keep spooling meanwhile.
                    if self.job.as_ref().is_none_or(JoinHandle::is_finished) {
                        self.collect_job().await?;
                        self.start_snapshot(None);
                    }
                }
                _ = drain_tick.tick() => {
                    if self.spooled > 0 {
                        self.drain_spool().await?;
                    }
                    if !self.held.is_empty() && self.flow.level() < FlowLevel::Paused {
                        self.publish(Vec::new()).await?;
                    }
                    if self.job.as_ref().is_some_and(JoinHandle::is_finished) {
                        self.collect_job().await?;
                    }
                }
            }
        }
        self.finish(rx, stop).await
    }

    /// After the shutdown: what is pending, a final snapshot, then every change the capture
    /// still holds (published after the final anchor, so snapshot + stream stay exact), then
    /// the spool.
    async fn finish(
        &mut self,
        rx: &mut mpsc::Receiver<Result<Vec<Change>, u64>>,
        stop: &AtomicBool,
    ) -> Result<(), SourceError> {
        self.stopping = true;
        let mut rest: Vec<Change> = self.held.drain(..).collect();
        while let Ok(batch) = rx.try_recv() {
            rest.extend(batch.map_err(|missed| SourceError::CaptureLagged { missed })?);
        }
        self.publish(rest).await?;
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        self.drain_spool_until(deadline).await?;
        if self.spooled == 0 {
            self.collect_job().await?;
            self.start_snapshot(None);
            // Once the job is done its snapshot has been taken: whatever the capture still
            // holds was committed before it or after, and goes after the anchor either way.
            match tokio::time::timeout(SHUTDOWN_DRAIN, self.collect_job()).await {
                Ok(result) => result?,
                Err(_) => {
                    if let Some(job) = self.job.take() {
                        job.abort();
                    }
                    tracing::warn!("final snapshot not published: the engine does not answer");
                }
            }
        }
        stop.store(true, Ordering::Release);
        let mut rest = Vec::new();
        while let Some(batch) = rx.recv().await {
            rest.extend(batch.map_err(|missed| SourceError::CaptureLagged { missed })?);
        }
        self.publish(rest).await?;
        self.drain_spool_until(deadline).await?;
        if self.spooled > 0 {
            if let Some(job) = self.job.take() {
                job.abort();
            }
            tracing::warn!(
                entries = self.spooled,
                "engine unreachable at shutdown; entries stay in the spool for the next run"
            );
        }
        Ok(())
    }

    async fn drain_spool_until(&mut self, deadline: Instant) -> Result<(), SourceError> {
        self.drain_spool().await?;
        while self.spooled > 0 && Instant::now() < deadline {
            tokio::time::sleep(self.drain_backoff).await;
            self.drain_spool().await?;
        }
        Ok(())
    }

    /// Publishes `changes` (and held-back ones whose pause is over).
    async fn publish(&mut self, changes: Vec<Change>) -> Result<(), SourceError> {
        let partitions = self.streams.len();
        let mut parts: Vec<Vec<Change>> = vec![Vec::new(); partitions];
        // Held changes are older than any change of the same key in `changes` (the same
        // key is always held while paused), so they go first.
        let release =
            self.flow.level() < FlowLevel::Paused || self.held.len() > self.flow.max_held();
        if release && !self.held.is_empty() {
            for change in self.held.drain(..) {
                parts[usize::from(partition_of(&change.key, self.config.partitions))].push(change);
            }
        }
        for change in changes {
            match &change.value {
                None => {
                    self.tombstones.insert(change.key.clone(), change.version);
                }
                Some(_) if !self.tombstones.is_empty() => {
                    self.tombstones.remove(&change.key);
                }
                Some(_) => {}
            }
            if !self.stopping && self.flow.holds_back(&change.key) {
                self.stats.held_back(1);
                self.held.push_back(change);
            } else {
                parts[usize::from(partition_of(&change.key, self.config.partitions))].push(change);
            }
        }
        let batch_size = self.flow.batch_size();
        let published_ms = now_ms();
        let mut entries = Vec::new();
        let mut count = 0;
        for (p, part) in parts.iter().enumerate() {
            for chunk in part.chunks(batch_size) {
                self.seqs[p] += 1;
                self.totals[p] += chunk.len() as u64;
                let header = EntryHeader {
                    partition: p as u16,
                    epoch: self.epoch,
                    seq: self.seqs[p],
                    events_total: self.totals[p],
                    published_ms,
                };
                entries.push((p as u16, encode_entry(&header, chunk)));
                count += chunk.len();
                metrics::histogram!(crate::metrics::BATCH_SIZE).record(chunk.len() as f64);
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        self.flow.admit(count).await;
        self.deliver(entries, count as u64).await
    }

    /// Appends entries, retrying with the stored-sequence check; spools them when the
    /// engine stays unreachable.
    async fn deliver(
        &mut self,
        entries: Vec<(u16, Vec<u8>)>,
        changes: u64,
    ) -> Result<(), SourceError> {
        if self.spooled > 0 {
            self.drain_spool().await?;
        }
        if self.spooled > 0 {
            return self.spool_entries(entries).await;
        }
        let mut pending: Vec<usize> = (0..entries.len()).collect();
        let mut backoff = Duration::from_millis(10);
        loop {
            let items: Vec<(String, Vec<u8>)> = pending
                .iter()
                .map(|&i| {
                    (
                        self.streams[usize::from(entries[i].0)].clone(),
                        entries[i].1.clone(),
                    )
                })
                .collect();
            let started = Instant::now();
            match self.engine.append(&items, self.config.max_stream_len).await {
                Ok(positions) => {
                    self.flow.observe_latency(started.elapsed());
                    for (&i, position) in pending.iter().zip(positions) {
                        let p = usize::from(entries[i].0);
                        self.positions[p] = self.positions[p].max(position);
                    }
                    if pending.len() < entries.len() {
                        // A partition whose entries all went in unseen kept its old position.
                        self.refresh_positions().await;
                    }
                    self.stats.published(changes, entries.len() as u64);
                    return Ok(());
                }
                Err(e) if e.is_transient() => {
                    self.flow.observe_failure();
                    self.stats.retry("append");
                    if self.flow.level() == FlowLevel::Spooling {
                        tracing::warn!(error = %e, "engine unreachable; spooling");
                        return self.spool_entries(entries).await;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    // Some of the batch may be stored: resend only the rest.
                    match without_stored(&self.engine, &self.streams, &entries).await {
                        Ok(fresh) => {
                            if fresh.is_empty() {
                                self.stats.published(changes, entries.len() as u64);
                                self.refresh_positions().await;
                                return Ok(());
                            }
                            pending = fresh;
                        }
                        Err(e) if e.is_transient() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// After a retry whose appends partly succeeded unseen: the positions of the stream
    /// tails, for the next anchor.
    async fn refresh_positions(&mut self) {
        for p in 0..self.streams.len() {
            if let Ok(tail) = self.engine.read_back(&self.streams[p], None, 1).await {
                if let Some(entry) = tail.first() {
                    self.positions[p] = self.positions[p].max(entry.position);
                }
            }
        }
    }

    /// Spools entries (counted as published when drained).
    async fn spool_entries(&mut self, entries: Vec<(u16, Vec<u8>)>) -> Result<(), SourceError> {
        let n = entries.len();
        let entries = Arc::new(entries);
        loop {
            let batch = entries.clone();
            match spool_call(&self.spool, move |s| {
                s.push(&batch)?;
                Ok((s.len(), s.bytes()))
            })
            .await
            {
                Ok((len, bytes)) => {
                    self.spooled = len;
                    self.stats.spooled(n as u64);
                    self.stats.spool_depth(len as u64, bytes);
                    return Ok(());
                }
                Err(SourceError::Spool(SpoolError::Full)) => {
                    // The spool is the last buffer: wait for the engine. Meanwhile the
                    // capture channel fills and the map's writers wait.
                    self.stats.retry("spool_full");
                    tokio::time::sleep(self.drain_backoff).await;
                    self.drain_spool().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends spooled entries in order, dropping those already stored. Stops at the first
    /// failure (the next try waits for a growing backoff).
    async fn drain_spool(&mut self) -> Result<(), SourceError> {
        while self.spooled > 0 {
            if Instant::now() < self.next_drain {
                return Ok(());
            }
            let batch = spool_call(&self.spool, |s| s.peek(SPOOL_DRAIN_BATCH)).await?;
            let n = batch.len();
            let fresh = match without_stored(&self.engine, &self.streams, &batch).await {
                Ok(fresh) => fresh,
                Err(e) if e.is_transient() => {
                    self.drain_failed(&e);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let items: Vec<(String, Vec<u8>)> = fresh
                .iter()
                .map(|&i| {
                    (
                        self.streams[usize::from(batch[i].0)].clone(),
                        batch[i].1.clone(),
                    )
                })
                .collect();
            let started = Instant::now();
            let positions = match self.engine.append(&items, self.config.max_stream_len).await {
                Ok(positions) => positions,
                Err(e) if e.is_transient() => {
                    self.drain_failed(&e);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            self.flow.observe_latency(started.elapsed());
            self.drain_backoff = Duration::from_millis(20);
            let mut changes = 0;
            for (&i, position) in fresh.iter().zip(positions) {
                let (partition, blob) = &batch[i];
                let Ok(entry) = decode_entry(blob) else {
                    continue;
                };
                changes += entry.changes.len() as u64;
                if entry.header.epoch == self.epoch {
                    let p = usize::from(*partition);
                    self.positions[p] = self.positions[p].max(position);
                }
            }
            self.stats.published(changes, fresh.len() as u64);
            let (len, bytes) = spool_call(&self.spool, move |s| {
                s.consume(n)?;
                Ok((s.len(), s.bytes()))
            })
            .await?;
            self.spooled = len;
            self.stats.spool_depth(len as u64, bytes);
            if len == 0 {
                tracing::info!("spool drained");
                // Entries that were stored unseen before spooling have positions we never
                // got back.
                self.refresh_positions().await;
            }
        }
        Ok(())
    }

    fn drain_failed(&mut self, error: &EngineError) {
        self.flow.observe_failure();
        self.stats.retry("drain");
        tracing::debug!(error = %error, backoff = ?self.drain_backoff, "spool drain failed");
        self.next_drain = Instant::now() + self.drain_backoff;
        self.drain_backoff = (self.drain_backoff * 2).min(Duration::from_secs(1));
    }

    /// Starts publishing a snapshot in the background, unless one is running or the spool
    /// holds entries (then the streams' positions are not all known). `first` is the
    /// session's initial snapshot, taken with the subscription.
    fn start_snapshot(&mut self, first: Option<VersionedSnapshot<String, Vec<u8>>>) {
        if self.job.is_some() || self.spooled > 0 {
            return;
        }
        // The anchor first (see the module docs), then the snapshot.
        let cursors: Vec<Cursor> = (0..self.streams.len())
            .map(|p| Cursor {
                position: self.positions[p],
                epoch: self.epoch,
                seq: self.seqs[p],
                events_total: self.totals[p],
            })
            .collect();
        let horizon = now_ms().saturating_sub(
            u64::try_from(self.config.tombstone_ttl.as_millis()).unwrap_or(u64::MAX),
        );
        self.tombstones
            .retain(|_, version| version.physical_ms() >= horizon);
        let contents = SnapshotContents {
            id: self.map.clock().tick().time(),
            tombstones: self
                .tombstones
                .iter()
                .map(|(key, version)| (key.clone(), *version))
                .collect(),
            originals: self.originals.clone(),
        };
        let map = self.map.clone();
        let engine = self.engine.fork();
        let config = self.config.clone();
        let previous = self.last_anchor.clone();
        let stats = self.stats.clone();
        self.job = Some(tokio::spawn(async move {
            let snapshot = match first {
                Some(snapshot) => snapshot,
                None => tokio::task::spawn_blocking(move || map.snapshot())
                    .await
                    .map_err(|e| SourceError::Task(e.to_string()))?,
            };
            publish_snapshot(
                &engine, &config, snapshot, contents, cursors, previous, &stats,
            )
            .await
        }));
    }

    /// Waits for the running snapshot job, if any.
    async fn collect_job(&mut self) -> Result<(), SourceError> {
        if let Some(job) = self.job.take() {
            match job.await {
                Ok(Ok(anchor)) => self.last_anchor = Some(anchor),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(SourceError::Task(e.to_string())),
            }
        }
        Ok(())
    }
}

/// Writes a snapshot's chunks, then its anchor; then deletes the previous snapshot and trims
/// the streams to the previous anchor.
async fn publish_snapshot<E: Engine>(
    engine: &E,
    config: &SourceConfig,
    snapshot: VersionedSnapshot<String, Vec<u8>>,
    contents: SnapshotContents,
    cursors: Vec<Cursor>,
    previous: Option<Anchor>,
    stats: &SourceStats,
) -> Result<Anchor, SourceError> {
    let started = Instant::now();
    let snapshot_id = contents.id;
    let max_version = snapshot.max_version();
    let chunk_entries = config.chunk_entries.max(1);
    let task = config.task.clone();
    let layout = config.layout.clone();
    // Encoding a million entries is CPU work: off the async workers.
    let (chunks, entries) = tokio::task::spawn_blocking(move || {
        let mut chunks: Vec<(String, Vec<u8>)> = Vec::new();
        let mut entries = Vec::with_capacity(chunk_entries);
        let mut total = 0u64;
        let mut push = |entry: SnapshotEntry, chunks: &mut Vec<(String, Vec<u8>)>| {
            entries.push(entry);
            total += 1;
            if entries.len() == chunk_entries {
                let index = chunks.len() as u32;
                chunks.push((
                    layout.chunk(&task, snapshot_id, index),
                    encode_chunk(snapshot_id, index, &entries),
                ));
                entries.clear();
            }
        };
        for (key, versioned) in snapshot.iter() {
            let version = match contents.originals.get(key) {
                // Restored after a crash and not written since.
                Some(&(restored, original)) if restored == versioned.version => original,
                _ => versioned.version,
            };
            let entry = SnapshotEntry {
                key: key.clone(),
                value: Some(versioned.value.clone()),
                version,
            };
            push(entry, &mut chunks);
        }
        for (key, version) in contents.tombstones {
            // A key written again since its removal is live in the snapshot, and newer.
            if snapshot.get(key.as_str()).is_none() {
                let entry = SnapshotEntry {
                    key,
                    value: None,
                    version,
                };
                push(entry, &mut chunks);
            }
        }
        if !entries.is_empty() || chunks.is_empty() {
            let index = chunks.len() as u32;
            chunks.push((
                layout.chunk(&task, snapshot_id, index),
                encode_chunk(snapshot_id, index, &entries),
            ));
        }
        (chunks, total)
    })
    .await
    .map_err(|e| SourceError::Task(e.to_string()))?;
    for group in chunks.chunks(CHUNKS_PER_WRITE) {
        retrying("snapshot", |op| stats.retry(op), || engine.put(group)).await?;
    }
    let anchor = Anchor {
        snapshot_id,
        chunks: chunks.len() as u32,
        entries,
        max_version,
        created_ms: now_ms(),
        cursors,
    };
    let item = [(config.layout.anchor(&config.task), encode_anchor(&anchor))];
    retrying("anchor", |op| stats.retry(op), || engine.put(&item)).await?;
    stats.snapshot();
    tracing::info!(
        task = %config.task,
        snapshot_id,
        entries,
        chunks = anchor.chunks,
        elapsed = ?started.elapsed(),
        "snapshot published"
    );
    if let Some(previous) = previous {
        // Best effort: a failure leaves garbage or a longer stream, never a wrong replica.
        let keys: Vec<String> = (0..previous.chunks)
            .map(|i| config.layout.chunk(&config.task, previous.snapshot_id, i))
            .collect();
        for group in keys.chunks(1000) {
            if let Err(e) = engine.delete(group).await {
                tracing::warn!(error = %e, "could not delete an old snapshot's chunks");
            }
        }
        for (p, cursor) in previous.cursors.iter().enumerate() {
            if cursor.position == Position::ZERO {
                continue;
            }
            let stream = config.layout.stream(&config.task, p as u16);
            if let Err(e) = engine.trim_before(&stream, cursor.position).await {
                tracing::warn!(error = %e, stream, "could not trim");
            }
        }
    }
    Ok(anchor)
}

/// How long a stopping source keeps trying to drain its spool.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);
/// What a snapshot job publishes besides the map's own snapshot.
struct SnapshotContents {
    /// The snapshot's id (a tick of the map's clock).
    id: u64,
    /// Recent removals, as tombstones.
    tombstones: Vec<(String, Version)>,
    /// Original versions of keys restored after a crash.
    originals: Arc<HashMap<String, (Version, Version)>>,
}

/// Snapshot chunks written per round trip.
const CHUNKS_PER_WRITE: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::redis::RedisEngine;
    use crate::local_redis::LocalRedis;

    fn entry(epoch: u64, seq: u64) -> Vec<u8> {
        let header = EntryHeader {
            partition: 0,
            epoch,
            seq,
            events_total: seq,
            published_ms: now_ms(),
        };
        let change = Change::upsert(format!("k{seq}"), vec![1], Version::new(epoch + seq, 1));
        encode_entry(&header, &[change])
    }

    /// The check behind idempotent retries: what of a batch is already in the stream.
    #[tokio::test]
    async fn stored_sequences_are_found_past_foreign_entries() {
        let redis = LocalRedis::start(false).unwrap_or_else(|e| panic!("{e}"));
        let engine = RedisEngine::new(&redis.url()).unwrap();
        let stream = "s/{t.p0}".to_string();
        let mut batch: Vec<(String, Vec<u8>)> = (1..=3)
            .map(|seq| (stream.clone(), entry(10, seq)))
            .collect();
        batch.push((stream.clone(), b"not ours".to_vec()));
        batch.push((stream.clone(), entry(10, 4)));
        // More foreign entries than one page of the backwards scan.
        batch.extend((0..READ_BACK_PAGE + 5).map(|_| (stream.clone(), b"noise".to_vec())));
        engine.append(&batch, None).await.unwrap();

        assert_eq!(stored_seq(&engine, &stream, 10).await.unwrap(), 4);
        assert_eq!(stored_seq(&engine, &stream, 9).await.unwrap(), u64::MAX);
        assert_eq!(stored_seq(&engine, &stream, 11).await.unwrap(), 0);
        assert_eq!(stored_seq(&engine, "s/{t.p1}", 10).await.unwrap(), 0);

        let retry: Vec<(u16, Vec<u8>)> = (3..=6).map(|seq| (0, entry(10, seq))).collect();
        let fresh = without_stored(&engine, &[stream], &retry).await.unwrap();
        assert_eq!(fresh, vec![2, 3], "only seq 5 and 6 are missing");
    }
}
