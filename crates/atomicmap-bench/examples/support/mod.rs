//! What the bench examples share: their keys and how they report times.

use std::time::Instant;

/// Key number `index`: the index through a 64-bit mix, so the keys look random, and never 0
/// (a free slot's word).
pub fn key(index: u64) -> u64 {
    let mixed = (index ^ (index >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    (mixed ^ (mixed >> 29)) | 1
}

/// Nanoseconds per operation since `started`.
pub fn nanos_per(started: Instant, operations: usize) -> f64 {
    started.elapsed().as_nanos() as f64 / operations as f64
}

/// The median of `runs`.
pub fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}
