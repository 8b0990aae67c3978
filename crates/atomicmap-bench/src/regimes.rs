//! `--regimes`: the matrix the speed targets are stated in (four regimes x four workloads), run
//! in one invocation, then one summary row per cell: `AtomicMap` against the best peer and
//! against `LIMIT`, and in the oversubscribed regime its p999 against every lock-based peer's,
//! each next to its target.

use std::time::Instant;

use crate::cli::Cli;
use crate::maps::MapId;
use crate::record::Record;
use crate::suite::{available_cores, run_pass, Pass};
use crate::table::{ns, ns_per_op, render, HARNESS};
use crate::workload::{Lookups, Workload, BATCHED, EXCHANGE, MIXED, RAPID_GROW, READ_HEAVY};

/// How many benchmark threads a regime runs.
#[derive(Clone, Copy, Debug)]
enum Threads {
    /// As many as there are cores.
    Cores,
    /// One.
    One,
    /// This many per core.
    PerCore(usize),
}

/// One regime: a key space, a thread count and its workloads.
struct Regime {
    name: &'static str,
    keys: usize,
    threads: Threads,
    workloads: &'static [Workload],
    /// Timed operations per map in each cell of the four workloads.
    ops: usize,
}

impl Regime {
    /// Timed operations per map in the cell of `workload`.
    fn ops(&self, workload: &Workload) -> usize {
        if matches!(workload.lookups, Lookups::Batched(_)) {
            OPS_PER_BATCHED_CELL
        } else {
            self.ops
        }
    }

    fn threads(&self) -> usize {
        match self.threads {
            Threads::Cores => available_cores(),
            Threads::One => 1,
            Threads::PerCore(n) => n * available_cores(),
        }
    }
}

const ONE_MILLION_KEYS: &str = "1M keys";
const IN_CACHE: &str = "10K keys";
const ONE_THREAD: &str = "1 thread";
const OVERSUBSCRIBED: &str = "oversubscribed";

/// The regimes, in the order they run.
const REGIMES: [Regime; 4] = [
    Regime {
        name: ONE_MILLION_KEYS,
        keys: 1_000_000,
        threads: Threads::Cores,
        workloads: &WITH_BATCHED,
        ops: OPS_PER_CELL,
    },
    Regime {
        name: IN_CACHE,
        keys: 10_000,
        threads: Threads::Cores,
        workloads: &WORKLOADS,
        ops: OPS_PER_IN_CACHE_CELL,
    },
    Regime {
        name: ONE_THREAD,
        keys: 1_000_000,
        threads: Threads::One,
        workloads: &WORKLOADS,
        ops: OPS_PER_CELL,
    },
    Regime {
        name: OVERSUBSCRIBED,
        keys: 1_000_000,
        threads: Threads::PerCore(8),
        workloads: &WORKLOADS,
        ops: OPS_PER_CELL,
    },
];

/// The workloads of every regime.
const WORKLOADS: [Workload; 4] = [MIXED, READ_HEAVY, EXCHANGE, RAPID_GROW];

/// The workloads of the regime the batched target is stated in: the four, then batched.
const WITH_BATCHED: [Workload; 5] = [MIXED, READ_HEAVY, EXCHANGE, RAPID_GROW, BATCHED];

/// The peers: other crates' concurrent maps.
const PEERS: [MapId; 4] = [MapId::DashMap, MapId::Papaya, MapId::Scc, MapId::Flurry];

/// The peers whose operations may wait for a lock (dashmap's shard locks, scc's bucket locks,
/// flurry's bin locks on writes): a preempted lock holder stalls them.
const LOCK_BASED_PEERS: [MapId; 3] = [MapId::DashMap, MapId::Scc, MapId::Flurry];

/// Timed operations per map in each cell. Fewer than a plain run's default, so that the 17
/// cells of 6 maps and 3 repeats stay under 10 minutes on 2 cores.
const OPS_PER_CELL: usize = 2_000_000;

/// Timed operations per map in each cell of the in-cache regime. An in-cache operation takes
/// a few nanoseconds, so `OPS_PER_CELL` of them are over in about 10 ms, and thread start-up
/// and scheduling noise move the ratios by a quarter; eight times as many run about 0.1 s per
/// map for the fast maps, and cost the matrix under a minute more.
const OPS_PER_IN_CACHE_CELL: usize = 8 * OPS_PER_CELL;

