//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::hasher::HasherKind;
use crate::keys::KeyPattern;
use crate::maps::MapId;
use crate::workload::{self, Workload, BATCH_SIZES, DEFAULT_BATCH_SIZE};

/// Side-by-side throughput, latency and memory of atomicmap's maps and their peers.
#[derive(Parser, Debug)]
#[command(
    name = "atomicmap-bench",
    version,
    after_help = "\
With no arguments: the mixed workload (1,000,000 u64 keys prefilled, 50% reads / 50% \
insert-or-overwrite, threads = available cores) for every map, then LIMIT: each thread \
running the same operations on its own private std HashMap, the ceiling no shared map can pass.

How it measures: operation streams are generated from --seed before anything is timed; each \
map first passes a correctness check against std HashMap (a map that fails is reported, not \
timed), is prefilled, warmed up, then timed. Throughput is all operations divided by the \
wall time from the first thread's start to the last one's end. Latency: every 128th operation is timed with a pair of Instant::now() \
into an HDR histogram; the timer's own cost is measured and printed (it is included in the \
percentiles, and amortised over 128 operations it adds under 5% even to a 15 ns operation). \
Under each throughput table, the harness row: the same loop on a map whose operations \
only black_box their key, i.e. what the benchmark itself costs per operation, in ns and as a \
share of LIMIT's time per operation; and the floor row: AtomicMap's slots in one fixed shared \
array with Acquire loads and one CAS per write, no pin, resize or codec, the least work a map \
of AtomicMap's design can do, with AtomicMap's speed as a share of it. allocs/op and B/op come from a counting global allocator; B/entry is live heap after prefill \
divided by len; peak RSS is the process-wide VmHWM, reset before each map."
)]
pub struct Cli {
    /// Workloads to run, comma-separated, or `all`.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mixed")]
    pub workload: Vec<WorkloadArg>,

    /// Benchmark threads [default: available cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Size of the key space (and of the prefill).
    #[arg(long, default_value_t = 1_000_000, value_parser = parse_keys)]
    pub keys: usize,

    /// Timed operations per map, split between the threads (presized, default-growth and
    /// growth insert every key once instead). A throughput run stops at the first batch
    /// boundary after 3 s and reports the operations it ran.
    #[arg(long, default_value_t = 4_000_000, value_parser = parse_positive)]
    pub ops: usize,

    /// Maps to run, comma-separated names as in the table (case-insensitive) [default: all].
    #[arg(long, value_delimiter = ',', value_parser = parse_map, help = maps_help())]
    pub maps: Vec<MapId>,

    /// Seed of the operation streams.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Run each map this many times and report the run with the median throughput. The runs
    /// go in rounds over all maps, so a noisy stretch of the machine hits every map alike.
    #[arg(long, default_value_t = 3, value_parser = parse_positive)]
    pub repeat: usize,

    /// The hasher every map uses.
    #[arg(long, value_enum, default_value = "foldhash")]
    pub hasher: HasherKind,

    /// How key number i is made: mixed (i through a 64-bit mix: scattered ids) or sequential
    /// (i itself: auto-increment ids, what shows an identity hasher's clusters).
    #[arg(long, value_enum, default_value = "mixed")]
    pub key_pattern: KeyPattern,

    /// Keys per batch of the batched workload.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE, value_parser = parse_batch_size)]
    pub batch_size: usize,

    /// Also write the results as a JSON array of records to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Also write the results as CSV to this file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Run the regime matrix instead: 1M keys, 10K keys, 1 thread and oversubscribed (8
    /// threads per core) x mixed, read-heavy, exchange and rapid-grow, plus batched at 1M keys,
    /// on AtomicMap, the peers and LIMIT, then a summary of each cell against its target. Sets its own keys, threads,
    /// ops, workloads and maps (--keys, --threads, --ops, --workload and --maps are ignored);
    /// takes under 10 minutes on 2 cores.
    #[arg(long)]
    pub regimes: bool,

