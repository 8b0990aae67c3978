//! A synthetic write load for the demo, the benchmark, the `source` command and the tests:
//! threads that insert, update and remove keys `k0..k{keys}` (or increment G-Counters) at a
//! paced rate or flat out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::source::SourceMap;

/// What a load does.
#[derive(Clone, Debug)]
pub struct Load {
    /// Distinct keys.
    pub keys: u64,
    /// Operations per second over all threads, `None` for flat out.
    pub rate: Option<u64>,
    /// Operations in total over all threads, `None` until stopped.
    pub ops: Option<u64>,
    /// Percent of operations that remove the key (the rest write it).
    pub remove_percent: u8,
    /// Instead of writing values, increment the key's counter (8 bytes, little endian): the
    /// G-Counter workload. No removes then.
    pub counters: bool,
    /// Writer threads.
    pub threads: usize,
    /// Seed of the key and operation choice.
    pub seed: u64,
}

/// A running load.
pub struct LoadHandle {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LoadHandle {
    /// Operations done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Whether every thread finished its share.
    pub fn is_finished(&self) -> bool {
        self.threads
            .iter()
            .all(std::thread::JoinHandle::is_finished)
    }

    /// Stops the threads and waits for them; returns the operations done.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        self.done.load(Ordering::Relaxed)
    }
}

/// xorshift64*: enough to spread keys, no dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

impl Load {
    /// Starts the writer threads on `map`.
    pub fn start(&self, map: Arc<SourceMap>) -> LoadHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let threads = self.threads.max(1);
        let handles = (0..threads)
            .map(|t| {
                let (map, stop, done, load) =
                    (map.clone(), stop.clone(), done.clone(), self.clone());
                let share = self
                    .ops
                    .map(|ops| ops / threads as u64 + u64::from((t as u64) < ops % threads as u64));
                let rate = self.rate.map(|r| (r as f64 / threads as f64).max(1.0));
                std::thread::spawn(move || load.run(&map, t as u64, share, rate, &stop, &done))
            })
            .collect();
        LoadHandle {
            stop,
            done,
            threads: handles,
        }
    }

    fn run(
        &self,
        map: &SourceMap,
        thread: u64,
        ops: Option<u64>,
        rate: Option<f64>,
        stop: &AtomicBool,
        done: &AtomicU64,
    ) {
        let mut state = self.seed ^ (thread + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let started = Instant::now();
        let mut i = 0u64;
        while ops.is_none_or(|ops| i < ops) {
            if i.is_multiple_of(256) && stop.load(Ordering::Relaxed) {
                return;
            }
            if let Some(rate) = rate {
                // Pace: operation i is due at i / rate seconds.
                let due = Duration::from_secs_f64(i as f64 / rate);
                let elapsed = started.elapsed();
                if due > elapsed {
                    std::thread::sleep(due - elapsed);
                }
            }
            let r = next(&mut state);
            let key = format!("k{}", r % self.keys.max(1));
            if self.counters {
                map.compute(key, |count| {
                    let count = count
                        .and_then(|c| <[u8; 8]>::try_from(c.as_slice()).ok())
                        .map_or(0, u64::from_le_bytes);
                    Some((count + 1).to_le_bytes().to_vec())
                });
            } else if (r >> 32) % 100 < u64::from(self.remove_percent) {
                map.remove(key.as_str());
            } else {
                map.insert(key, format!("v{thread}-{i}-{}", r >> 40).into_bytes());
            }
            i += 1;
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}
