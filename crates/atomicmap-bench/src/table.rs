//! The tables printed after each workload: one row per map, and under a throughput table
//! the harness row's cost per operation.

use std::fmt::Write as _;

use crate::maps::MapId;
use crate::record::Record;

pub fn ns(v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(n) if n < 10_000 => format!("{n}ns"),
        Some(n) if n < 10_000_000 => format!("{:.1}µs", n as f64 / 1e3),
        Some(n) => format!("{:.1}ms", n as f64 / 1e6),
    }
}

pub fn num(v: Option<f64>, digits: usize) -> String {
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
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
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
    out += &floor_footer(records);
    out
}

/// The name of the harness row's record.
pub const HARNESS: &str = "harness";

/// Time one thread spends on one operation of `record`, in ns.
pub fn ns_per_op(record: &Record) -> Option<f64> {
    record
        .mops
        .filter(|&mops| mops > 0.0)
        .map(|mops| record.threads as f64 * 1e3 / mops)
}

/// The record of the map named `name`, if it ran and passed its check.
fn ok_record<'r>(records: &'r [Record], name: &str) -> Option<&'r Record> {
    records.iter().find(|r| r.map == name && r.is_ok())
}

/// The line under a throughput table that says what the benchmark itself costs per operation,
/// and what share of `LIMIT`'s time per operation that is; empty without a harness record.
fn harness_footer(records: &[Record]) -> String {
    let per_op = |name| ok_record(records, name).and_then(ns_per_op);
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

/// The lines under a throughput table that say what the floor and reference rows are and how
/// close `AtomicMap` comes to each; a line needs both records.
fn floor_footer(records: &[Record]) -> String {
    let mops = |name| ok_record(records, name).and_then(|r| r.mops);
    let Some(ours) = mops(MapId::AtomicMap.name()) else {
        return String::new();
    };
    let floors = [
        (
            MapId::Floor,
            "not a map: AtomicMap's slots in a fixed shared array, Acquire loads and one CAS \
             per write, no pin, resize or codec; no map of this design can beat it",
        ),
        (
            MapId::GrowingFloor,
            "not a map: each thread's own table of AtomicMap's slots that doubles at 5/8 full \
             into successors mapped before the timer, copying with the CASes a lock-free copy \
             needs; no pin or codec; one thread only: no map of this design that grows can beat \
             it",
        ),
        (
            MapId::GrowingFloorPlainCopy,
            "the growing floor with a plain copy, as a table one writer at a time owns may make",
        ),
        (
            MapId::StopTheWorld,
            "not a map and not a bound: one table of AtomicMap's slots shared by every thread, \
             doubling at 5/8 full into successors mapped before the timer; a grow stops every \
             thread, and they copy in parallel with plain loads and one CAS per carried key: \
             the simplest resize a shared table can make, against AtomicMap's lock-free one",
        ),
    ];
    floors
        .iter()
        .filter_map(|&(id, what)| {
            mops(id.name()).map(|floor| {
                format!(
                    "{} ({what}): AtomicMap runs at {:.2}x its speed\n",
                    id.name(),
                    ours / floor
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixtures::snapshot_record;
    use crate::record::CaptureFigures;

    #[test]
    fn capture_table_shows_the_ratio() {
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
        let table = table(&[record]);
        assert!(table.lines().next().unwrap().contains("on/off"));
        for cell in ["10.00", "7.50", "0.75x", "4.0M/3.0M", "1.5M", "2000.0µs"] {
            assert!(table.contains(cell), "{cell} missing from\n{table}");
        }
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