    /// Draw throughput per map (or memory against keys for `growth`) to FILE.svg or FILE.png.
    /// Text needs a TrueType font: DejaVu Sans or Liberation Sans where distributions put them,
    /// or the file named by ATOMICMAP_BENCH_FONT.
    #[arg(long, value_name = "FILE", value_parser = parse_plot_path)]
    pub plot: Option<PathBuf>,
}

/// A `--workload` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorkloadArg {
    /// 50% reads, 50% insert-or-overwrite, prefilled (the default).
    Mixed,
    /// 98% reads, 1% inserts, 1% removes.
    ReadHeavy,
    /// 10% reads, 40% inserts, 40% removes, 10% updates.
    Exchange,
    /// 5% reads, 80% inserts, 5% removes, 10% updates, from empty.
    RapidGrow,
    /// Every key inserted once, with and without with_capacity (two rows per map).
    Presized,
    /// Live heap from empty to --keys entries, sampled every keys/20.
    Growth,
    /// The mixed workload with Zipf(0.99) keys.
    Zipf,
    /// The mixed workload with String keys of 16-32 bytes.
    StringKeys,
    /// The mixed workload alone, then while one more thread takes snapshots back to back:
    /// throughput both ways and snapshot latency (only maps with snapshot()).
    Snapshot,
    /// The mixed workload with change capture off, then on with one subscriber draining every
    /// change into a HashMap (only maps with change capture).
    Capture,
    /// read-heavy's keys, all read, in batches of --batch-size: AtomicMap's batched lookup
    /// against one get per key on every other map.
    Batched,
    /// presized's inserts in batches of --batch-size: AtomicMap's grouped insert (extend)
    /// against one insert per key on every other map.
    BatchedInsert,
    /// Not a map workload: atomicmap's HotSwap against arc-swap's ArcSwap on the same threads
    /// (load and read a field, load_full, the version, publish alone and against readers).
    HotSwap,
    /// Every workload above.
    All,
}

impl WorkloadArg {
    /// The workloads this value stands for.
    pub fn workloads(self) -> Vec<Workload> {
        match self {
            WorkloadArg::Mixed => vec![workload::MIXED],
            WorkloadArg::ReadHeavy => vec![workload::READ_HEAVY],
            WorkloadArg::Exchange => vec![workload::EXCHANGE],
            WorkloadArg::RapidGrow => vec![workload::RAPID_GROW],
            WorkloadArg::Presized => vec![workload::PRESIZED, workload::DEFAULT_GROWTH],
            WorkloadArg::Growth => vec![workload::GROWTH],
            WorkloadArg::Zipf => vec![workload::ZIPF],
            WorkloadArg::StringKeys => vec![workload::STRING_KEYS],
            WorkloadArg::Snapshot => vec![workload::SNAPSHOT],
            WorkloadArg::Capture => vec![workload::CAPTURE],
            WorkloadArg::Batched => vec![workload::BATCHED],
            WorkloadArg::BatchedInsert => vec![workload::BATCHED_INSERT],
            WorkloadArg::HotSwap => Vec::new(),
            WorkloadArg::All => [
                WorkloadArg::Mixed,
                WorkloadArg::ReadHeavy,
                WorkloadArg::Exchange,
                WorkloadArg::RapidGrow,
                WorkloadArg::Presized,
                WorkloadArg::Growth,
                WorkloadArg::Zipf,
                WorkloadArg::StringKeys,
                WorkloadArg::Snapshot,
                WorkloadArg::Capture,
                WorkloadArg::Batched,
                WorkloadArg::BatchedInsert,
            ]
            .into_iter()
            .flat_map(WorkloadArg::workloads)
            .collect(),
        }
    }
}

impl Cli {
    /// The map workloads the command line asks for, with its key pattern and batch size.
    pub fn workloads(&self) -> Vec<Workload> {
        self.workload
            .iter()
            .flat_map(|w| w.workloads())
            .map(|w| self.configure(w))
            .collect()
    }

    /// `workload` with the command line's key pattern and batch size.
    pub fn configure(&self, workload: Workload) -> Workload {
        workload
            .with_key_pattern(self.key_pattern)
            .with_batch_size(self.batch_size)
    }

