//! What a denser table's layout costs, in bare shared slot arrays: the first step of the plan
//! in `docs/dense-table.md`. Run with `cargo run --release -p atomicmap-bench --example
//! dense_layouts`.
//!
//! Three layouts of 16-byte atomic slots, each filled with 1M keys at 0.48, 0.70 and 0.875
//! full, one thread:
//! * **linear**: `AtomicMap`'s probe, from a slot home to the first `EMPTY`;
//! * **tag bytes**: one `AtomicU8` tag per slot, set with a plain store, read a byte at a time;
//! * **tag words**: eight tags per `AtomicU64`, set with `fetch_or`, read two words per group.
//!
//! With tags, a probe walks groups of 16 slots and a miss ends at the first group with a free
//! tag. Every layout takes its home by multiply-shift, so that only the layout differs. No
//! resize, reclamation or pin: these are floors for each layout, not maps.

mod support;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

use support::{key, median, nanos_per};

const KEYS: usize = 1_000_000;
const ROUNDS: usize = 5;
const GROUP: usize = 16;
const LOW_BYTES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

#[derive(Default)]
struct Slot {
    key: AtomicU64,
    value: AtomicU64,
}

trait Layout {
    fn insert(&self, hash: u64, key: u64, value: u64);
    fn get(&self, hash: u64, key: u64) -> u64;
}

/// Index in `0..len` from the hash's high bits, without a power-of-two mask.
fn home(hash: u64, len: usize) -> usize {
    ((u128::from(hash) * len as u128) >> 64) as usize
}

/// The probe's next index: a compare, not a division, since the length is no power of two.
fn next(index: usize, len: usize) -> usize {
    if index + 1 == len {
        0
    } else {
        index + 1
    }
}

/// A tag never equal to a free tag (0): the hash's low 7 bits, the high bit set. The home comes
/// from the high bits, so the tag tells apart keys of the same group.
fn tag_of(hash: u64) -> u8 {
    (hash as u8 & 0x7f) | 0x80
}

fn slots(len: usize) -> Vec<Slot> {
    (0..len).map(|_| Slot::default()).collect()
}

struct Linear {
    slots: Vec<Slot>,
}

impl Layout for Linear {
    #[inline(never)]
    fn insert(&self, hash: u64, key: u64, value: u64) {
        let mut index = home(hash, self.slots.len());
        loop {
            let slot = &self.slots[index];
            match slot.key.load(Ordering::Acquire) {
                present if present == key => return,
                0 => {
                    if slot
                        .key
                        .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        let _ = slot.value.compare_exchange(
                            0,
                            value,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        );
                        return;
                    }
                }
                _ => index = next(index, self.slots.len()),
            }
        }
    }

    #[inline(never)]
    fn get(&self, hash: u64, key: u64) -> u64 {
        let mut index = home(hash, self.slots.len());
        loop {
            let slot = &self.slots[index];
            match slot.key.load(Ordering::Acquire) {
                present if present == key => return slot.value.load(Ordering::Acquire),
                0 => return 0,
                _ => index = next(index, self.slots.len()),
            }
        }
    }
}

/// The bits of one group's scan: which slots hold the tag, which are free.
#[derive(Default)]
struct Scan {
    matches: u32,
    free: u32,
}

/// How a tag layout stores its tags: the only part the two tag layouts do differently.
trait Tags {
    fn scan(&self, group: usize, tag: u8) -> Scan;
    fn set(&self, index: usize, tag: u8);
}

/// Slots in groups of [`GROUP`], with a tag per slot kept by `T`.
struct Tagged<T> {
    slots: Vec<Slot>,
    tags: T,
}

/// The positions of the set bits of `bits`, lowest first.
fn ones(mut bits: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (bits != 0).then(|| {
            let bit = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            bit
        })
    })
}

struct TagBytes(Vec<AtomicU8>);

impl Tags for TagBytes {
    #[inline(always)]
    fn scan(&self, group: usize, tag: u8) -> Scan {
        let mut scan = Scan::default();
        for (bit, byte) in self.0[group * GROUP..][..GROUP].iter().enumerate() {
            let byte = byte.load(Ordering::Acquire);
            scan.matches |= u32::from(byte == tag) << bit;
            scan.free |= u32::from(byte == 0) << bit;
        }
        scan
    }

    fn set(&self, index: usize, tag: u8) {
        self.0[index].store(tag, Ordering::Release);
    }
}

struct TagWords(Vec<AtomicU64>);

impl Tags for TagWords {
    #[inline(always)]
    fn scan(&self, group: usize, tag: u8) -> Scan {
        let mut scan = Scan::default();
        for half in 0..2 {
            let word = self.0[group * 2 + half].load(Ordering::Acquire);
            let differs = word ^ (LOW_BYTES * u64::from(tag));
            // Zero bytes of `differs` are the matches; a byte above a true match may be flagged
            // too, and the key comparison turns it down.
            let matching = differs.wrapping_sub(LOW_BYTES) & !differs & HIGH_BITS;
            scan.matches |= u32::from(high_bits_to_mask(matching)) << (8 * half);
            scan.free |= u32::from(high_bits_to_mask(!word & HIGH_BITS)) << (8 * half);
        }
        scan
    }