/// Timed operations per map in the batched cell. A batched lookup takes about as long as an
/// in-cache operation, so `OPS_PER_CELL` of them were over in 20-35 ms, and the cell's ratio
/// to LIMIT came out anywhere from 1.36 to 1.84 in runs of builds whose batched lookup did not
/// differ. As many as an in-cache cell run about 0.2 s per map for `AtomicMap` and the floor.
const OPS_PER_BATCHED_CELL: usize = OPS_PER_IN_CACHE_CELL;

/// What a target asks of `AtomicMap` in a cell.
#[derive(Clone, Copy, Debug)]
enum Goal {
    /// Throughput at least this fraction of `LIMIT`'s.
    VsLimit(f64),
    /// Throughput at least this multiple of the best peer's.
    VsBestPeer(f64),
    /// p999 latency at most this fraction of every lock-based peer's.
    P999VsLockBased(f64),
}

/// One target: a goal for a regime's workload, or for every workload of the regime (`None`).
struct Target {
    regime: &'static str,
    workload: Option<&'static str>,
    goal: Goal,
}

/// The speed targets, each a ratio measured in one invocation with the same hasher for all.
const TARGETS: &[Target] = &[
    Target {
        regime: ONE_MILLION_KEYS,
        workload: Some("read-heavy"),
        goal: Goal::VsLimit(0.9),
    },
    Target {
        regime: ONE_MILLION_KEYS,
        workload: Some("mixed"),
        goal: Goal::VsLimit(0.7),
    },
    Target {
        regime: ONE_MILLION_KEYS,
        workload: Some("exchange"),
        goal: Goal::VsLimit(0.6),
    },
    Target {
        regime: ONE_MILLION_KEYS,
        workload: Some("rapid-grow"),
        goal: Goal::VsLimit(0.6),
    },
    Target {
        regime: ONE_MILLION_KEYS,
        workload: None,
        goal: Goal::VsBestPeer(1.5),
    },
    Target {
        regime: ONE_MILLION_KEYS,
        workload: Some("batched"),
        goal: Goal::VsLimit(1.5),
    },
    Target {
        regime: IN_CACHE,
        workload: Some("read-heavy"),
        goal: Goal::VsLimit(0.75),
    },
    Target {
        regime: IN_CACHE,
        workload: None,
        goal: Goal::VsBestPeer(1.3),
    },
    Target {
        regime: ONE_THREAD,
        workload: None,
        goal: Goal::VsBestPeer(1.1),
    },
    Target {
        regime: ONE_THREAD,
        workload: Some("read-heavy"),
        goal: Goal::VsLimit(0.9),
    },
    Target {
        regime: OVERSUBSCRIBED,
        workload: None,
        goal: Goal::P999VsLockBased(0.1),
    },
    Target {
        regime: OVERSUBSCRIBED,
        workload: None,
        goal: Goal::VsBestPeer(1.5),
    },
];

/// The target of `regime`'s `workload` that `pick` selects, if there is one. A target for a
/// whole regime covers the four workloads every regime runs, not batched.
fn target(regime: &str, workload: &str, pick: fn(Goal) -> Option<f64>) -> Option<f64> {
    let in_every_regime = WORKLOADS.iter().any(|w| w.name == workload);
    TARGETS
        .iter()
        .filter(|t| t.regime == regime)
        .filter(|t| match t.workload {
            Some(w) => w == workload,
            None => in_every_regime,
        })
        .find_map(|t| pick(t.goal))
}

/// Runs the matrix, printing each regime's tables and then the summary; returns all records,
/// each tagged with its regime.
pub fn run(cli: &Cli) -> Vec<Record> {
    let started = Instant::now();
    println!(
        "--regimes: {} regimes x {} workloads (and batched in the {ONE_MILLION_KEYS} regime), \
         {OPS_PER_CELL} timed operations per map and cell ({OPS_PER_IN_CACHE_CELL} in the \
         {IN_CACHE} regime, {OPS_PER_BATCHED_CELL} in batched; fewer than a plain run's \
         default, to keep the matrix under 10 minutes on 2 cores), median of {}",
        REGIMES.len(),
        WORKLOADS.len(),
        cli.repeat
    );
    let maps: Vec<MapId> = [MapId::AtomicMap]
        .into_iter()
        .chain(PEERS)
        .chain([MapId::Limit])
        .collect();
    let mut records = Vec::new();
    for regime in &REGIMES {
        println!("\n=== regime: {} ===", regime.name);
        for workloads in regime
            .workloads
            .chunk_by(|a, b| regime.ops(a) == regime.ops(b))
        {
            let pass = Pass {
                threads: regime.threads(),
                keys: regime.keys,
                ops: regime.ops(&workloads[0]),
                maps: maps.clone(),
                workloads: workloads.iter().map(|&w| cli.configure(w)).collect(),
            };
            records.extend(run_pass(cli, pass).into_iter().map(|mut r| {
                r.regime = Some(regime.name.to_string());
                r
            }));
        }
    }
    println!(
        "\nsummary (the matrix took {:.0}s):\n{}",
        started.elapsed().as_secs_f64(),
        summary(&records)
    );
    records
}

