//! Results: one [`Record`] per map and workload, the one shape the tables, the JSON and the CSV
//! are all made from.

use serde::Serialize;

use crate::runner::GrowthSample;

/// One map on one workload.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Record {
    /// The map's name, as in the table.
    pub map: String,
    /// The workload's name.
    pub workload: String,
    /// `"u64"` or `"String"`.
    pub key_type: String,
    /// The hasher.
    pub hasher: String,
    /// How the keys were made: `"mixed"` or `"sequential"`.
    pub key_pattern: String,
    /// The regime of the `--regimes` matrix this record belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regime: Option<String>,
    /// Benchmark threads.
    pub threads: usize,
    /// Size of the key space.
    pub keys: usize,
    /// Timed operations.
    pub ops: u64,
    /// Runs; the figures are those of the run with the median throughput.
    pub repeat: usize,
    /// `"ok"`, or why the map was not timed.
    pub status: String,
    /// Throughput in millions of operations per second.
    pub mops: Option<f64>,
    /// Median sampled latency, ns.
    pub p50_ns: Option<u64>,
    /// 99th percentile latency, ns.
    pub p99_ns: Option<u64>,
    /// 99.9th percentile latency, ns.
    pub p999_ns: Option<u64>,
    /// Heap allocations per timed operation.
    pub allocs_per_op: Option<f64>,
    /// Heap bytes allocated per timed operation.
    pub bytes_alloc_per_op: Option<f64>,
    /// Live heap bytes per entry after prefill (at the end when nothing is prefilled).
    pub bytes_per_entry: Option<f64>,
    /// Peak resident memory of the whole process while this map ran.
    pub peak_rss_bytes: Option<u64>,
    /// Heap samples of the growth workload.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub growth: Vec<GrowthSample>,
    /// The snapshot workload's figures, as fields of the record itself; the fields above
    /// describe its run without snapshots.
    #[serde(flatten)]
    pub snapshot: Option<SnapshotFigures>,
    /// The capture workload's figures; the fields above describe the run with capture off.
    #[serde(flatten)]
    pub capture: Option<CaptureFigures>,
}

/// What the capture workload adds to a record: the run with capture on.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureFigures {
    /// Throughput of the same map holding versioned values, capture off, Mops/s.
    pub mops_versioned_storage: f64,
    /// Operations run with capture on (fewer than planned if the run hit its limit).
    pub ops_with_capture: u64,
    /// Throughput with capture on and one subscriber draining, Mops/s.
    pub mops_with_capture: f64,
    /// `mops_with_capture / mops`.
    pub capture_ratio: Option<f64>,
    /// 99th percentile operation latency with capture on, ns.
    pub p99_ns_with_capture: u64,
    /// Change events the subscriber applied.
    pub events: u64,
    /// From the workers' end to the subscriber's last event, ns.
    pub drain_tail_ns: u64,
}

/// What the snapshot workload adds to a record: the run with snapshots and the snapshots.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotFigures {
    /// Operations run while snapshots were taken (fewer than planned if the run hit its limit).
    pub ops_with_snapshots: u64,
    /// Throughput while snapshots were taken, Mops/s.
    pub mops_with_snapshots: f64,
    /// `mops_with_snapshots / mops`; absent when nothing ran alone.
    pub throughput_ratio_with_snapshots: Option<f64>,
    /// 99th percentile operation latency while snapshots were taken, ns.
    pub p99_ns_with_snapshots: u64,
    /// 99.9th percentile operation latency while snapshots were taken, ns.
    pub p999_ns_with_snapshots: u64,
    /// Snapshots taken during the run with snapshots.
    pub snapshots_taken: u64,
    /// Median time of one `snapshot()` call, ns.
    pub snapshot_p50_ns: u64,
    /// 99th percentile time of one `snapshot()` call, ns.
    pub snapshot_p99_ns: u64,
    /// Longest `snapshot()` call, ns.
    pub snapshot_max_ns: u64,
    /// Fewest entries in one snapshot.
    pub snapshot_entries_min: usize,
    /// Most entries in one snapshot.
    pub snapshot_entries_max: usize,
}

impl Record {
    /// True if the map was timed.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// A record of the snapshot workload, for tests.
#[cfg(test)]
pub mod fixtures {
    use super::*;

    /// `AtomicMap` on the snapshot workload.
    pub fn snapshot_record() -> Record {
        Record {
            map: "AtomicMap".into(),
            workload: "snapshot".into(),
            status: "ok".into(),
            ops: 4_000_000,
            mops: Some(10.0),
            snapshot: Some(SnapshotFigures {
                ops_with_snapshots: 2_500_000,
                mops_with_snapshots: 5.0,
                throughput_ratio_with_snapshots: Some(0.5),
                p99_ns_with_snapshots: 900,
                p999_ns_with_snapshots: 40_000_000,
                snapshots_taken: 12,
                snapshot_p50_ns: 31_000_000,
                snapshot_p99_ns: 45_000_000,
                snapshot_max_ns: 45_500_000,
                snapshot_entries_min: 1_000_000,
                snapshot_entries_max: 1_000_000,
            }),
            ..Record::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::snapshot_record;
    use super::*;

    #[test]
    fn snapshot_fields_are_in_the_record_only_for_the_snapshot_workload() {
        let with = serde_json::to_value(snapshot_record()).unwrap();
        assert_eq!(with["mops"], 10.0);
        assert_eq!(with["mops_with_snapshots"], 5.0);
        let without = serde_json::to_value(Record::default()).unwrap();
        assert!(without.get("mops_with_snapshots").is_none());
        assert!(without.get("mops").is_some());
    }
}
