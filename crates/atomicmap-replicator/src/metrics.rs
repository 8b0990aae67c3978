//! What the replicator measures, through the `metrics` facade.
//!
//! The binary installs a Prometheus exporter; a library user installs any recorder (or none,
//! and the calls cost next to nothing). Each counter is also kept in a plain atomic in
//! [`SourceStats`] / [`ReplicaStats`], so tests and the demo can read them back without a
//! recorder.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use metrics::{counter, gauge, histogram, Unit};

/// Changes published to the streams.
pub const PUBLISHED: &str = "replicator_published_events_total";
/// Stream entries appended (each carries a batch of changes).
pub const ENTRIES: &str = "replicator_published_entries_total";
/// Changes per stream entry, or per applied batch on a replica.
pub const BATCH_SIZE: &str = "replicator_batch_size";
/// Retries of an engine or sink call after a transient failure, by `op`.
pub const RETRIES: &str = "replicator_retries_total";
/// Entries written to the local spool while the engine was unreachable.
pub const SPOOLED: &str = "replicator_spooled_entries_total";
/// Entries currently waiting in the spool.
pub const SPOOL_DEPTH: &str = "replicator_spool_depth_entries";
/// Bytes currently in the spool file.
pub const SPOOL_BYTES: &str = "replicator_spool_bytes";
/// Snapshots published.
pub const SNAPSHOTS: &str = "replicator_snapshots_total";
/// Changes of low-priority prefixes held back at flow level 2.
pub const HELD_BACK: &str = "replicator_held_back_total";
/// The flow level (0 normal, 1 small batches, 2 low-priority prefixes paused, 3 spooling).
pub const FLOW_LEVEL: &str = "replicator_flow_level";
/// Changes applied to a replica's records.
pub const APPLIED: &str = "replicator_applied_events_total";
/// Changes between records of different nodes (multi-writer conflicts), resolved.
pub const CONFLICTS: &str = "replicator_conflicts_total";
/// Changes or entries skipped, by `reason`.
pub const SKIPPED: &str = "replicator_skipped_total";
/// Snapshot loads by a replica (bootstrap, or fell behind the trimmed tail).
pub const RELOADS: &str = "replicator_snapshot_loads_total";
/// Changes published but not yet applied by this replica.
pub const LAG_EVENTS: &str = "replicator_lag_events";
/// Age of the newest change applied when it was applied.
pub const LAG_SECONDS: &str = "replicator_lag_seconds";
/// Latency of one sink or engine write, seconds.
pub const SINK_LATENCY: &str = "replicator_sink_latency_seconds";

/// Registers units and help texts with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(PUBLISHED, Unit::Count, "changes published to the streams");
    describe_counter!(ENTRIES, Unit::Count, "stream entries appended");
    describe_histogram!(
        BATCH_SIZE,
        Unit::Count,
        "changes per entry or applied batch"
    );
    describe_counter!(
        RETRIES,
        Unit::Count,
        "retries after transient failures, by op"
    );
    describe_counter!(
        SPOOLED,
        Unit::Count,
        "entries spooled while the engine was down"
    );
    describe_gauge!(SPOOL_DEPTH, Unit::Count, "entries waiting in the spool");
    describe_gauge!(SPOOL_BYTES, Unit::Bytes, "bytes in the spool file");
    describe_counter!(SNAPSHOTS, Unit::Count, "snapshots published");
    describe_counter!(HELD_BACK, Unit::Count, "low-priority changes held back");
    describe_gauge!(
        FLOW_LEVEL,
        Unit::Count,
        "0 normal, 1 small batches, 2 paused, 3 spooling"
    );
    describe_counter!(APPLIED, Unit::Count, "changes applied to the replica");
    describe_counter!(
        CONFLICTS,
        Unit::Count,
        "changes resolved against another node's"
    );
    describe_counter!(
        SKIPPED,
        Unit::Count,
        "changes or entries skipped, by reason"
    );
    describe_counter!(RELOADS, Unit::Count, "snapshot loads by a replica");
    describe_gauge!(
        LAG_EVENTS,
        Unit::Count,
        "changes published, not yet applied"
    );
    describe_gauge!(
        LAG_SECONDS,
        Unit::Seconds,
        "age of the newest applied change"
    );
    describe_histogram!(
        SINK_LATENCY,
        Unit::Seconds,
        "latency of one write to the sink"
    );
}

/// Exports a replica's counters and gauges at zero before anything happens, so dashboards
/// and alerts see them from the start (a metric otherwise appears with its first value).
pub fn export_replica_metrics() {
    for name in [APPLIED, CONFLICTS, RELOADS] {
        counter!(name).increment(0);
    }
    for name in [LAG_EVENTS, LAG_SECONDS] {
        gauge!(name).set(0.0);
    }
}

/// Exports a source's counters and gauges at zero before anything happens.
pub fn export_source_metrics() {
    for name in [PUBLISHED, ENTRIES, SPOOLED, SNAPSHOTS, HELD_BACK] {
        counter!(name).increment(0);
    }
    for name in [SPOOL_DEPTH, SPOOL_BYTES, FLOW_LEVEL] {
        gauge!(name).set(0.0);
    }
}

/// Counts a retry of `op`.
pub fn retry(op: &'static str) {
    counter!(RETRIES, "op" => op).increment(1);
}

