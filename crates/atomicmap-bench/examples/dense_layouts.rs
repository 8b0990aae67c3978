//! What a denser table's layout costs, in bare shared slot arrays: the first step of the plan
//! in `docs/dense-table.md`. Run with `cargo run --release -p atomicmap-bench --example
//! dense_layouts`.
//!
//! Four layouts of 16-byte atomic slots, each filled with 1M keys at 0.48, 0.70 and 0.875
//! full, one thread:
//! * **linear**: `AtomicMap`'s probe, from a slot home to the first `EMPTY`;
//! * **lines**: slots in 64-byte lines of four, a probe walking whole lines from a line home,
//!   the four keys compared together, a miss ending at the first line with a free slot;
//! * **tag bytes**: one `AtomicU8` tag per slot, set with a plain store, read a byte at a time;
//! * **tag words**: eight tags per `AtomicU64`, set with `fetch_or`, read two words per group.
//!
//! With tags, a probe walks groups of 16 slots and a miss ends at the first group with a free
//! tag. Every layout takes its home by multiply-shift, so that only the layout differs, and
//! its arrays from huge pages, as `AtomicMap`'s tables are. The rounds go over every layout
//! and load in turn. No resize, reclamation or pin: these are floors for each layout, not maps.

#[path = "../src/maps/huge_pages.rs"]
mod huge_pages;
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

struct Slot {
    key: AtomicU64,
    value: AtomicU64,
}

trait Layout {
    fn insert(&self, hash: u64, key: u64, value: u64);
    fn get(&self, hash: u64, key: u64) -> u64;
}

/// Claims the free `slot` for `key` with a CAS, then runs `claimed` (a tag layout sets the
/// slot's tag there, before the value makes the entry visible) and sets the value. Whether
/// `key` now has a slot: claimed here or by another writer of the same key, or `false` when
/// another key took this one.
fn claim(slot: &Slot, key: u64, value: u64, claimed: impl FnOnce()) -> bool {
    match slot
        .key
        .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => {
            claimed();
            let _ = slot
                .value
                .compare_exchange(0, value, Ordering::AcqRel, Ordering::Acquire);
            true
        }
        Err(present) => present == key,
    }
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

/// `len` zeroed values on huge pages, as `AtomicMap`'s tables are.
fn zeroed<T: Zeroable>(len: usize) -> Box<[T]> {
    // SAFETY: `Zeroable` is implemented only for atomic integers and structs of them, for
    // which all-zero bytes are valid (a free slot, an unset tag).
    unsafe { huge_pages::zeroed_array(len) }
}

/// Types whose all-zero bytes are a valid value.
trait Zeroable {}
impl Zeroable for Slot {}
impl Zeroable for Line {}
impl Zeroable for AtomicU8 {}
impl Zeroable for AtomicU64 {}

struct Linear {
    slots: Box<[Slot]>,
}

impl Layout for Linear {
    #[inline(never)]
    fn insert(&self, hash: u64, key: u64, value: u64) {
        let mut index = home(hash, self.slots.len());
        loop {
            let slot = &self.slots[index];
            match slot.key.load(Ordering::Acquire) {
                present if present == key => return,
                0 if claim(slot, key, value, || ()) => return,
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
    slots: Box<[Slot]>,
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

struct TagBytes(Box<[AtomicU8]>);

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

struct TagWords(Box<[AtomicU64]>);

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

/// Slots in 64-byte lines of four, a probe walking whole lines from a line home: the four keys
/// of a line are compared together, and a miss ends at the first line with a free slot.
struct Lines {
    lines: Box<[Line]>,
}

#[repr(align(64))]
struct Line([Slot; 4]);

/// Which of a line's four keys equal `key`, and which are free: one bit per slot.
#[inline(always)]
fn scan_line(line: &Line, key: u64) -> Scan {
    let mut scan = Scan::default();
    for (bit, slot) in line.0.iter().enumerate() {
        let present = slot.key.load(Ordering::Acquire);
        scan.matches |= u32::from(present == key) << bit;
        scan.free |= u32::from(present == 0) << bit;
    }
    scan
}

impl Layout for Lines {
    #[inline(never)]
    fn insert(&self, hash: u64, key: u64, value: u64) {
        let count = self.lines.len();
        let mut index = home(hash, count);
        loop {
            let line = &self.lines[index];
            let Scan { matches, mut free } = scan_line(line, key);
            if matches != 0 {
                return;
            }
            while free != 0 {
                if claim(&line.0[free.trailing_zeros() as usize], key, value, || ()) {
                    return;
                }
                free &= free - 1;
            }
            index = next(index, count);
        }
    }

    #[inline(never)]
    fn get(&self, hash: u64, key: u64) -> u64 {
        let count = self.lines.len();
        let mut index = home(hash, count);
        loop {
            let line = &self.lines[index];
            let Scan { matches, free } = scan_line(line, key);
            if matches != 0 {
                return line.0[matches.trailing_zeros() as usize]
                    .value
                    .load(Ordering::Acquire);
            }
            if free != 0 {
                return 0;
            }
            index = next(index, count);
        }
    }
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
                if claim(&slots[index], key, value, || self.tags.set(index, tag)) {
                    return;
                }
                free &= free - 1;
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
            slots: zeroed(capacity),
        }),
        "lines" => Box::new(Lines {
            lines: zeroed(capacity / 4),
        }),
        "tag bytes" => Box::new(Tagged {
            slots: zeroed(capacity),
            tags: TagBytes(zeroed(capacity)),
        }),
        _ => Box::new(Tagged {
            slots: zeroed(capacity),
            tags: TagWords(zeroed(capacity / 8)),
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
    let layouts = ["linear", "lines", "tag bytes", "tag words"];
    let cells: Vec<(usize, &str, &str)> = capacities
        .iter()
        .flat_map(|&(capacity, full)| layouts.map(|layout| (capacity, full, layout)))
        .collect();
    println!(
        "{KEYS} u64 keys, one thread, foldhash (fixed seed), median of {ROUNDS} rounds; \
         ns per operation"
    );
    // Rounds go over every cell in turn, so that a slow stretch of the machine hits every
    // layout alike rather than all the rounds of one.
    let mut times = vec![(vec![], vec![], vec![]); cells.len()];
    for _ in 0..ROUNDS {
        for (&(capacity, _, layout), (inserts, hit_times, miss_times)) in
            cells.iter().zip(&mut times)
        {
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
    }
    for ((_, full, layout), (inserts, hit_times, miss_times)) in cells.into_iter().zip(times) {
        println!(
            "{layout:9}  {full:>5} full: insert {:6.1}, hit {:6.1}, miss {:6.1}",
            median(inserts),
            median(hit_times),
            median(miss_times)
        );
    }
}
