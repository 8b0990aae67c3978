//! The replica: snapshot + anchor, then the streams, applied idempotently.
//!
//! # Protocol
//!
//! A replica follows one or more tasks (one per source). For each task and partition it keeps
//! a [`Cursor`]: the engine position of the last entry it took into account and the
//! publisher's `(epoch, seq)` at that entry.
//!
//! **Start.** A durable sink that has a checkpoint gives back the records and the cursors it
//! committed together, so the replica resumes exactly where its data stands. Otherwise the
//! replica loads each task's latest snapshot: it reads the anchor, then the chunks; a chunk
//! missing or of another snapshot means the source replaced the snapshot meanwhile, and the
//! load starts over with the new anchor. The anchor's cursors are where it starts reading.
//!
//! **Following.** A reader task (its own engine connection) reads ahead from the cursors into
//! a bounded channel; the applying side checks every entry against the cursor of its stream:
//!
//! | entry | verdict |
//! |---|---|
//! | no payload of ours, or a foreign magic | skipped, counted `foreign` |
//! | our magic of another format version | **stop**: skipping would lose changes |
//! | truncated, bad CRC, malformed | skipped, counted `corrupt` (a real entry lost this way shows up as a gap) |
//! | partition field is not this stream's | skipped, counted `wrong_partition` |
//! | timestamp or a version more than `max_clock_skew` ahead of our clock | skipped, counted `from_the_future` (it would win every later LWW) |
//! | older epoch than the cursor's | skipped, counted `stale_epoch` (a crashed publisher's leftovers) |
//! | same epoch, seq <= cursor's | skipped, counted `duplicate` |
//! | same epoch, seq = cursor's + 1; or newer epoch, seq = 1 | applied |
//! | anything else | a **gap**: if the stream was trimmed past our cursor we fell behind and load a snapshot again; otherwise **stop** |
//!
//! Applied changes go through the transform and the resolver against the key's record, so a
//! change that reaches a replica twice (through a snapshot and the stream, or as a duplicate
//! entry) cannot change it twice. The records and cursors of a batch go to the sink together.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::codec::{
    decode_anchor, decode_chunk, decode_entry, Anchor, Change, Checkpoint, Cursor, DecodeError,
    Entry, SnapshotEntry, TaskCheckpoint,
};
use crate::engine::{Engine, EngineError, Layout, Position, StreamEntry};
use crate::metrics::{ReplicaStats, SkipReason};
use crate::resolve::{Outcome, Record, Resolver};
use crate::sink::Sink;
use crate::transform::{identity, Transform};

/// How a replica reads and checks.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// The replica's name: its checkpoint and Redis hash are named after it.
    pub name: String,
    /// The tasks (sources) it follows.
    pub tasks: Vec<String>,
    /// Partitions per task; must match the sources'.
    pub partitions: u16,
    /// Key names.
    pub layout: Layout,
    /// Entries per stream per read. An entry holds up to a few hundred changes, so this
    /// bounds a read's reply (and, with `read_ahead`, the replica's buffered memory).
    pub read_count: usize,
    /// How long a read waits for new entries.
    pub block: Duration,
    /// Read results the reader may hold ahead of the applier.
    pub read_ahead: usize,
    /// How far ahead of our clock a timestamp may be before its entry is rejected.
    pub max_clock_skew: Duration,
    /// How often lag is measured and, for a sink that is not durable, the checkpoint stored.
    pub lag_interval: Duration,
    /// Snapshot entries per sink call while loading.
    pub load_batch: usize,
}

impl ReplicaConfig {
    /// Defaults for replica `name` of `tasks`.
    pub fn new(
        name: impl Into<String>,
        tasks: Vec<String>,
        partitions: u16,
        layout: Layout,
    ) -> Self {
        ReplicaConfig {
            name: name.into(),
            tasks,
            partitions,
            layout,
            read_count: 64,
            block: Duration::from_millis(100),
            read_ahead: 4,
            max_clock_skew: Duration::from_secs(60),
            lag_interval: Duration::from_secs(1),
            load_batch: 10_000,
        }
    }
}

