//! Flow control of the publisher: a rate limit, batch sizes adapted to the engine's observed
//! latency, and the seed's levels.
//!
//! | level | when | what changes |
//! |---|---|---|
//! | 0 normal | latency below `slow` | entries of up to `normal_batch` changes |
//! | 1 slow | latency above `slow` (seed: 80 ms) | entries of up to `slow_batch` changes (seed: 500 -> 100) |
//! | 2 paused | latency above `very_slow` (seed: 150 ms) | changes of low-priority key prefixes (seed: `temp:`) are held back |
//! | 3 spooling | `failures_to_spool` failed writes in a row (seed: 5) | entries go to the local spool until the engine answers again |
//!
//! Latency is smoothed (an exponentially weighted mean over about the last 8 writes) so one
//! slow write does not flip levels. The seed's level 1 also turns on compression; we do not:
//! on the loopback or a LAN, the entries are small next to a round trip.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Thresholds and sizes of the levels.
#[derive(Clone, Debug)]
pub struct FlowLevels {
    /// Level 1 above this smoothed write latency.
    pub slow: Duration,
    /// Level 2 above this one.
    pub very_slow: Duration,
    /// Changes per stream entry at level 0.
    pub normal_batch: usize,
    /// Changes per stream entry from level 1 up.
    pub slow_batch: usize,
    /// Key prefixes held back from level 2 up.
    pub low_priority: Vec<String>,
    /// Failed writes in a row before the publisher spools (level 3).
    pub failures_to_spool: u32,
    /// Most changes held back at level 2; past it they are all released, because memory is
    /// bounded and holding back is an optimisation, not a promise.
    pub max_held: usize,
    /// Changes per second at most, `None` for no limit.
    pub rate_limit: Option<NonZeroU32>,
}

impl Default for FlowLevels {
    fn default() -> Self {
        FlowLevels {
            slow: Duration::from_millis(80),
            very_slow: Duration::from_millis(150),
            normal_batch: 500,
            slow_batch: 100,
            low_priority: Vec::new(),
            failures_to_spool: 5,
            max_held: 100_000,
            rate_limit: None,
        }
    }
}

/// The levels of the table in the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FlowLevel {
    /// Level 0.
    Normal = 0,
    /// Level 1: smaller entries.
    Slow = 1,
    /// Level 2: low-priority prefixes held back.
    Paused = 2,
    /// Level 3: writing to the spool.
    Spooling = 3,
}

/// The publisher's flow state.
pub struct FlowControl {
    levels: FlowLevels,
    /// Smoothed write latency, seconds.
    latency: f64,
    /// Failed writes since the last success.
    failures: u32,
    limiter: Option<DefaultDirectRateLimiter>,
}

/// Weight of the newest sample in the smoothed latency.
const SMOOTHING: f64 = 1.0 / 8.0;

impl FlowControl {
    /// Starts at level 0.
    pub fn new(levels: FlowLevels) -> Self {
        let limiter = levels
            .rate_limit
            .map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        FlowControl {
            levels,
            latency: 0.0,
            failures: 0,
            limiter,
        }
    }

    /// Records a successful write and how long it took.
    pub fn observe_latency(&mut self, latency: Duration) {
        self.failures = 0;
        self.latency += (latency.as_secs_f64() - self.latency) * SMOOTHING;
        metrics::gauge!(crate::metrics::FLOW_LEVEL).set(self.level() as u8 as f64);
        metrics::histogram!(crate::metrics::SINK_LATENCY).record(latency.as_secs_f64());
    }

    /// Records a failed write.
    pub fn observe_failure(&mut self) {
        self.failures = self.failures.saturating_add(1);
        metrics::gauge!(crate::metrics::FLOW_LEVEL).set(self.level() as u8 as f64);
    }

    /// The current level.
    pub fn level(&self) -> FlowLevel {
        if self.failures >= self.levels.failures_to_spool {
            FlowLevel::Spooling
        } else if self.latency > self.levels.very_slow.as_secs_f64() {
            FlowLevel::Paused
        } else if self.latency > self.levels.slow.as_secs_f64() {
            FlowLevel::Slow
        } else {
            FlowLevel::Normal
        }
    }

    /// Changes per stream entry at the current level.
    pub fn batch_size(&self) -> usize {
        if self.level() >= FlowLevel::Slow {
            self.levels.slow_batch.max(1)
        } else {
            self.levels.normal_batch.max(1)
        }
    }

    /// Whether a change of `key` is to be held back now.
    pub fn holds_back(&self, key: &str) -> bool {
        self.level() >= FlowLevel::Paused
            && self
                .levels
                .low_priority
                .iter()
                .any(|prefix| key.starts_with(prefix.as_str()))
    }

    /// Most changes held back before they are released regardless.
    pub fn max_held(&self) -> usize {
        self.levels.max_held
    }

    /// Waits until `changes` more changes fit in the rate limit.
    pub async fn admit(&self, changes: usize) {
        let Some(limiter) = &self.limiter else { return };
        let Some(rate) = self.levels.rate_limit else {
            return;
        };
        // governor refuses a request above its burst (one second's worth), so large batches
        // are admitted a second's worth at a time.
        let mut left = changes;
        while left > 0 {
            let step = left.min(rate.get() as usize);
            let n = NonZeroU32::new(u32::try_from(step).unwrap_or(u32::MAX)).unwrap_or(rate);
            // Cannot fail: step <= burst.
            let _ = limiter.until_n_ready(n).await;
            left -= step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_latency_and_failures() {
        let mut flow = FlowControl::new(FlowLevels {
            low_priority: vec!["temp:".into()],
            ..FlowLevels::default()
        });
        assert_eq!(flow.level(), FlowLevel::Normal);
        assert_eq!(flow.batch_size(), 500);
        for _ in 0..40 {
            flow.observe_latency(Duration::from_millis(100));
        }
        assert_eq!(flow.level(), FlowLevel::Slow);
        assert_eq!(flow.batch_size(), 100);
        assert!(!flow.holds_back("temp:1"));
        for _ in 0..40 {
            flow.observe_latency(Duration::from_millis(300));
        }
        assert_eq!(flow.level(), FlowLevel::Paused);
        assert!(flow.holds_back("temp:1"));
        assert!(!flow.holds_back("user:profile:1"));
        for _ in 0..5 {
            flow.observe_failure();
        }
        assert_eq!(flow.level(), FlowLevel::Spooling);
        for _ in 0..80 {
            flow.observe_latency(Duration::from_millis(1));
        }
        assert_eq!(flow.level(), FlowLevel::Normal);
    }

    #[tokio::test]
    async fn rate_limit_spaces_out_changes() {
        let flow = FlowControl::new(FlowLevels {
            rate_limit: NonZeroU32::new(1000),
            ..FlowLevels::default()
        });
        let start = std::time::Instant::now();
        // The first second's worth is the burst; the next 500 take half a second.
        flow.admit(1500).await;
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }
}
