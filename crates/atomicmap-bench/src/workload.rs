//! Workloads as data: an operation mix, a key distribution and a prefill policy. Every map
//! runs the same pre-generated operation streams; nothing here knows which map it feeds.

use crate::keys::{mix64, KeyPattern};

/// One kind of operation in a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    /// `get`
    Read,
    /// `insert`, overwriting when the key is present
    Insert,
    /// `remove`
    Remove,
    /// add one to the value in place
    Update,
}

/// One operation: what to do and the index of the key in the key space.
#[derive(Clone, Copy, Debug)]
pub struct Op {
    /// The operation.
    pub kind: OpKind,
    /// Index into the key table.
    pub key: u32,
}

/// Percentages of each operation; they add up to 100.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Percent reads.
    pub read: u8,
    /// Percent inserts.
    pub insert: u8,
    /// Percent removes.
    pub remove: u8,
    /// Percent in-place updates.
    pub update: u8,
}

impl Mix {
    const fn new(read: u8, insert: u8, remove: u8, update: u8) -> Self {
        assert!(read as u32 + insert as u32 + remove as u32 + update as u32 == 100);
        Mix {
            read,
            insert,
            remove,
            update,
        }
    }

    fn pick(&self, roll: u64) -> OpKind {
        let r = (roll % 100) as u8;
        let shares = [
            (self.read, OpKind::Read),
            (self.insert, OpKind::Insert),
            (self.remove, OpKind::Remove),
            (self.update, OpKind::Update),
        ];
        let mut below = 0;
        for (share, kind) in shares {
            below += share;
            if r < below {
                return kind;
            }
        }
        unreachable!("a mix adds up to 100")
    }
}

/// How keys are drawn from the key space.
#[derive(Clone, Copy, Debug)]
pub enum KeyDist {
    /// Uniformly at random, with repetition.
    Uniform,
    /// Zipf-distributed ranks: key 0 is the hottest.
    Zipf {
        /// The skew; 0.99 is the YCSB default.
        exponent: f64,
    },
    /// Every key exactly once, in a shuffled order split between the threads (all ops are
    /// inserts of new keys).
    EachOnce,
}

/// Whether the map holds the whole key space before timing starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefill {
    /// Insert every key first (not timed).
    Full,
    /// Start from an empty map.
    Empty,
}

/// The type of the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `u64`
    U64,
    /// `String` of 16 to 32 bytes
    Text,
}

/// How the operations of a stream reach the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookups {
    /// One operation at a time.
    Single,
    /// The stream (all reads, or all inserts) cut into batches of this many keys, each handed
    /// to the map in one call: `AtomicMap` looks a batch up with its batched lookup and inserts
    /// one with its grouped insert, every other map takes one key after another.
    Batched(usize),
}

/// Batch sizes the batched workload accepts: large enough to overlap the misses, small
/// enough to stay within what a request batch is.
pub const BATCH_SIZES: std::ops::RangeInclusive<usize> = 16..=64;
/// The batched workload's batch size unless `--batch-size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// What the run reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Throughput, latency and allocations of the timed operations.
    Throughput,
    /// Live heap bytes while the map grows from empty, sampled `samples` times.
    Growth {
        /// How many samples between empty and full.
        samples: usize,
    },
    /// The workers' throughput alone and while one more thread takes snapshots back to back,
    /// and the snapshots' latency and sizes (only maps that have `snapshot()`).
    Snapshots,
    /// The workers' throughput with change capture off, then on with one subscriber draining
    /// every change (only maps with change capture).
    Capture,
}

/// One workload: everything needed to generate its operations and run them.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// The name in the table, JSON and CSV.
    pub name: &'static str,
    /// The operation mix.
    pub mix: Mix,
    /// The key distribution.
    pub dist: KeyDist,
    /// The prefill policy.
    pub prefill: Prefill,
    /// Whether the map is built with `with_capacity(keys)`.
    pub presized: bool,
    /// The key type.
    pub key_type: KeyType,
    /// How key number `i` is made.
    pub key_pattern: KeyPattern,
    /// Whether reads go one at a time or in batches.
    pub lookups: Lookups,
    /// What to report.
    pub measure: Measure,
}

const THROUGHPUT: Workload = Workload {
    name: "mixed",
    mix: Mix::new(50, 50, 0, 0),
    dist: KeyDist::Uniform,
    prefill: Prefill::Full,
    presized: false,
    key_type: KeyType::U64,
    key_pattern: KeyPattern::Mixed,
    lookups: Lookups::Single,
    measure: Measure::Throughput,
};

