//! The built binary on tiny sizes: every workload runs, bad arguments exit with 2, and the
//! JSON records carry the documented fields.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atomicmap-bench"))
        .args(args)
        .output()
        .expect("the benchmark binary runs")
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("atomicmap-bench-{}-{name}", std::process::id()))
}

const TINY: &[&str] = &["--keys", "2000", "--ops", "20000", "--threads", "2"];

fn run_tiny(workload: &str) -> serde_json::Value {
    let json = temp_file(&format!("{workload}.json"));
    let mut args = TINY.to_vec();
    args.extend(["--workload", workload, "--json", json.to_str().unwrap()]);
    let out = bench(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{workload}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("LIMIT"), "{stdout}");
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).ok();
    records
}

const MAP_NAMES: &[&str] = &[
    "AtomicMap",
    "ReadMostlyMap",
    "ShardedMap",
    "RcuMap",
    "dashmap",
    "papaya",
    "scc",
    "flurry",
    "RwLock<HashMap>",
    "RwLock<HashMap>x64",
    "LIMIT",
    "floor",
];

/// The record of the benchmark's own cost per operation, in every throughput workload.
const HARNESS: &str = "harness";

/// The record of a shared table that grows by stopping every thread, in throughput workloads
/// that start empty.
const STOP_THE_WORLD: &str = "stop-the-world growth";

fn assert_records(records: &serde_json::Value, workloads: &[&str]) {
    let records = records.as_array().expect("a JSON array");
    assert!(!records.is_empty());
    for r in records {
        for field in [
            "map",
            "workload",
            "threads",
            "keys",
            "mops",
            "p50_ns",
            "p99_ns",
            "p999_ns",
            "allocs_per_op",
            "bytes_per_entry",
        ] {
            assert!(r.get(field).is_some(), "record without `{field}`: {r}");
        }
        assert!(workloads.contains(&r["workload"].as_str().unwrap()), "{r}");
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["threads"], 2);
        assert_eq!(r["keys"], 2000);
        assert!(r["mops"].as_f64().unwrap() > 0.0, "{r}");
        if r["map"] == HARNESS {
            // Not a map: it holds nothing, so it has no memory figures.
            continue;
        }
        assert!(
            MAP_NAMES.contains(&r["map"].as_str().unwrap()) || r["map"] == STOP_THE_WORLD,
            "{r}"
        );
        // A u64 -> u64 entry needs 16 bytes; less means the map was measured gone.
        assert!(r["bytes_per_entry"].as_f64().unwrap() >= 16.0, "{r}");
        assert!(
            r["p50_ns"].as_u64().unwrap() <= r["p999_ns"].as_u64().unwrap(),
            "{r}"
        );
    }
    for name in [
        "dashmap",
        "papaya",
        "scc",
        "flurry",
        "RwLock<HashMap>",
        "LIMIT",
    ] {
        assert!(records.iter().any(|r| r["map"] == name), "no {name} record");
    }
    // The growth workload measures memory, which the harness has none of.
    let timed = workloads != ["growth"];
    assert_eq!(records.iter().any(|r| r["map"] == HARNESS), timed);
    assert_eq!(records.iter().any(|r| r["map"] == "floor"), timed);
}

#[test]
fn mixed() {
    assert_records(&run_tiny("mixed"), &["mixed"]);
}

#[test]
fn read_heavy() {
    assert_records(&run_tiny("read-heavy"), &["read-heavy"]);
}

#[test]
fn exchange() {
    assert_records(&run_tiny("exchange"), &["exchange"]);
}

#[test]
fn rapid_grow() {
    let records = run_tiny("rapid-grow");
    assert_records(&records, &["rapid-grow"]);
    // Its two threads share one table that stops them both to grow: it runs only with a core
    // for each.
    if std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        let shared = records
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["map"] == STOP_THE_WORLD)
            .expect("no stop-the-world growth record");
        assert_eq!(shared["status"], "ok", "{shared}");
    }
}