    fn set(&self, index: usize, tag: u8) {
        self.0[index / 8].fetch_or(u64::from(tag) << (8 * (index % 8)), Ordering::AcqRel);
    }
}

/// Gathers the high bit of each byte into one bit per byte, byte 0 lowest.
fn high_bits_to_mask(high_bits: u64) -> u8 {
    ((high_bits >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

impl<T: Tags> Layout for Tagged<T> {
    #[inline(never)]
    fn insert(&self, hash: u64, key: u64, value: u64) {
        let slots = &self.slots;
        let groups = slots.len() / GROUP;
        let tag = tag_of(hash);
        let mut group = home(hash, groups);
        loop {
            let Scan { matches, mut free } = self.tags.scan(group, tag);
            if ones(matches)
                .any(|bit| slots[group * GROUP + bit].key.load(Ordering::Acquire) == key)
            {
                return;
            }
            while free != 0 {
                let index = group * GROUP + free.trailing_zeros() as usize;
                match slots[index]
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        self.tags.set(index, tag);
                        let _ = slots[index].value.compare_exchange(
                            0,
                            value,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        );
                        return;
                    }
                    Err(present) if present == key => return,
                    Err(_) => free &= free - 1,
                }
            }
            group = next(group, groups);
        }
    }

    #[inline(never)]
    fn get(&self, hash: u64, key: u64) -> u64 {
        let slots = &self.slots;
        let groups = slots.len() / GROUP;
        let tag = tag_of(hash);
        let mut group = home(hash, groups);
        loop {
            let Scan { matches, free } = self.tags.scan(group, tag);
            for bit in ones(matches) {
                let slot = &slots[group * GROUP + bit];
                if slot.key.load(Ordering::Acquire) == key {
                    return slot.value.load(Ordering::Acquire);
                }
            }
            if free != 0 {
                return 0;
            }
            group = next(group, groups);
        }
    }
}

fn build(layout: &str, capacity: usize) -> Box<dyn Layout> {
    match layout {
        "linear" => Box::new(Linear {
            slots: slots(capacity),
        }),
        "tag bytes" => Box::new(Tagged {
            slots: slots(capacity),
            tags: TagBytes((0..capacity).map(|_| AtomicU8::new(0)).collect()),
        }),
        _ => Box::new(Tagged {
            slots: slots(capacity),
            tags: TagWords((0..capacity / 8).map(|_| AtomicU64::new(0)).collect()),
        }),
    }
}

/// Looks up every key of `keys`: ns per lookup, and the sum of the values found (so that no
/// lookup can be optimised away).
fn time_gets(table: &dyn Layout, hasher: &impl BuildHasher, keys: &[u64]) -> (f64, u64) {
    let started = Instant::now();
    let found = keys.iter().fold(0u64, |sum, &key| {
        sum.wrapping_add(table.get(hasher.hash_one(key), key))
    });
    (nanos_per(started, keys.len()), std::hint::black_box(found))
}

fn main() {
    let hasher = foldhash::fast::FixedState::with_seed(7);
    let keys: Vec<u64> = (0..KEYS as u64).map(key).collect();
    let hits: Vec<u64> = (0..4 * KEYS as u64)
        .map(|i| keys[(key(i ^ 0x5555) % KEYS as u64) as usize])
        .collect();
    let misses: Vec<u64> = (0..4 * KEYS as u64)
        .map(|i| key(i + 10 * KEYS as u64))
        .collect();
    // Multiples of the group, 1M keys at 0.48, 0.70 and 0.875 full.
    let capacities = [
        (1usize << 21, "0.48"),
        (1_430_016, "0.70"),
        (1_142_864, "0.875"),
    ];
    let layouts = ["linear", "tag bytes", "tag words"];
    println!(
        "{KEYS} u64 keys, one thread, foldhash (fixed seed), median of {ROUNDS} rounds; \
         ns per operation"
    );
    for (capacity, full) in capacities {
        for layout in layouts {
            let (mut inserts, mut hit_times, mut miss_times) = (vec![], vec![], vec![]);
            for _ in 0..ROUNDS {
                let table = build(layout, capacity);
                let started = Instant::now();
                for &key in &keys {
                    table.insert(hasher.hash_one(key), key, key);
                }
                inserts.push(nanos_per(started, keys.len()));
                let (hit_time, found) = time_gets(&*table, &hasher, &hits);
                assert_ne!(found, 0, "the hits found no value");
                hit_times.push(hit_time);
                miss_times.push(time_gets(&*table, &hasher, &misses).0);
            }
            println!(
                "{layout:9}  {full:>5} full: insert {:6.1}, hit {:6.1}, miss {:6.1}",
                median(inserts),
                median(hit_times),
                median(miss_times)
            );
        }
    }
}