/// 50% reads, 50% insert-or-overwrite over a prefilled key space (the default workload).
pub const MIXED: Workload = THROUGHPUT;
/// 98% reads, 1% inserts, 1% removes.
pub const READ_HEAVY: Workload = Workload {
    name: "read-heavy",
    mix: Mix::new(98, 1, 1, 0),
    ..THROUGHPUT
};
/// 10% reads, 40% inserts, 40% removes, 10% updates.
pub const EXCHANGE: Workload = Workload {
    name: "exchange",
    mix: Mix::new(10, 40, 40, 10),
    ..THROUGHPUT
};
/// 5% reads, 80% inserts, 5% removes, 10% updates, starting empty.
pub const RAPID_GROW: Workload = Workload {
    name: "rapid-grow",
    mix: Mix::new(5, 80, 5, 10),
    prefill: Prefill::Empty,
    ..THROUGHPUT
};
/// The keys of [`READ_HEAVY`], all read, in batches of [`DEFAULT_BATCH_SIZE`]. With every
/// operation a read, the generator draws exactly read-heavy's key sequence for the same seed
/// and threads (each operation draws its kind, then its key).
pub const BATCHED: Workload = Workload {
    name: "batched",
    mix: Mix::new(100, 0, 0, 0),
    lookups: Lookups::Batched(DEFAULT_BATCH_SIZE),
    ..THROUGHPUT
};

impl Workload {
    /// This workload with keys made by `pattern`.
    pub fn with_key_pattern(self, pattern: KeyPattern) -> Workload {
        Workload {
            key_pattern: pattern,
            ..self
        }
    }

    /// This workload with batches of `size` keys, if it batches its reads.
    pub fn with_batch_size(self, size: usize) -> Workload {
        match self.lookups {
            Lookups::Batched(_) => Workload {
                lookups: Lookups::Batched(size),
                ..self
            },
            Lookups::Single => self,
        }
    }
}

/// Every key inserted once into a map built with `with_capacity(keys)`.
pub const PRESIZED: Workload = Workload {
    name: "presized",
    mix: Mix::new(0, 100, 0, 0),
    dist: KeyDist::EachOnce,
    prefill: Prefill::Empty,
    presized: true,
    ..THROUGHPUT
};
/// The inserts of [`PRESIZED`] in batches of [`DEFAULT_BATCH_SIZE`]: what loading a map in bulk
/// (`extend`, `collect`) costs.
pub const BATCHED_INSERT: Workload = Workload {
    name: "batched-insert",
    lookups: Lookups::Batched(DEFAULT_BATCH_SIZE),
    ..PRESIZED
};
/// The same inserts as [`PRESIZED`] into a map that grows by itself.
pub const DEFAULT_GROWTH: Workload = Workload {
    name: "default-growth",
    presized: false,
    ..PRESIZED
};
/// Live heap bytes from empty to `keys` entries, sampled 20 times (every 50k for 1M keys).
pub const GROWTH: Workload = Workload {
    name: "growth",
    measure: Measure::Growth { samples: 20 },
    ..DEFAULT_GROWTH
};
/// The mixed workload with Zipf(0.99) keys: a few hot keys take most operations.
pub const ZIPF: Workload = Workload {
    name: "zipf",
    dist: KeyDist::Zipf { exponent: 0.99 },
    ..THROUGHPUT
};
/// The mixed workload with `String` keys of 16 to 32 bytes.
pub const STRING_KEYS: Workload = Workload {
    name: "string-keys",
    key_type: KeyType::Text,
    ..THROUGHPUT
};

/// The mixed workload run twice on one map: alone, then while another thread takes snapshots.
pub const SNAPSHOT: Workload = Workload {
    name: "snapshot",
    measure: Measure::Snapshots,
    ..THROUGHPUT
};

/// The mixed workload with change capture off, then on with one draining subscriber.
pub const CAPTURE: Workload = Workload {
    name: "capture",
    measure: Measure::Capture,
    ..THROUGHPUT
};