/// A source's counters.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Changes published (appended, or spooled and later drained).
    pub published: AtomicU64,
    /// Entries appended.
    pub entries: AtomicU64,
    /// Retries of engine calls.
    pub retries: AtomicU64,
    /// Entries that went to the spool.
    pub spooled: AtomicU64,
    /// Entries waiting in the spool now.
    pub spool_depth: AtomicU64,
    /// Snapshots published.
    pub snapshots: AtomicU64,
    /// Changes of low-priority prefixes held back (flow level 2).
    pub held_back: AtomicU64,
}

impl SourceStats {
    pub(crate) fn published(&self, changes: u64, entries: u64) {
        self.published.fetch_add(changes, Relaxed);
        self.entries.fetch_add(entries, Relaxed);
        counter!(PUBLISHED).increment(changes);
        counter!(ENTRIES).increment(entries);
    }
    pub(crate) fn retry(&self, op: &'static str) {
        self.retries.fetch_add(1, Relaxed);
        retry(op);
    }
    pub(crate) fn spooled(&self, entries: u64) {
        self.spooled.fetch_add(entries, Relaxed);
        counter!(SPOOLED).increment(entries);
    }
    pub(crate) fn spool_depth(&self, entries: u64, bytes: u64) {
        self.spool_depth.store(entries, Relaxed);
        gauge!(SPOOL_DEPTH).set(entries as f64);
        gauge!(SPOOL_BYTES).set(bytes as f64);
    }
    pub(crate) fn snapshot(&self) {
        self.snapshots.fetch_add(1, Relaxed);
        counter!(SNAPSHOTS).increment(1);
    }
    pub(crate) fn held_back(&self, changes: u64) {
        self.held_back.fetch_add(changes, Relaxed);
        counter!(HELD_BACK).increment(changes);
    }
}

/// Why a replica skipped an entry or a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// An entry that is not ours (no payload field, or another magic).
    Foreign,
    /// Ours, but truncated or corrupted (length or CRC).
    Corrupt,
    /// Already applied: a sequence number at or below the cursor.
    Duplicate,
    /// From an older publisher session than one already seen.
    StaleEpoch,
    /// A version or timestamp too far ahead of this replica's clock.
    FromTheFuture,
    /// Copied into the stream of another partition.
    WrongPartition,
    /// A change the resolver found already reflected or beaten.
    Superseded,
}

impl SkipReason {
    /// The label value of [`SKIPPED`].
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::Foreign => "foreign",
            SkipReason::Corrupt => "corrupt",
            SkipReason::Duplicate => "duplicate",
            SkipReason::StaleEpoch => "stale_epoch",
            SkipReason::FromTheFuture => "from_the_future",
            SkipReason::WrongPartition => "wrong_partition",
            SkipReason::Superseded => "superseded",
        }
    }
}

/// A replica's counters.
#[derive(Debug, Default)]
pub struct ReplicaStats {
    /// Changes applied.
    pub applied: AtomicU64,
    /// Changes resolved against a record of another node.
    pub conflicts: AtomicU64,
    /// Foreign entries skipped.
    pub foreign: AtomicU64,
    /// Corrupt (truncated, bad CRC, malformed) entries skipped.
    pub corrupt: AtomicU64,
    /// Duplicate entries skipped.
    pub duplicates: AtomicU64,
    /// Entries of an older publisher session skipped.
    pub stale_epochs: AtomicU64,
    /// Entries from the future skipped.
    pub from_the_future: AtomicU64,
    /// Entries found in the wrong partition's stream.
    pub wrong_partition: AtomicU64,
    /// Changes the resolver skipped.
    pub superseded: AtomicU64,
    /// Snapshot loads.
    pub reloads: AtomicU64,
    /// Retries of engine or sink calls.
    pub retries: AtomicU64,
    /// Changes published but not yet applied, at the last measurement.
    pub lag_events: AtomicU64,
    /// Age of the newest applied change, milliseconds, at the last batch.
    pub lag_ms: AtomicU64,
}

impl ReplicaStats {
    pub(crate) fn skipped(&self, reason: SkipReason, n: u64) {
        let field = match reason {
            SkipReason::Foreign => &self.foreign,
            SkipReason::Corrupt => &self.corrupt,
            SkipReason::Duplicate => &self.duplicates,
            SkipReason::StaleEpoch => &self.stale_epochs,
            SkipReason::FromTheFuture => &self.from_the_future,
            SkipReason::WrongPartition => &self.wrong_partition,
            SkipReason::Superseded => &self.superseded,
        };
        field.fetch_add(n, Relaxed);
        counter!(SKIPPED, "reason" => reason.label()).increment(n);
    }
    pub(crate) fn applied(&self, applied: u64, conflicts: u64) {
        self.applied.fetch_add(applied, Relaxed);
        self.conflicts.fetch_add(conflicts, Relaxed);
        counter!(APPLIED).increment(applied);
        counter!(CONFLICTS).increment(conflicts);
        if applied > 0 {
            histogram!(BATCH_SIZE).record(applied as f64);
        }
    }
    pub(crate) fn retry(&self, op: &'static str) {
        self.retries.fetch_add(1, Relaxed);
        retry(op);
    }
    pub(crate) fn reload(&self) {
        self.reloads.fetch_add(1, Relaxed);
        counter!(RELOADS).increment(1);
    }
    pub(crate) fn lag(&self, events: Option<u64>, ms: Option<u64>) {
        if let Some(events) = events {
            self.lag_events.store(events, Relaxed);
            gauge!(LAG_EVENTS).set(events as f64);
        }
        if let Some(ms) = ms {
            self.lag_ms.store(ms, Relaxed);
            gauge!(LAG_SECONDS).set(ms as f64 / 1000.0);
        }
    }
}
