//! Results: one [`Record`] per map and workload, printed as a table, written as JSON or CSV.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

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

fn ns(v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(n) if n < 10_000 => format!("{n}ns"),
        Some(n) if n < 10_000_000 => format!("{:.1}µs", n as f64 / 1e3),
        Some(n) => format!("{:.1}ms", n as f64 / 1e6),
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// A count in a few characters: `950`, `12.5k`, `4.0M`.
fn count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

fn mib(bytes: Option<i64>) -> String {
    bytes.map_or("-".into(), |b| {
        format!("{:.1}MiB", b as f64 / (1024.0 * 1024.0))
    })
}

/// Render rows as a table with right-aligned columns (the first left-aligned).
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            let pad = w - cell.chars().count();
            if i == 0 {
                let _ = write!(out, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "  {}{cell}", " ".repeat(pad));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    out += &line(
        &mut widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    );
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

/// The table of the snapshot workload's records.
fn snapshot_table(records: &[Record]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| match &r.snapshot {
            Some(s) if r.is_ok() => {
                let entries = if s.snapshot_entries_min == s.snapshot_entries_max {
                    s.snapshot_entries_min.to_string()
                } else {
                    format!("{}-{}", s.snapshot_entries_min, s.snapshot_entries_max)
                };
                vec![
                    r.map.clone(),
                    num(r.mops, 2),
                    num(Some(s.mops_with_snapshots), 2),
                    s.throughput_ratio_with_snapshots
                        .map_or("-".into(), |x| format!("{x:.2}x")),
                    format!("{}/{}", count(r.ops), count(s.ops_with_snapshots)),
                    s.snapshots_taken.to_string(),
                    ns(Some(s.snapshot_p50_ns)),
                    ns(Some(s.snapshot_p99_ns)),
                    ns(Some(s.snapshot_max_ns)),
                    entries,
                ]
            }
            _ => vec![r.map.clone(), r.status.clone()],
        })
        .collect();
    render(
        &[
            "map",
            "Mops/s alone",
            "Mops/s w/ snapshots",
            "ratio",
            "ops alone/with",
            "snapshots",
            "snapshot p50",
            "snapshot p99",
            "snapshot max",
            "entries/snapshot",
        ],
        &rows,
    )
}

/// The table of the capture workload's records.
fn capture_table(records: &[Record]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| match &r.capture {
            Some(c) if r.is_ok() => vec![
                r.map.clone(),
                num(r.mops, 2),
                num(Some(c.mops_versioned_storage), 2),
                num(Some(c.mops_with_capture), 2),
                c.capture_ratio.map_or("-".into(), |x| format!("{x:.2}x")),
                ns(r.p99_ns),
                ns(Some(c.p99_ns_with_capture)),
                num(r.allocs_per_op, 3),
                format!("{}/{}", count(r.ops), count(c.ops_with_capture)),
                count(c.events),
                ns(Some(c.drain_tail_ns)),
            ],
            _ => vec![r.map.clone(), r.status.clone()],
        })
        .collect();
    render(
        &[
            "map",
            "Mops/s off",
            "Mops/s versioned",
            "Mops/s on",
            "on/off",
            "p99 off",
            "p99 on",
            "allocs/op off",
            "ops off/on",
            "events",
            "drain tail",
        ],
        &rows,
    )
}

/// The table of one workload's records.
pub fn table(records: &[Record]) -> String {
    if records.iter().any(|r| r.snapshot.is_some()) {
        return snapshot_table(records);
    }
    if records.iter().any(|r| r.capture.is_some()) {
        return capture_table(records);
    }
    let growth = records.iter().any(|r| !r.growth.is_empty());
    let mut out = String::new();
    let rows: Vec<Vec<String>> = records
        .iter()
        .filter(|r| r.map != HARNESS)
        .map(|r| {
            if !r.is_ok() {
                return vec![r.map.clone(), r.status.clone()];
            }
            let mut row = vec![r.map.clone(), num(r.mops, 2)];
            if growth {
                let at = |q: usize| {
                    let i = (r.growth.len() * q / 4).saturating_sub(1);
                    mib(r.growth.get(i).map(|s| s.bytes))
                };
                row.extend([at(1), at(2), at(3), at(4), num(r.bytes_per_entry, 1)]);
            } else {
                row.extend([
                    ns(r.p50_ns),
                    ns(r.p99_ns),
                    ns(r.p999_ns),
                    num(r.allocs_per_op, 3),
                    num(r.bytes_alloc_per_op, 1),
                    num(r.bytes_per_entry, 1),
                    mib(r.peak_rss_bytes.map(|b| b as i64)),
                ]);
            }
            row
        })
        .collect();
    if growth {
        out += &render(
            &[
                "map",
                "Mops/s",
                "heap@25%",
                "heap@50%",
                "heap@75%",
                "heap@100%",
                "B/entry",
            ],
            &rows,
        );
    } else {
        out += &render(
            &[
                "map",
                "Mops/s",
                "p50",
                "p99",
                "p999",
                "allocs/op",
                "B/op",
                "B/entry",
                "peak RSS",
            ],
            &rows,
        );
    }
    out += &harness_footer(records);
    out
}