/// Why a replica stopped.
#[derive(Debug)]
pub enum ReplicaError {
    /// The engine or the sink refused in a way a retry cannot fix.
    Engine(EngineError),
    /// Changes are missing from a stream that was not trimmed: continuing would leave the
    /// replica silently wrong.
    Gap {
        /// The task.
        task: String,
        /// The partition.
        partition: u16,
        /// The last `(epoch, seq)` applied.
        after: (u64, u64),
        /// The `(epoch, seq)` found next.
        found: (u64, u64),
        /// Where.
        position: Position,
    },
    /// An entry of another format version of the replicator.
    UnsupportedFormat {
        /// The task.
        task: String,
        /// The partition.
        partition: u16,
        /// Where.
        position: Position,
        /// What the decoder said.
        error: DecodeError,
    },
    /// An anchor that cannot be used (undecodable, or another partition count).
    BadAnchor {
        /// The task.
        task: String,
        /// What is wrong.
        reason: String,
    },
    /// The sink's checkpoint is for other tasks or partitions than configured.
    CheckpointMismatch(String),
}

impl fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaError::Engine(e) => write!(f, "{e}"),
            ReplicaError::Gap {
                task,
                partition,
                after,
                found,
                position,
            } => write!(
                f,
                "task {task} partition {partition}: after (epoch {}, seq {}) found (epoch {}, \
                 seq {}) at {position}; changes are missing from a stream that was not trimmed",
                after.0, after.1, found.0, found.1
            ),
            ReplicaError::UnsupportedFormat {
                task,
                partition,
                position,
                error,
            } => write!(
                f,
                "task {task} partition {partition} at {position}: {error}"
            ),
            ReplicaError::BadAnchor { task, reason } => {
                write!(f, "anchor of task {task}: {reason}")
            }
            ReplicaError::CheckpointMismatch(reason) => write!(f, "checkpoint: {reason}"),
        }
    }
}

impl std::error::Error for ReplicaError {}

impl From<EngineError> for ReplicaError {
    fn from(e: EngineError) -> Self {
        ReplicaError::Engine(e)
    }
}

/// First and longest wait between retries of a transient failure.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Snapshot chunks fetched per round trip.
const CHUNKS_PER_READ: usize = 8;