#[test]
fn presized_gives_both_rows() {
    let records = run_tiny("presized");
    assert_records(&records, &["presized", "default-growth"]);
    let rows = records.as_array().unwrap();
    assert!(rows.iter().any(|r| r["workload"] == "presized"));
    assert!(rows.iter().any(|r| r["workload"] == "default-growth"));
}

#[test]
fn growth_samples_memory() {
    let records = run_tiny("growth");
    assert_records(&records, &["growth"]);
    for r in records.as_array().unwrap() {
        let samples = r["growth"].as_array().expect("growth samples");
        assert_eq!(samples.len(), 20, "{r}");
        let last = samples.last().unwrap();
        assert!(last["keys"].as_u64().unwrap() >= 2000, "{r}");
        assert!(last["bytes"].as_i64().unwrap() > 0, "{r}");
    }
}

#[test]
fn zipf() {
    assert_records(&run_tiny("zipf"), &["zipf"]);
}

#[test]
fn string_keys() {
    let records = run_tiny("string-keys");
    assert_records(&records, &["string-keys"]);
    assert!(records
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["key_type"] == "String"));
}

#[test]
fn csv_and_svg_plot_are_written() {
    let csv = temp_file("out.csv");
    let svg = temp_file("out.svg");
    let mut args = TINY.to_vec();
    args.extend(["--maps", "dashmap,LIMIT", "--repeat", "3"]);
    args.extend([
        "--csv",
        csv.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let out = bench(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("map,workload,"));
    assert_eq!(
        lines.len(),
        5,
        "header, dashmap, LIMIT, floor, harness: {text}"
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    std::fs::remove_file(&csv).ok();
    std::fs::remove_file(&svg).ok();
}

#[test]
fn batched_gives_a_row_per_map_and_says_how_it_batches() {
    let json = temp_file("batched.json");
    let mut args = TINY.to_vec();
    args.extend(["--workload", "batched", "--batch-size", "16"]);
    args.extend(["--json", json.to_str().unwrap()]);
    let out = bench(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("16 per batch"), "{stdout}");
    assert!(stdout.contains("pin().get_each"), "{stdout}");
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).ok();
    assert_records(&records, &["batched"]);
    for name in MAP_NAMES.iter().chain(&[HARNESS]) {
        let rows = records.as_array().unwrap();
        assert!(rows.iter().any(|r| r["map"] == *name), "no {name} record");
    }
}

#[test]
fn an_identity_hasher_on_sequential_keys_runs_every_map() {
    let json = temp_file("identity.json");
    let mut args = TINY.to_vec();
    args.extend(["--workload", "read-heavy", "--hasher", "identity"]);
    args.extend([
        "--key-pattern",
        "sequential",
        "--json",
        json.to_str().unwrap(),
    ]);
    let out = bench(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2000 keys (sequential)") && stdout.contains("hasher identity"),
        "{stdout}"
    );
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).ok();
    assert_records(&records, &["read-heavy"]);
    for r in records.as_array().unwrap() {
        assert_eq!(r["hasher"], "identity", "{r}");
        assert_eq!(r["key_pattern"], "sequential", "{r}");
    }
}

#[test]
fn hot_swap_compares_both_cells_on_every_operation() {
    let out = bench(&["--workload", "hot-swap", "--ops", "20000", "--threads", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = stdout
        .split("HotSwap / arc-swap")
        .nth(1)
        .unwrap_or_else(|| panic!("no hot-swap table in:\n{stdout}"));
    for operation in [
        "load ",
        "load_full",
        "version",
        "publish ",
        "publish while loading",
        "load while publishing",
    ] {
        assert!(
            table.contains(operation),
            "no `{operation}` row in:\n{stdout}"
        );
    }
    // Not a map workload: no map table runs.
    assert!(!stdout.contains("LIMIT"), "{stdout}");
}

#[test]
fn bad_arguments_exit_with_2() {
    for args in [
        &["--maps", "nosuchmap"][..],
        &["--workload", "sideways"],
        &["--keys", "0"],
        &["--threads", "0"],
        &["--plot", "chart.pdf"],
        &["--ops", "many"],
        &["--workload", "batched", "--batch-size", "8"],
        &["--workload", "batched", "--batch-size", "128"],
        &["--batch-size", "-1"],
        &["--hasher", "fnv"],
        &["--key-pattern", "shuffled"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_piped_run_prints_a_line_per_map_run_and_no_progress_bar() {
    let out = bench(&["--keys", "1000", "--ops", "5000", "--maps", "scc"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // No progress bar escapes when stderr is a pipe.
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    for round in 1..=3 {
        let line = format!("mixed: scc run {round}/3 done in ");
        assert!(stderr.contains(&line), "no `{line}` in:\n{stderr}");
    }
}

#[test]
fn an_unwritable_output_path_fails_before_the_run() {
    let missing_dir = temp_file("no-such-dir");
    for option in ["--json", "--csv", "--plot"] {
        let path = missing_dir.join("out.svg");
        let started = std::time::Instant::now();
        // A million keys and every map: minutes of work if the run started.
        let out = bench(&[option, path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{option}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot write"), "{option}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{option} ran:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(started.elapsed().as_secs() < 30, "{option}");
    }
}

#[test]
fn snapshot_reports_both_throughputs_and_snapshot_latency() {
    let json = temp_file("snapshot.json");
    let csv = temp_file("snapshot.csv");
    let mut args = TINY.to_vec();
    args.extend(["--workload", "snapshot", "--json", json.to_str().unwrap()]);
    args.extend(["--csv", csv.to_str().unwrap()]);
    let out = bench(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for text in [
        "Mops/s alone",
        "Mops/s w/ snapshots",
        "snapshot p50",
        "snapshot latency",
        "3 threads",
        "not run, no snapshot(): dashmap, papaya, scc, flurry",
    ] {
        assert!(stdout.contains(text), "no `{text}` in:\n{stdout}");
    }
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let records = records.as_array().unwrap();
    let maps: Vec<&str> = records.iter().map(|r| r["map"].as_str().unwrap()).collect();
    assert_eq!(maps, ["AtomicMap", "ReadMostlyMap", "ShardedMap", "RcuMap"]);
    for r in records {
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["workload"], "snapshot", "{r}");
        assert!(r["mops"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["mops_with_snapshots"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["snapshots_taken"].as_u64().unwrap() >= 1, "{r}");
        assert!(
            r["snapshot_p50_ns"].as_u64().unwrap() <= r["snapshot_max_ns"].as_u64().unwrap(),
            "{r}"
        );
        // Prefilled and never removed from: every snapshot holds the whole key space.
        assert_eq!(r["snapshot_entries_min"], 2000, "{r}");
        assert_eq!(r["snapshot_entries_max"], 2000, "{r}");
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The JSON's fields, in its order: the snapshot figures come last.
    assert!(lines[0].ends_with(",snapshot_entries_min,snapshot_entries_max"));
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[1..].iter().all(|l| l.ends_with(",2000,2000")),
        "{text}"
    );
    std::fs::remove_file(&json).ok();
    std::fs::remove_file(&csv).ok();
}

#[test]
fn capture_reports_throughput_with_capture_off_and_on() {
    let json = temp_file("capture.json");
    let mut args = TINY.to_vec();
    args.extend(["--workload", "capture", "--json", json.to_str().unwrap()]);
    let out = bench(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for text in [
        "Mops/s off",
        "Mops/s on",
        "on/off",
        "not run, no change capture: ReadMostlyMap, dashmap, papaya, scc, flurry",
    ] {
        assert!(stdout.contains(text), "no `{text}` in:\n{stdout}");
    }
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let records = records.as_array().unwrap();
    let maps: Vec<&str> = records.iter().map(|r| r["map"].as_str().unwrap()).collect();
    assert_eq!(maps, ["AtomicMap", "ShardedMap", "RcuMap"]);
    for r in records {
        assert_eq!(r["status"], "ok", "{r}");
        assert!(r["mops"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["mops_with_capture"].as_f64().unwrap() > 0.0, "{r}");
        // 20,000 timed operations and as many warm-up ones, half of them inserts.
        assert!(r["events"].as_u64().unwrap() > 10_000, "{r}");
    }
    std::fs::remove_file(&json).ok();
}
