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

/// The table of one workload's records.
pub fn table(records: &[Record]) -> String {
    let growth = records.iter().any(|r| !r.growth.is_empty());
    let mut out = String::new();
    let rows: Vec<Vec<String>> = records
        .iter()
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
    out
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

/// Write all records as CSV; growth samples go in one field as `keys:bytes;...`.
pub fn write_csv(path: &Path, records: &[Record]) -> io::Result<()> {
    let mut f = io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        f,
        "map,workload,key_type,hasher,threads,keys,ops,repeat,status,mops,p50_ns,p99_ns,p999_ns,\
         allocs_per_op,bytes_alloc_per_op,bytes_per_entry,peak_rss_bytes,growth"
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
        writeln!(f, "{}", fields.join(","))?;
    }
    f.flush()
}