    /// Whether the HotSwap-against-arc-swap comparison is asked for (`all` includes it).
    pub fn hot_swap(&self) -> bool {
        self.workload
            .iter()
            .any(|w| matches!(w, WorkloadArg::HotSwap | WorkloadArg::All))
    }
}

fn parse_batch_size(s: &str) -> Result<usize, String> {
    let n = parse_positive(s)?;
    if !BATCH_SIZES.contains(&n) {
        return Err(format!(
            "a batch holds {} to {} keys",
            BATCH_SIZES.start(),
            BATCH_SIZES.end()
        ));
    }
    Ok(n)
}

/// The help of `--maps`: what it takes, and every map's name.
fn maps_help() -> String {
    let names: Vec<&str> = MapId::ALL.iter().map(|m| m.name()).collect();
    format!(
        "Maps to run, comma-separated, case-insensitive [default: all]: {}",
        names.join(", ")
    )
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.replace('_', "").parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_keys(s: &str) -> Result<usize, String> {
    let n = parse_positive(s)?;
    if n > u32::MAX as usize {
        return Err(format!("at most {} keys", u32::MAX));
    }
    Ok(n)
}

fn parse_map(s: &str) -> Result<MapId, String> {
    MapId::from_name(s).ok_or_else(|| {
        let known: Vec<&str> = MapId::ALL.iter().map(|m| m.name()).collect();
        format!("unknown map `{s}`; known maps: {}", known.join(", "))
    })
}

fn parse_plot_path(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg" | "png") => Ok(path),
        _ => Err("the plot file must end in .svg or .png".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_mixed_workload() {
        let cli = Cli::try_parse_from(["atomicmap-bench"]).unwrap();
        assert_eq!(cli.workload, vec![WorkloadArg::Mixed]);
        assert_eq!(cli.keys, 1_000_000);
        assert!(cli.maps.is_empty());
    }

    #[test]
    fn bad_arguments_are_rejected() {
        for args in [
            &["x", "--maps", "nope"][..],
            &["x", "--keys", "0"],
            &["x", "--threads", "0"],
            &["x", "--plot", "out.pdf"],
            &["x", "--workload", "sideways"],
            &["x", "--batch-size", "15"],
            &["x", "--batch-size", "65"],
            &["x", "--batch-size", "lots"],
            &["x", "--hasher", "md5"],
            &["x", "--key-pattern", "random"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn batch_size_and_key_pattern_reach_the_workloads() {
        let cli = Cli::try_parse_from([
            "x",
            "--workload",
            "batched,read-heavy",
            "--batch-size",
            "64",
            "--key-pattern",
            "sequential",
            "--hasher",
            "identity",
        ])
        .unwrap();
        let workloads = cli.workloads();
        assert_eq!(workloads[0].lookups, workload::Lookups::Batched(64));
        assert_eq!(workloads[1].lookups, workload::Lookups::Single);
        assert!(workloads
            .iter()
            .all(|w| w.key_pattern == KeyPattern::Sequential));
        assert_eq!(cli.hasher, HasherKind::Identity);
        assert!(!cli.hot_swap());
    }

    #[test]
    fn hot_swap_is_not_a_map_workload() {
        let cli = Cli::try_parse_from(["x", "--workload", "hot-swap"]).unwrap();
        assert!(cli.hot_swap());
        assert!(cli.workloads().is_empty());
        let all = Cli::try_parse_from(["x", "--workload", "all"]).unwrap();
        assert!(all.hot_swap());
        assert!(all.workloads().iter().any(|w| w.name == "batched"));
    }

    #[test]
    fn help_lists_every_map() {
        let help = <Cli as clap::CommandFactory>::command()
            .render_help()
            .to_string();
        for map in MapId::ALL {
            assert!(
                help.contains(map.name()),
                "{} missing from\n{help}",
                map.name()
            );
        }
    }

    #[test]
    fn map_names_match_case_insensitively() {
        let cli = Cli::try_parse_from(["x", "--maps", "DashMap,limit,RwLock<HashMap>x64"]).unwrap();
        assert_eq!(
            cli.maps,
            vec![MapId::DashMap, MapId::Limit, MapId::RwLockX64]
        );
    }
}