/// `value` against a lower bound (`at_least`) or an upper one.
fn versus(value: Option<f64>, target: Option<f64>, at_least: bool) -> (String, String) {
    let shown = value.map_or("-".to_string(), |v| format!("{v:.2}"));
    let goal = match (value, target) {
        (_, None) => String::new(),
        (None, Some(t)) => format!("{} {t}", if at_least { ">=" } else { "<=" }),
        (Some(v), Some(t)) => {
            let met = if at_least { v >= t } else { v <= t };
            format!(
                "{} {t}: {}",
                if at_least { ">=" } else { "<=" },
                if met { "met" } else { "NOT met" }
            )
        }
    };
    (shown, goal)
}

/// The summary table: one row per cell of the matrix, in the order the cells ran.
fn summary(records: &[Record]) -> String {
    let mut rows = Vec::new();
    let mut floor_rows = Vec::new();
    let mut growing_floor_rows = Vec::new();
    let mut p999_notes = Vec::new();
    for regime in &REGIMES {
        for workload in regime.workloads {
            let cell: Vec<&Record> = records
                .iter()
                .filter(|r| r.regime.as_deref() == Some(regime.name) && r.workload == workload.name)
                .collect();
            let find = |id: MapId| {
                cell.iter()
                    .copied()
                    .find(|r| r.map == id.name() && r.is_ok())
            };
            let mops = |id: MapId| find(id).and_then(|r| r.mops);
            let ours = mops(MapId::AtomicMap);
            let best_peer = PEERS
                .iter()
                .filter_map(|&p| mops(p).map(|m| (p, m)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let limit = mops(MapId::Limit);
            let floor_record = find(MapId::Floor);
            let floor = floor_record.and_then(|r| r.mops);
            let ratio = |theirs: Option<f64>| ours.zip(theirs).map(|(o, t)| o / t);
            let peer_target = target(regime.name, workload.name, |g| match g {
                Goal::VsBestPeer(t) => Some(t),
                _ => None,
            });
            let limit_target = target(regime.name, workload.name, |g| match g {
                Goal::VsLimit(t) => Some(t),
                _ => None,
            });
            let (vs_peer, peer_goal) = versus(ratio(best_peer.map(|p| p.1)), peer_target, true);
            let (vs_limit, limit_goal) = versus(ratio(limit), limit_target, true);
            let floor_ratio = |theirs: Option<f64>| floor.zip(theirs).map(|(f, t)| f / t);
            let (floor_vs_peer, floor_peer_goal) =
                versus(floor_ratio(best_peer.map(|p| p.1)), peer_target, true);
            let (floor_vs_limit, floor_limit_goal) = versus(floor_ratio(limit), limit_target, true);
            let p999_target = target(regime.name, workload.name, |g| match g {
                Goal::P999VsLockBased(t) => Some(t),
                _ => None,
            });
            let lock_based_p999: Vec<(MapId, u64)> = LOCK_BASED_PEERS
                .iter()
                .filter_map(|&p| find(p).and_then(|r| r.p999_ns).map(|v| (p, v)))
                .collect();
            let lowest_lock_based_p999 = lock_based_p999.iter().map(|&(_, v)| v).min();
            let p999_versus = |p999: Option<u64>| match p999_target {
                None => (String::new(), String::new()),
                Some(_) => versus(
                    p999.zip(lowest_lock_based_p999)
                        .map(|(p999, theirs)| p999 as f64 / theirs.max(1) as f64),
                    p999_target,
                    false,
                ),
            };
            let our_p999 = find(MapId::AtomicMap).and_then(|r| r.p999_ns);
            if p999_target.is_some() {
                let theirs: Vec<String> = lock_based_p999
                    .iter()
                    .map(|&(p, p999)| format!("{} {}", p.name(), ns(Some(p999))))
                    .collect();
                p999_notes.push(format!(
                    "{} {}: p999 AtomicMap {}; {}; floor {}",
                    regime.name,
                    workload.name,
                    ns(our_p999),
                    theirs.join(", "),
                    ns(floor_record.and_then(|r| r.p999_ns)),
                ));
            }
            let (p999_ratio, p999_goal) = p999_versus(our_p999);
            let (floor_p999_ratio, floor_p999_goal) =
                p999_versus(floor_record.and_then(|r| r.p999_ns));
            floor_rows.push(vec![
                regime.name.to_string(),
                workload.name.to_string(),
                floor.map_or("-".into(), |m| format!("{m:.2}")),
                ratio(floor).map_or("-".into(), |r| format!("{r:.2}")),
                floor_vs_peer,
                floor_peer_goal,
                floor_vs_limit,
                floor_limit_goal,
                floor_p999_ratio,
                floor_p999_goal,
            ]);
            for id in [MapId::GrowingFloor, MapId::GrowingFloorPlainCopy] {
                let Some(growing) = mops(id) else {
                    continue;
                };
                let (vs_peer, peer_goal) =
                    versus(best_peer.map(|p| growing / p.1), peer_target, true);
                growing_floor_rows.push(vec![
                    regime.name.to_string(),
                    workload.name.to_string(),
                    id.name().to_string(),
                    format!("{growing:.2}"),
                    ratio(Some(growing)).map_or("-".into(), |r| format!("{r:.2}")),
                    vs_peer,
                    peer_goal,
                ]);
            }
            let harness = cell
                .iter()
                .find(|r| r.map == HARNESS && r.is_ok())
                .and_then(|r| ns_per_op(r));
            let limit_ns = find(MapId::Limit).and_then(ns_per_op);
            rows.push(vec![
                regime.name.to_string(),
                workload.name.to_string(),
                ours.map_or("-".into(), |m| format!("{m:.2}")),
                best_peer.map_or("-".into(), |(p, m)| format!("{} {m:.2}", p.name())),
                vs_peer,
                peer_goal,
                limit.map_or("-".into(), |m| format!("{m:.2}")),
                vs_limit,
                limit_goal,
                p999_ratio,
                p999_goal,
                harness.map_or("-".into(), |h| match limit_ns {
                    Some(l) => format!("{h:.2}ns ({:.0}%)", 100.0 * h / l),
                    None => format!("{h:.2}ns"),
                }),
            ]);
        }
    }
    let mut out = render(
        &[
            "regime",
            "workload",
            "AtomicMap Mops/s",
            "best peer",
            "/ best peer",
            "target",
            "LIMIT",
            "/ LIMIT",
            "target",
            "p999 / lock-based",
            "target",
            "harness (% of LIMIT)",
        ],
        &rows,
    );
    out += "p999 / lock-based: AtomicMap's p999 over the lowest p999 of dashmap, scc and flurry; \
            harness: the benchmark's own time per operation per thread\n";
    for note in p999_notes {
        out += &note;
        out.push('\n');
    }
    out +=
        "\nwhat the floor allows (a fixed shared array of AtomicMap's slots: Acquire loads, one \
            CAS per write, no pin, resize or codec; a target the floor misses is beyond every map \
            of this design on this machine):\n";
    out += &render(
        &[
            "regime",
            "workload",
            "floor Mops/s",
            "AtomicMap / floor",
            "floor / best peer",
            "target",
            "floor / LIMIT",
            "target",
            "floor p999 / lock-based",
            "target",
        ],
        &floor_rows,
    );
    if !growing_floor_rows.is_empty() {
        out +=
            "\nwhat a growing floor allows where the map starts empty with one thread (a thread's \
                own table of AtomicMap's slots that doubles at 5/8 full into successors mapped \
                before the timer; the growing floor copies with the CASes a lock-free copy needs, \
                the plain copy as a table one writer at a time owns may):\n";
        out += &render(
            &[
                "regime",
                "workload",
                "row",
                "Mops/s",
                "AtomicMap / row",
                "row / best peer",
                "target",
            ],
            &growing_floor_rows,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(regime: &str, map: MapId, mops: f64, p999_ns: u64) -> Record {
        Record {
            map: map.name().into(),
            workload: "mixed".into(),
            regime: Some(regime.into()),
            threads: 2,
            status: "ok".into(),
            mops: Some(mops),
            p999_ns: Some(p999_ns),
            ..Record::default()
        }
    }

    #[test]
    fn every_regime_and_target_refers_to_the_matrix() {
        for t in TARGETS {
            assert!(REGIMES.iter().any(|r| r.name == t.regime), "{}", t.regime);
            if let Some(w) = t.workload {
                let regime = REGIMES.iter().find(|r| r.name == t.regime).unwrap();
                assert!(regime.workloads.iter().any(|wl| wl.name == w), "{w}");
            }
        }
        assert_eq!(
            target(ONE_MILLION_KEYS, "mixed", |g| match g {
                Goal::VsLimit(t) => Some(t),
                _ => None,
            }),
            Some(0.7)
        );
        let vs_peer = |g| match g {
            Goal::VsBestPeer(t) => Some(t),
            _ => None,
        };
        assert_eq!(target(ONE_MILLION_KEYS, "mixed", vs_peer), Some(1.5));
        assert_eq!(target(ONE_MILLION_KEYS, "batched", vs_peer), None);
    }

    #[test]
    fn the_summary_shows_the_growing_floors_where_they_ran() {
        let in_cell = |map, mops| Record {
            workload: "rapid-grow".into(),
            threads: 1,
            ..record(ONE_THREAD, map, mops, 1_000)
        };
        let records = [
            in_cell(MapId::AtomicMap, 8.0),
            in_cell(MapId::DashMap, 10.0),
            in_cell(MapId::GrowingFloor, 10.0),
            in_cell(MapId::GrowingFloorPlainCopy, 12.5),
        ];
        let text = summary(&records);
        let section: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("what a growing floor allows"))
            .collect();
        let row = |name: &str| {
            section
                .iter()
                .find(|l| l.starts_with(ONE_THREAD) && l.contains(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} row in {text}"))
                .to_string()
        };
        // 8 / 10 of the locked copy, which runs at 10 / 10 of dashmap against the 1.1 target.
        let locked = row("growing floor");
        for cell in ["10.00", "0.80", "1.00", ">= 1.1: NOT met"] {
            assert!(locked.contains(cell), "{cell} missing from {locked}");
        }
        let plain = row("growing floor, plain copy");
        for cell in ["12.50", "0.64", "1.25", ">= 1.1: met"] {
            assert!(plain.contains(cell), "{cell} missing from {plain}");
        }
        assert!(!summary(&records[..2]).contains("what a growing floor allows"));
    }

    #[test]
    fn the_summary_compares_with_the_best_peer_limit_and_lock_based_p999() {
        let records = [
            record(OVERSUBSCRIBED, MapId::AtomicMap, 30.0, 1_000),
            record(OVERSUBSCRIBED, MapId::DashMap, 10.0, 100_000),
            record(OVERSUBSCRIBED, MapId::Scc, 20.0, 5_000),
            record(OVERSUBSCRIBED, MapId::Limit, 60.0, 900),
            record(OVERSUBSCRIBED, MapId::Floor, 45.0, 800),
        ];
        let text = summary(&records);
        let row = text
            .lines()
            .find(|l| l.starts_with(OVERSUBSCRIBED) && l.contains("mixed"))
            .unwrap();
        // 30 / 20 against scc, 30 / 60 against LIMIT, 1000 / 5000 against scc's p999.
        for cell in [
            "scc 20.00",
            "1.50",
            ">= 1.5: met",
            "0.50",
            "0.20",
            "<= 0.1: NOT met",
        ] {
            assert!(row.contains(cell), "{cell} missing from {row}");
        }
        assert!(
            text.contains("p999 AtomicMap 1000ns; dashmap 100.0µs, scc 5000ns; floor 800ns"),
            "{text}"
        );
        // The floor's row: 30 / 45 of it, 45 / 20 against scc, 45 / 60 against LIMIT, and its
        // p999 800 / 5000 against scc's.
        let floor_row = text
            .lines()
            .skip_while(|l| !l.starts_with("what the floor allows"))
            .find(|l| l.starts_with(OVERSUBSCRIBED) && l.contains("mixed"))
            .unwrap();
        for cell in [
            "45.00",
            "0.67",
            "2.25",
            ">= 1.5: met",
            "0.75",
            "0.16",
            "<= 0.1: NOT met",
        ] {
            assert!(floor_row.contains(cell), "{cell} missing from {floor_row}");
        }
    }
}