/// SplitMix64: a tiny, fast, seedable generator, good enough to draw operations.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)` (n > 0), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Zipf sampler over ranks `0..n` by inversion of a precomputed CDF (n doubles of memory,
/// one binary search per draw).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// P(rank = r) proportional to `1 / (r + 1)^exponent`.
    pub fn new(n: usize, exponent: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for r in 0..n {
            total += 1.0 / ((r + 1) as f64).powf(exponent);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    /// One rank.
    pub fn sample(&self, rng: &mut SplitMix64) -> u32 {
        let u = rng.next_f64();
        let r = self.cdf.partition_point(|&c| c < u);
        r.min(self.cdf.len() - 1) as u32
    }
}

/// The operation streams of one run, one per thread, generated before anything is timed.
pub struct Streams {
    /// Timed operations, per thread.
    pub timed: Vec<Vec<Op>>,
    /// Untimed warm-up operations, per thread.
    pub warmup: Vec<Vec<Op>>,
}

/// Operations each thread runs untimed before the timed region.
fn warmup_len(ops_per_thread: usize) -> usize {
    (ops_per_thread / 10).min(100_000)
}

/// Generate the streams of `workload` for `threads` threads over `keys` keys: `ops` timed
/// operations in total (ignored by [`KeyDist::EachOnce`], which inserts each key once).
pub fn generate(
    workload: &Workload,
    threads: usize,
    keys: usize,
    ops: usize,
    seed: u64,
) -> Streams {
    let keys_u32 = keys as u32;
    if let KeyDist::EachOnce = workload.dist {
        let mut order: Vec<u32> = (0..keys_u32).collect();
        let mut rng = SplitMix64::new(seed);
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let per = keys.div_ceil(threads.max(1)).max(1);
        let mut timed: Vec<Vec<Op>> = order
            .chunks(per)
            .map(|c| {
                c.iter()
                    .map(|&key| Op {
                        kind: OpKind::Insert,
                        key,
                    })
                    .collect()
            })
            .collect();
        timed.resize_with(threads, Vec::new);
        // Inserting new keys cannot be warmed up without changing what is measured.
        return Streams {
            timed,
            warmup: vec![Vec::new(); threads],
        };
    }
    let zipf = match workload.dist {
        KeyDist::Zipf { exponent } => Some(Zipf::new(keys, exponent)),
        _ => None,
    };
    let per_thread = ops / threads.max(1);
    let stream = |salt: u64, t: usize, len: usize| -> Vec<Op> {
        let mut rng = SplitMix64::new(mix64(seed ^ salt) ^ mix64(t as u64 + 1));
        (0..len)
            .map(|_| {
                let kind = workload.mix.pick(rng.next_u64());
                let key = match &zipf {
                    Some(z) => z.sample(&mut rng),
                    None => rng.below(keys as u64) as u32,
                };
                Op { kind, key }
            })
            .collect()
    };
    Streams {
        timed: (0..threads).map(|t| stream(1, t, per_thread)).collect(),
        warmup: (0..threads)
            .map(|t| stream(2, t, warmup_len(per_thread)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_proportions_hold() {
        let s = generate(&EXCHANGE, 2, 1000, 100_000, 7);
        let all: Vec<&Op> = s.timed.iter().flatten().collect();
        assert_eq!(all.len(), 100_000);
        let share = |k| all.iter().filter(|o| o.kind == k).count() as f64 / all.len() as f64;
        assert!((share(OpKind::Read) - 0.10).abs() < 0.01);
        assert!((share(OpKind::Insert) - 0.40).abs() < 0.01);
        assert!((share(OpKind::Remove) - 0.40).abs() < 0.01);
        assert!((share(OpKind::Update) - 0.10).abs() < 0.01);
    }

    #[test]
    fn each_once_covers_every_key_once() {
        let s = generate(&PRESIZED, 3, 1000, 0, 1);
        let mut keys: Vec<u32> = s.timed.iter().flatten().map(|o| o.key).collect();
        keys.sort_unstable();
        assert_eq!(keys, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn zipf_is_skewed_towards_rank_zero() {
        let z = Zipf::new(1000, 0.99);
        let mut rng = SplitMix64::new(3);
        let hits = (0..10_000).filter(|_| z.sample(&mut rng) == 0).count();
        // P(0) = 1 / H(1000, 0.99), about 0.13.
        assert!((1000..1700).contains(&hits), "{hits}");
    }

    #[test]
    fn batched_reads_the_keys_of_read_heavy() {
        let read_heavy = generate(&READ_HEAVY, 2, 1000, 10_000, 9);
        let batched = generate(&BATCHED, 2, 1000, 10_000, 9);
        for (a, b) in read_heavy.timed.iter().zip(&batched.timed) {
            let keys = |ops: &Vec<Op>| ops.iter().map(|o| o.key).collect::<Vec<_>>();
            assert_eq!(keys(a), keys(b));
            assert!(b.iter().all(|o| o.kind == OpKind::Read));
        }
    }

    #[test]
    fn streams_are_reproducible() {
        let a = generate(&MIXED, 2, 100, 1000, 5);
        let b = generate(&MIXED, 2, 100, 1000, 5);
        let keys = |s: &Streams| s.timed[1].iter().map(|o| o.key).collect::<Vec<_>>();
        assert_eq!(keys(&a), keys(&b));
    }
}