/// The name of the harness row's record.
const HARNESS: &str = "harness";

/// Time one thread spends on one operation of `record`, in ns.
fn ns_per_op(record: &Record) -> Option<f64> {
    record
        .mops
        .filter(|&mops| mops > 0.0)
        .map(|mops| record.threads as f64 * 1e3 / mops)
}

/// The line under a throughput table that says what the benchmark itself costs per operation,
/// and what share of `LIMIT`'s time per operation that is; empty without a harness record.
fn harness_footer(records: &[Record]) -> String {
    let per_op = |name: &str| {
        records
            .iter()
            .find(|r| r.map == name && r.is_ok())
            .and_then(ns_per_op)
    };
    let Some(harness) = per_op(HARNESS) else {
        return String::new();
    };
    let share = per_op("LIMIT").map_or(String::new(), |limit| {
        format!(" = {:.1}% of LIMIT's {limit:.2}ns", 100.0 * harness / limit)
    });
    format!(
        "harness (the same loop on a map whose operations only black_box their key): \
         {harness:.2}ns per op per thread{share}\n"
    )
}

/// Write all records as a JSON array.
pub fn write_json(path: &Path, records: &[Record]) -> io::Result<()> {
    let mut f = io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer_pretty(&mut f, records)?;
    writeln!(f)?;
    f.flush()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CSV columns of [`SnapshotFigures`], in its field order.
const SNAPSHOT_COLUMNS: [&str; 11] = [
    "ops_with_snapshots",
    "mops_with_snapshots",
    "throughput_ratio_with_snapshots",
    "p99_ns_with_snapshots",
    "p999_ns_with_snapshots",
    "snapshots_taken",
    "snapshot_p50_ns",
    "snapshot_p99_ns",
    "snapshot_max_ns",
    "snapshot_entries_min",
    "snapshot_entries_max",
];

/// The CSV columns of [`CaptureFigures`], in its field order.
const CAPTURE_COLUMNS: [&str; 7] = [
    "mops_versioned_storage",
    "ops_with_capture",
    "mops_with_capture",
    "capture_ratio",
    "p99_ns_with_capture",
    "events",
    "drain_tail_ns",
];

/// Write all records as CSV; growth samples go in one field as `keys:bytes;...`, and the
/// snapshot and capture workloads' columns come last, empty for the other workloads.
pub fn write_csv(path: &Path, records: &[Record]) -> io::Result<()> {
    let mut f = io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        f,
        "map,workload,key_type,hasher,threads,keys,ops,repeat,status,mops,p50_ns,p99_ns,p999_ns,\
         allocs_per_op,bytes_alloc_per_op,bytes_per_entry,peak_rss_bytes,growth,{},{}",
        SNAPSHOT_COLUMNS.join(","),
        CAPTURE_COLUMNS.join(",")
    )?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in records {
        let growth: Vec<String> = r
            .growth
            .iter()
            .map(|s| format!("{}:{}", s.keys, s.bytes))
            .collect();
        let fields = [
            csv_field(&r.map),
            csv_field(&r.workload),
            r.key_type.clone(),
            r.hasher.clone(),
            r.threads.to_string(),
            r.keys.to_string(),
            r.ops.to_string(),
            r.repeat.to_string(),
            csv_field(&r.status),
            opt(r.mops.map(|v| format!("{v:.4}"))),
            opt(r.p50_ns.map(|v| v.to_string())),
            opt(r.p99_ns.map(|v| v.to_string())),
            opt(r.p999_ns.map(|v| v.to_string())),
            opt(r.allocs_per_op.map(|v| format!("{v:.4}"))),
            opt(r.bytes_alloc_per_op.map(|v| format!("{v:.2}"))),
            opt(r.bytes_per_entry.map(|v| format!("{v:.2}"))),
            opt(r.peak_rss_bytes.map(|v| v.to_string())),
            growth.join(";"),
        ];
        let snapshot: [String; SNAPSHOT_COLUMNS.len()] = match &r.snapshot {
            None => Default::default(),
            Some(s) => [
                s.ops_with_snapshots.to_string(),
                format!("{:.4}", s.mops_with_snapshots),
                opt(s.throughput_ratio_with_snapshots.map(|v| format!("{v:.4}"))),
                s.p99_ns_with_snapshots.to_string(),
                s.p999_ns_with_snapshots.to_string(),
                s.snapshots_taken.to_string(),
                s.snapshot_p50_ns.to_string(),
                s.snapshot_p99_ns.to_string(),
                s.snapshot_max_ns.to_string(),
                s.snapshot_entries_min.to_string(),
                s.snapshot_entries_max.to_string(),
            ],
        };
        let capture: [String; CAPTURE_COLUMNS.len()] = match &r.capture {
            None => Default::default(),
            Some(c) => [
                format!("{:.4}", c.mops_versioned_storage),
                c.ops_with_capture.to_string(),
                format!("{:.4}", c.mops_with_capture),
                opt(c.capture_ratio.map(|v| format!("{v:.4}"))),
                c.p99_ns_with_capture.to_string(),
                c.events.to_string(),
                c.drain_tail_ns.to_string(),
            ],
        };
        writeln!(
            f,
            "{},{},{}",
            fields.join(","),
            snapshot.join(","),
            capture.join(",")
        )?;
    }
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_record() -> Record {
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

    #[test]
    fn snapshot_csv_columns_are_the_json_fields() {
        let json = serde_json::to_value(snapshot_record().snapshot).unwrap();
        let mut fields: Vec<&str> = json.as_object().unwrap().keys().map(|k| &**k).collect();
        let mut columns = SNAPSHOT_COLUMNS.to_vec();
        fields.sort_unstable();
        columns.sort_unstable();
        assert_eq!(fields, columns);
    }

    #[test]
    fn capture_csv_columns_are_the_json_fields_and_the_table_shows_the_ratio() {
        let record = Record {
            map: "AtomicMap".into(),
            workload: "capture".into(),
            status: "ok".into(),
            ops: 4_000_000,
            mops: Some(10.0),
            capture: Some(CaptureFigures {
                mops_versioned_storage: 9.0,
                ops_with_capture: 3_000_000,
                mops_with_capture: 7.5,
                capture_ratio: Some(0.75),
                p99_ns_with_capture: 800,
                events: 1_500_000,
                drain_tail_ns: 2_000_000,
            }),
            ..Record::default()
        };
        let json = serde_json::to_value(&record.capture).unwrap();
        let mut fields: Vec<&str> = json.as_object().unwrap().keys().map(|k| &**k).collect();
        let mut columns = CAPTURE_COLUMNS.to_vec();
        fields.sort_unstable();
        columns.sort_unstable();
        assert_eq!(fields, columns);
        let table = table(&[record]);
        assert!(table.lines().next().unwrap().contains("on/off"));
        for cell in ["10.00", "7.50", "0.75x", "4.0M/3.0M", "1.5M", "2000.0µs"] {
            assert!(table.contains(cell), "{cell} missing from\n{table}");
        }
    }

    #[test]
    fn snapshot_fields_are_in_the_record_only_for_the_snapshot_workload() {
        let with = serde_json::to_value(snapshot_record()).unwrap();
        assert_eq!(with["mops"], 10.0);
        assert_eq!(with["mops_with_snapshots"], 5.0);
        let without = serde_json::to_value(Record::default()).unwrap();
        assert!(without.get("mops_with_snapshots").is_none());
        assert!(without.get("mops").is_some());
    }

    #[test]
    fn snapshot_table_shows_both_throughputs_and_the_latency() {
        let mut failed = snapshot_record();
        failed.map = "ShardedMap".into();
        failed.status = "FAILED: snapshots held 3 to 3 entries, expected 10 to 10".into();
        let table = table(&[snapshot_record(), failed]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("Mops/s alone") && lines[0].contains("snapshot p99"));
        for cell in [
            "10.00",
            "5.00",
            "0.50x",
            "4.0M/2.5M",
            "31.0ms",
            "45.5ms",
            "1000000",
        ] {
            assert!(lines[2].contains(cell), "{cell} missing: {}", lines[2]);
        }
        assert!(
            lines[3].contains("FAILED: snapshots held 3"),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn counts_are_short() {
        assert_eq!(count(950), "950");
        assert_eq!(count(12_500), "12.5k");
        assert_eq!(count(4_000_000), "4.0M");
        assert_eq!(count(40_000_000), "40.0M");
    }
}