/// Runs `op` until it succeeds or fails for good, sleeping with exponential backoff between
/// transient failures and counting each retry.
pub(crate) async fn retrying<T, F, Fut>(
    op: &'static str,
    on_retry: impl Fn(&'static str),
    mut call: F,
) -> Result<T, EngineError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, EngineError>>,
{
    let mut backoff = BACKOFF_MIN;
    loop {
        match call().await {
            Err(e) if e.is_transient() => {
                on_retry(op);
                tracing::debug!(op, error = %e, ?backoff, "retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            other => return other,
        }
    }
}

/// [`retrying`] for a call that borrows the replica mutably (the sink), which a closure
/// returning its future cannot.
macro_rules! retrying_mut {
    ($stats:expr, $op:literal, $call:expr) => {{
        let mut backoff = BACKOFF_MIN;
        loop {
            match $call.await {
                Err(e) if e.is_transient() => {
                    $stats.retry($op);
                    tracing::debug!(op = $op, error = %e, ?backoff, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                other => break other,
            }
        }
    }};
}

pub(crate) fn now_ms() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
}

/// What checking an entry against its cursor decided.
enum Admission {
    Apply(Entry),
    Skip(SkipReason),
    /// An entry of an older publisher session than the cursor's.
    Stale {
        epoch: u64,
    },
    Gap {
        found: (u64, u64),
    },
}

/// What the applier does after a batch.
enum Next {
    Continue,
    Reload,
}

/// A read result from the reader task: per stream index, the entries read.
type ReadBatch = Vec<(usize, Vec<StreamEntry>)>;

/// One replica of one or more tasks. See the [module docs](self) for the protocol.
pub struct Replica<E: Engine, R: Resolver, S: Sink> {
    config: ReplicaConfig,
    engine: E,
    resolver: R,
    transform: Transform,
    sink: S,
    /// Every key's record, tombstones included: what the resolver resolves against.
    records: HashMap<String, Record>,
    /// Per task: the snapshot the state descends from, and a cursor per partition.
    tasks: Vec<TaskCheckpoint>,
    /// Stream keys, task-major: index `t * partitions + p`.
    streams: Vec<String>,
    stats: Arc<ReplicaStats>,
    /// Snapshot loads since the last applied entry: a replica that keeps falling behind
    /// right after loading is told about it, loudly.
    reloads_without_progress: u32,
    /// Streams and stale epochs already warned about.
    warned_stale: HashSet<(usize, u64)>,
    /// Lag per applied change (milliseconds from commit at the source to apply here), when
    /// the caller wants the distribution.
    lag_histogram: Option<Arc<std::sync::Mutex<Histogram<u64>>>>,
}

impl<E: Engine, R: Resolver, S: Sink> Replica<E, R, S> {
    /// A replica that applies every change as it comes (no transform).
    pub fn new(config: ReplicaConfig, engine: E, resolver: R, sink: S) -> Self {
        let streams = config
            .tasks
            .iter()
            .flat_map(|task| (0..config.partitions).map(|p| config.layout.stream(task, p)))
            .collect();
        let tasks = config
            .tasks
            .iter()
            .map(|task| TaskCheckpoint {
                task: task.clone(),
                snapshot_id: 0,
                cursors: vec![Cursor::default(); usize::from(config.partitions)],
            })
            .collect();
        Replica {
            config,
            engine,
            resolver,
            transform: identity(),
            sink,
            records: HashMap::new(),
            tasks,
            streams,
            stats: Arc::new(ReplicaStats::default()),
            reloads_without_progress: 0,
            warned_stale: HashSet::new(),
            lag_histogram: None,
        }
    }

    /// Replaces the transform (stage 2).
    pub fn with_transform(mut self, transform: Transform) -> Self {
        self.transform = transform;
        self
    }

    /// Records every applied change's lag (milliseconds) into `histogram`.
    pub fn with_lag_histogram(mut self, histogram: Arc<std::sync::Mutex<Histogram<u64>>>) -> Self {
        self.lag_histogram = Some(histogram);
        self
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ReplicaStats> {
        self.stats.clone()
    }

    /// Every key's record, tombstones included.
    pub fn records(&self) -> &HashMap<String, Record> {
        &self.records
    }

    /// The live keys and values (tombstones left out).
    pub fn values(&self) -> HashMap<String, Vec<u8>> {
        self.records
            .iter()
            .filter_map(|(k, r)| r.value.as_ref().map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// Where the replica stands.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            tasks: self.tasks.clone(),
        }
    }

    /// Resumes from the sink's checkpoint, or loads the snapshots; waits for an anchor of
    /// every task when `wait_for_anchors`, otherwise starts a task without one from the
    /// beginning of its streams.
    pub async fn start(&mut self, wait_for_anchors: bool) -> Result<(), ReplicaError> {
        let stats = self.stats.clone();
        let recovered = retrying_mut!(stats, "recover", self.sink.recover())?;
        if let Some((checkpoint, records)) = recovered {
            self.check_checkpoint(&checkpoint)?;
            self.tasks = checkpoint.tasks;
            self.records = records.into_iter().collect();
            tracing::info!(
                replica = %self.config.name,
                keys = self.records.len(),
                "resumed from the sink's checkpoint"
            );
            if !self.fell_behind_any().await? {
                return Ok(());
            }
            tracing::warn!(replica = %self.config.name, "checkpoint is behind the trimmed tail");
        }
        self.load_snapshots(wait_for_anchors).await
    }

    fn check_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), ReplicaError> {
        let names: Vec<&str> = checkpoint.tasks.iter().map(|t| t.task.as_str()).collect();
        let expected: Vec<&str> = self.config.tasks.iter().map(String::as_str).collect();
        if names != expected {
            return Err(ReplicaError::CheckpointMismatch(format!(
                "it is for tasks {names:?}, this replica follows {expected:?}"
            )));
        }
        for task in &checkpoint.tasks {
            if task.cursors.len() != usize::from(self.config.partitions) {
                return Err(ReplicaError::CheckpointMismatch(format!(
                    "task {} has {} partitions, configured {}",
                    task.task,
                    task.cursors.len(),
                    self.config.partitions
                )));
            }
        }
        Ok(())
    }

    /// Whether some stream was trimmed past this replica's cursor.
    async fn fell_behind_any(&self) -> Result<bool, ReplicaError> {
        for index in 0..self.streams.len() {
            if self.fell_behind(index).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether entries after the cursor of stream `index` were trimmed away.
    async fn fell_behind(&self, index: usize) -> Result<bool, ReplicaError> {
        let cursor = self.cursor(index);
        let stats = &self.stats;
        // A trim at an anchor keeps the anchor's own entry (MINID), so a replica standing
        // exactly at an anchor has lost nothing.
        Ok(retrying(
            "lost_after",
            |op| stats.retry(op),
            || {
                self.engine
                    .lost_after(&self.streams[index], cursor.position)
            },
        )
        .await?)
    }

    fn cursor(&self, index: usize) -> Cursor {
        let p = usize::from(self.config.partitions);
        self.tasks[index / p].cursors[index % p]
    }

    fn cursor_mut(&mut self, index: usize) -> &mut Cursor {
        let p = usize::from(self.config.partitions);
        &mut self.tasks[index / p].cursors[index % p]
    }

    /// Loads every task's latest snapshot into fresh records and the sink.
    async fn load_snapshots(&mut self, wait_for_anchors: bool) -> Result<(), ReplicaError> {
        let stats = self.stats.clone();
        let mut records: HashMap<String, Record> = HashMap::new();
        let mut tasks = Vec::with_capacity(self.config.tasks.len());
        for task in &self.config.tasks {
            let mut backoff = BACKOFF_MIN;
            let snapshot = loop {
                match read_snapshot(&self.engine, &self.config.layout, task, &stats).await? {
                    Some(snapshot) => break Some(snapshot),
                    None if !wait_for_anchors => break None,
                    None => {
                        tracing::info!(task, "waiting for the source's first snapshot");
                        stats.retry("anchor");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            };
            let Some((anchor, entries)) = snapshot else {
                tasks.push(TaskCheckpoint {
                    task: task.clone(),
                    snapshot_id: 0,
                    cursors: vec![Cursor::default(); usize::from(self.config.partitions)],
                });
                continue;
            };
            if anchor.cursors.len() != usize::from(self.config.partitions) {
                return Err(ReplicaError::BadAnchor {
                    task: task.to_string(),
                    reason: format!(
                        "{} partitions, this replica is configured for {}",
                        anchor.cursors.len(),
                        self.config.partitions
                    ),
                });
            }
            for entry in entries {
                let change = match entry.value {
                    Some(value) => Change::upsert(entry.key, value, entry.version),
                    None => Change::remove(entry.key, entry.version),
                };
                if let Some(change) = (self.transform)(change) {
                    if let Outcome::Apply(record) =
                        self.resolver.resolve(records.get(&change.key), &change)
                    {
                        records.insert(change.key, record);
                    }
                }
            }
            tasks.push(TaskCheckpoint {
                task: task.clone(),
                snapshot_id: anchor.snapshot_id,
                cursors: anchor.cursors,
            });
        }
        self.records = records;
        self.tasks = tasks;
        retrying_mut!(stats, "reset", self.sink.reset())?;
        let all: Vec<(String, Record)> = self
            .records
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        let checkpoint = self.checkpoint();
        let batches = all.chunks(self.config.load_batch.max(1));
        let count = batches.len();
        for (i, batch) in batches.enumerate() {
            // The checkpoint goes with the last batch: a replica killed before it restarts
            // with no checkpoint and loads again.
            let checkpoint = (i + 1 == count && S::DURABLE).then_some(&checkpoint);
            retrying_mut!(stats, "apply", self.sink.apply(batch, checkpoint))?;
        }
        if count == 0 && S::DURABLE {
            retrying_mut!(stats, "apply", self.sink.apply(&[], Some(&checkpoint)))?;
        }
        self.stats.reload();
        tracing::info!(
            replica = %self.config.name,
            keys = self.records.len(),
            "loaded snapshots"
        );
        Ok(())
    }

    /// Follows the streams until `shutdown` turns true (or its sender goes), then applies
    /// everything already in the streams and returns.
    pub async fn run(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ReplicaError> {
        loop {
            let (tx, mut rx) = mpsc::channel(self.config.read_ahead.max(1));
            let reader = self.spawn_reader(tx);
            let mut lag = tokio::time::interval(self.config.lag_interval);
            let outcome = loop {
                tokio::select! {
                    biased;
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            break None;
                        }
                    }
                    _ = lag.tick() => self.on_tick().await?,
                    read = rx.recv() => match read {
                        Some(Ok(batch)) => {
                            if let Next::Reload = self.apply_read(batch).await? {
                                break Some(Next::Reload);
                            }
                        }
                        Some(Err(e)) => {
                            reader.abort();
                            return Err(e.into());
                        }
                        None => break Some(Next::Continue),
                    },
                }
            };
            reader.abort();
            match outcome {
                None => {
                    self.catch_up().await?;
                    if !S::DURABLE {
                        self.store_checkpoint().await?;
                    }
                    return Ok(());
                }
                Some(Next::Reload) => self.reload().await?,
                Some(Next::Continue) => {}
            }
        }
    }

    async fn reload(&mut self) -> Result<(), ReplicaError> {
        self.reloads_without_progress += 1;
        if self.reloads_without_progress > 1 {
            tracing::warn!(
                replica = %self.config.name,
                reloads = self.reloads_without_progress,
                "fell behind again before applying anything since the last snapshot load: \
                 the sink is slower than the snapshot interval allows"
            );
        }
        tracing::warn!(
            replica = %self.config.name,
            "fell behind the trimmed tail of a stream; loading the latest snapshot"
        );
        self.load_snapshots(true).await
    }

    /// Reads and applies, without waiting, every entry that is in the streams when it is
    /// called (later ones too if they come in the same reads): so it ends even while the
    /// sources go on publishing.
    pub async fn catch_up(&mut self) -> Result<(), ReplicaError> {
        let stats = self.stats.clone();
        let mut tails = Vec::with_capacity(self.streams.len());
        for stream in &self.streams {
            let tail = retrying(
                "tail",
                |op| stats.retry(op),
                || self.engine.read_back(stream, None, 1),
            )
            .await?;
            tails.push(tail.first().map_or(Position::ZERO, |e| e.position));
        }
        loop {
            let from: Vec<(String, Position)> = self
                .read_positions()
                .into_iter()
                .zip(&tails)
                .filter(|((_, position), tail)| position < *tail)
                .map(|(from, _)| from)
                .collect();
            if from.is_empty() {
                return Ok(());
            }
            let batch = retrying(
                "read",
                |op| stats.retry(op),
                || {
                    self.engine
                        .read(&from, self.config.read_count, Duration::ZERO)
                },
            )
            .await?;
            if batch.iter().all(|(_, entries)| entries.is_empty()) {
                return Ok(());
            }
            // `read` numbers the streams of `from`; the applier wants the replica's numbering.
            let batch = batch
                .into_iter()
                .filter_map(|(i, entries)| {
                    let index = self.streams.iter().position(|s| *s == from[i].0)?;
                    Some((index, entries))
                })
                .collect();
            if let Next::Reload = self.apply_read(batch).await? {
                self.reload().await?;
            }
        }
    }

    fn read_positions(&self) -> Vec<(String, Position)> {
        self.streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), self.cursor(i).position))
            .collect()
    }

    fn spawn_reader(&self, tx: mpsc::Sender<Result<ReadBatch, EngineError>>) -> JoinHandle<()> {
        let engine = self.engine.fork();
        let mut from = self.read_positions();
        let (count, block) = (self.config.read_count, self.config.block);
        let stats = self.stats.clone();
        tokio::spawn(async move {
            loop {
                let read = retrying(
                    "read",
                    |op| stats.retry(op),
                    || engine.read(&from, count, block),
                )
                .await;
                if let Ok(batch) = &read {
                    // A read that timed out with nothing would only make the applier store
                    // the same checkpoint again.
                    if batch.iter().all(|(_, entries)| entries.is_empty()) {
                        continue;
                    }
                    for (index, entries) in batch {
                        if let Some(last) = entries.last() {
                            from[*index].1 = last.position;
                        }
                    }
                }
                let failed = read.is_err();
                if tx.send(read).await.is_err() || failed {
                    return;
                }
            }
        })
    }

    async fn on_tick(&mut self) -> Result<(), ReplicaError> {
        if let Err(e) = self.measure_lag().await {
            tracing::debug!(error = %e, "lag measurement failed");
        }
        if !S::DURABLE {
            self.store_checkpoint().await?;
        }
        Ok(())
    }

    /// Stores the checkpoint for operators (a durable sink stores it with every batch).
    async fn store_checkpoint(&self) -> Result<(), ReplicaError> {
        let item = [(
            self.config.layout.checkpoint(&self.config.name),
            crate::codec::encode_checkpoint(&self.checkpoint()),
        )];
        let stats = &self.stats;
        retrying(
            "checkpoint",
            |op| stats.retry(op),
            || self.engine.put(&item),
        )
        .await?;
        Ok(())
    }

    /// Changes published and not yet applied: per stream, the tail entry's `events_total`
    /// minus the cursor's, within one publisher epoch.
    async fn measure_lag(&self) -> Result<(), EngineError> {
        let mut lag = 0;
        for (index, stream) in self.streams.iter().enumerate() {
            let cursor = self.cursor(index);
            let tail = self.engine.read_back(stream, None, 1).await?;
            let Some(header) = tail
                .first()
                .and_then(|e| e.payload.as_deref())
                .and_then(|p| decode_entry(p).ok())
                .map(|e| e.header)
            else {
                continue;
            };
            if header.epoch == cursor.epoch {
                lag += header.events_total.saturating_sub(cursor.events_total);
            } else if header.epoch > cursor.epoch {
                lag += header.events_total;
            }
        }
        // Caught up: no change is waiting, so none is late (the seconds gauge would otherwise
        // keep the age of the last change applied, however long ago).
        let seconds = (lag == 0).then_some(0);
        self.stats.lag(Some(lag), seconds);
        Ok(())
    }

    fn admit(&self, index: usize, entry: &StreamEntry) -> Result<Admission, ReplicaError> {
        let p = usize::from(self.config.partitions);
        let Some(payload) = entry.payload.as_deref() else {
            return Ok(Admission::Skip(SkipReason::Foreign));
        };
        let decoded = match decode_entry(payload) {
            Ok(entry) => entry,
            Err(DecodeError::Foreign) => return Ok(Admission::Skip(SkipReason::Foreign)),
            Err(error @ DecodeError::UnsupportedFormat { .. }) => {
                return Err(ReplicaError::UnsupportedFormat {
                    task: self.config.tasks[index / p].clone(),
                    partition: (index % p) as u16,
                    position: entry.position,
                    error,
                })
            }
            Err(_) => return Ok(Admission::Skip(SkipReason::Corrupt)),
        };
        let header = decoded.header;
        if usize::from(header.partition) != index % p {
            return Ok(Admission::Skip(SkipReason::WrongPartition));
        }
        let horizon = now_ms().saturating_add(
            u64::try_from(self.config.max_clock_skew.as_millis()).unwrap_or(u64::MAX),
        );
        let epoch_ms = header.epoch >> 16;
        if header.published_ms > horizon
            || epoch_ms > horizon
            || decoded
                .changes
                .iter()
                .any(|c| c.version.physical_ms() > horizon)
        {
            return Ok(Admission::Skip(SkipReason::FromTheFuture));
        }
        let cursor = self.cursor(index);
        let found = (header.epoch, header.seq);
        Ok(if header.epoch < cursor.epoch {
            Admission::Stale {
                epoch: header.epoch,
            }
        } else if header.epoch == cursor.epoch && header.seq <= cursor.seq {
            Admission::Skip(SkipReason::Duplicate)
        } else if (header.epoch == cursor.epoch && header.seq == cursor.seq + 1)
            || (header.epoch > cursor.epoch && header.seq == 1)
        {
            Admission::Apply(decoded)
        } else {
            Admission::Gap { found }
        })
    }

    /// Checks, resolves and applies one read result, then hands the batch to the sink.
    async fn apply_read(&mut self, batch: ReadBatch) -> Result<Next, ReplicaError> {
        let mut dirty: HashMap<String, Record> = HashMap::new();
        let (mut applied, mut conflicts, mut newest_ms) = (0u64, 0u64, 0u64);
        let now = now_ms();
        let mut lags = Vec::new();
        for (index, entries) in batch {
            for entry in entries {
                let before = self.cursor(index);
                match self.admit(index, &entry)? {
                    Admission::Skip(reason) => {
                        self.stats.skipped(reason, 1);
                        self.cursor_mut(index).position = entry.position;
                    }
                    Admission::Stale { epoch } => {
                        self.stats.skipped(SkipReason::StaleEpoch, 1);
                        self.cursor_mut(index).position = entry.position;
                        // A crashed publisher's last entries may land after its successor's
                        // first ones, once; a steady flow of them means two sources publish
                        // under one task name, and one of them is being ignored.
                        if self.warned_stale.insert((index, epoch)) {
                            tracing::warn!(
                                stream = %self.streams[index],
                                stale_epoch = epoch,
                                current_epoch = before.epoch,
                                "skipping entries of an older publisher session; if this \
                                 repeats, two sources publish under the same task name"
                            );
                        }
                    }
                    Admission::Gap { found } => {
                        // Only a trim justifies a reload, so this cannot loop on a real gap:
                        // a gap right after an anchor stops the replica here.
                        if self.fell_behind(index).await? {
                            return Ok(Next::Reload);
                        }
                        let p = usize::from(self.config.partitions);
                        return Err(ReplicaError::Gap {
                            task: self.config.tasks[index / p].clone(),
                            partition: (index % p) as u16,
                            after: (before.epoch, before.seq),
                            found,
                            position: entry.position,
                        });
                    }
                    Admission::Apply(decoded) => {
                        // A newer epoch: the old one's tail may have been trimmed unseen.
                        if decoded.header.epoch > before.epoch && self.fell_behind(index).await? {
                            return Ok(Next::Reload);
                        }
                        self.reloads_without_progress = 0;
                        *self.cursor_mut(index) = Cursor {
                            position: entry.position,
                            epoch: decoded.header.epoch,
                            seq: decoded.header.seq,
                            events_total: decoded.header.events_total,
                        };
                        for change in decoded.changes {
                            let commit_ms = change.version.physical_ms();
                            let Some(change) = (self.transform)(change) else {
                                continue;
                            };
                            let current = dirty
                                .get(&change.key)
                                .or_else(|| self.records.get(&change.key));
                            if current.is_some_and(|c| c.version.node() != change.version.node()) {
                                conflicts += 1;
                            }
                            match self.resolver.resolve(current, &change) {
                                Outcome::Apply(record) => {
                                    applied += 1;
                                    newest_ms = newest_ms.max(commit_ms);
                                    if self.lag_histogram.is_some() {
                                        lags.push(now.saturating_sub(commit_ms));
                                    }
                                    dirty.insert(change.key, record);
                                }
                                Outcome::Skip => self.stats.skipped(SkipReason::Superseded, 1),
                            }
                        }
                    }
                }
            }
        }
        if let Some(histogram) = &self.lag_histogram {
            if let Ok(mut histogram) = histogram.lock() {
                for lag in lags {
                    histogram.saturating_record(lag);
                }
            }
        }
        let records: Vec<(String, Record)> = dirty.into_iter().collect();
        let checkpoint = S::DURABLE.then(|| self.checkpoint());
        let stats = self.stats.clone();
        retrying_mut!(
            stats,
            "apply",
            self.sink.apply(&records, checkpoint.as_ref())
        )?;
        for (key, record) in records {
            self.records.insert(key, record);
        }
        self.stats.applied(applied, conflicts);
        if applied > 0 {
            self.stats
                .lag(None, Some(now_ms().saturating_sub(newest_ms)));
        }
        Ok(Next::Continue)
    }
}

/// Reads `task`'s latest snapshot: its anchor and every entry. `None` when the task has
/// published none yet. A snapshot replaced while being read (a chunk gone or of another
/// snapshot) is read again from the new anchor.
pub async fn read_snapshot<E: Engine>(
    engine: &E,
    layout: &Layout,
    task: &str,
    stats: &ReplicaStats,
) -> Result<Option<(Anchor, Vec<SnapshotEntry>)>, ReplicaError> {
    let anchor_key = [layout.anchor(task)];
    'read: loop {
        let blob = retrying("anchor", |op| stats.retry(op), || engine.get(&anchor_key))
            .await?
            .pop()
            .flatten();
        let Some(blob) = blob else { return Ok(None) };
        let anchor = decode_anchor(&blob).map_err(|e| ReplicaError::BadAnchor {
            task: task.to_string(),
            reason: e.to_string(),
        })?;
        let mut entries = Vec::with_capacity(usize::try_from(anchor.entries).unwrap_or(0));
        for first in (0..anchor.chunks).step_by(CHUNKS_PER_READ) {
            let last = (first + CHUNKS_PER_READ as u32).min(anchor.chunks);
            let keys: Vec<String> = (first..last)
                .map(|i| layout.chunk(task, anchor.snapshot_id, i))
                .collect();
            let blobs = retrying("chunk", |op| stats.retry(op), || engine.get(&keys)).await?;
            for (i, blob) in (first..last).zip(blobs) {
                match blob
                    .as_deref()
                    .map(|b| decode_chunk(b, anchor.snapshot_id, i))
                {
                    Some(Ok(chunk)) => entries.extend(chunk),
                    Some(Err(DecodeError::Malformed(_))) | None => {
                        // Gone or overwritten: replaced by a newer snapshot while we read,
                        // unless the anchor still names this one, which means it is damaged.
                        let now =
                            retrying("anchor", |op| stats.retry(op), || engine.get(&anchor_key))
                                .await?
                                .pop()
                                .flatten()
                                .and_then(|b| decode_anchor(&b).ok());
                        if now.is_some_and(|a| a.snapshot_id != anchor.snapshot_id) {
                            tracing::info!(task, "snapshot replaced while loading; again");
                            continue 'read;
                        }
                        return Err(ReplicaError::BadAnchor {
                            task: task.to_string(),
                            reason: format!(
                                "chunk {i} of snapshot {} is missing",
                                anchor.snapshot_id
                            ),
                        });
                    }
                    Some(Err(e)) => {
                        return Err(ReplicaError::BadAnchor {
                            task: task.to_string(),
                            reason: format!("chunk {i} of snapshot {}: {e}", anchor.snapshot_id),
                        })
                    }
                }
            }
        }
        return Ok(Some((anchor, entries)));
    }
}
