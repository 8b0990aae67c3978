//! Latency measurements: the histogram every sampled latency goes into, and what taking one
//! sample costs.

use std::time::Instant;

use hdrhistogram::Histogram;

/// A histogram of nanoseconds from 1 ns to 100 s with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// The cost of taking one latency sample, measured on this machine.
#[derive(Clone, Copy, Debug)]
pub struct TimerOverhead {
    /// Median cost of an `Instant::now()` / `elapsed()` pair around nothing, in ns. This is
    /// included in every sampled latency.
    pub pair_ns: f64,
    /// Median cost of recording one value into the HDR histogram, in ns.
    pub record_ns: f64,
}

impl TimerOverhead {
    /// Measure both costs with a few thousand repetitions.
    pub fn measure() -> Self {
        const ROUNDS: usize = 101;
        const REPS: u32 = 1000;
        let mut hist = new_histogram();
        let mut pair = Vec::with_capacity(ROUNDS);
        let mut record = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..REPS {
                let t0 = Instant::now();
                std::hint::black_box(t0.elapsed());
            }
            pair.push(start.elapsed().as_nanos() as f64 / f64::from(REPS));
            let start = Instant::now();
            for i in 0..REPS {
                hist.saturating_record(std::hint::black_box(u64::from(i) + 50));
            }
            record.push(start.elapsed().as_nanos() as f64 / f64::from(REPS));
        }
        TimerOverhead {
            pair_ns: median(&mut pair),
            record_ns: median(&mut record),
        }
    }

    /// Extra time per operation when every `every`-th operation is sampled.
    pub fn per_op_ns(&self, every: usize) -> f64 {
        (self.pair_ns + self.record_ns) / every as f64
    }
}

/// The median of `values` (sorted in place); 0 for an empty slice.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_overhead_is_plausible() {
        let t = TimerOverhead::measure();
        assert!(t.pair_ns > 0.0 && t.pair_ns < 10_000.0);
    }
}
