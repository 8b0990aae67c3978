//! The capture workload: the mixed workload on a map with change capture off, then on the same
//! map type with capture on and one subscriber thread that drains every change into a
//! `HashMap` replica. Both runs are the usual throughput runs (prefill, warm-up, timed
//! operations stopped after [`RUN_LIMIT`]), so the ratio is what capture costs the workers,
//! including the CPU the subscriber takes from them when there are no spare cores.
//!
//! Capture-on phases, separated by a barrier the workers and the main thread join: prefill ->
//! (main: `snapshot_and_subscribe`, seeding the replica from the snapshot; the subscriber
//! starts draining) -> warm-up -> timed operations -> (subscriber drains the rest). The
//! subscription is lossless (writers wait when its buffer is full), so the workers' throughput
//! includes any time they waited for the subscriber. At the end the replica must equal the
//! map: a run whose replica diverged is reported as failed, not timed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use atomicmap::{ChangeEvent, Subscription};

use crate::adapter::{CapturingAdapter, MapAdapter, Replica};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;
use crate::latency::new_histogram;
use crate::maps::CaptureVisitor;
use crate::runner::{self, prefill, run_ops, Measurement, Plan};
use crate::snapshots::TimedRun;

/// What the capture workload measured on one map.
pub struct CaptureMeasurement {
    /// The map with capture off (the mixed workload's usual run).
    pub off: Measurement,
    /// The same map holding versioned values, capture off: the cost of the storage alone.
    pub stored: Measurement,
    /// The workers on the same map type with capture on.
    pub on: TimedRun,
    /// Change events the subscriber applied (warm-up and timed operations).
    pub events: u64,
    /// From the last worker's end to the subscriber's last event.
    pub drain_tail: Duration,
    /// Whether the replica equalled the map at the end.
    pub converged: bool,
}

/// Whether the visited map has change capture (the visit itself does nothing).
pub struct CanCapture;

impl<K: BenchKey, S: BenchHasher> CaptureVisitor<K, S> for CanCapture {
    type Output = ();

    fn visit<Off: MapAdapter<K, S>, Stored: MapAdapter<K, S>, On: CapturingAdapter<K, S>>(self) {}
}

/// Runs the plan with capture off and on.
pub struct CaptureRunVisitor<'a, 'p, K, S>(pub &'a Plan<'p, K, S>);

impl<K: BenchKey, S: BenchHasher> CaptureVisitor<K, S> for CaptureRunVisitor<'_, '_, K, S> {
    type Output = CaptureMeasurement;

    fn visit<Off: MapAdapter<K, S>, Stored: MapAdapter<K, S>, On: CapturingAdapter<K, S>>(
        self,
    ) -> CaptureMeasurement {
        let off = runner::run::<K, S, Off>(self.0);
        let stored = runner::run::<K, S, Stored>(self.0);
        let (on, events, drain_tail, converged) = run_captured::<K, S, On>(self.0);
        CaptureMeasurement {
            off,
            stored,
            on,
            events,
            drain_tail,
            converged,
        }
    }
}

/// Applies every event of `subscription` to `replica` until `running` is 0 and the queue is
/// empty. Returns the events applied and when the last one was.
fn drain<K: BenchKey>(
    subscription: &Subscription<K, u64>,
    replica: &mut Replica<K>,
    running: &AtomicUsize,
) -> (u64, Instant) {
    let mut batch = Vec::with_capacity(4096);
    let mut applied = 0;
    let mut last = Instant::now();
    loop {
        let done = running.load(Ordering::Acquire) == 0;
        let taken = subscription
            .recv_batch(&mut batch, 4096, Duration::from_millis(1))
            .expect("a lossless subscription of a live map neither lags nor closes");
        if taken == 0 && done {
            return (applied, last);
        }
        applied += taken as u64;
        last = Instant::now();
        for event in batch.drain(..) {
            match event {
                ChangeEvent::Insert { key, value, .. } | ChangeEvent::Update { key, value, .. } => {
                    replica.insert(key, value);
                }
                ChangeEvent::Remove { key, .. } => {
                    replica.remove(&key);
                }
            }
        }
    }
}

/// The capture-on run of the plan on a fresh map of type `A`.
fn run_captured<K: BenchKey, S: BenchHasher, A: CapturingAdapter<K, S>>(
    plan: &Plan<'_, K, S>,
) -> (TimedRun, u64, Duration, bool) {
    let threads = plan.streams.timed.len();
    let keys = plan.keys;
    let map = A::build(
        plan.workload.presized.then_some(keys.len()),
        plan.hasher.clone(),
    );
    let barrier = Barrier::new(threads + 1);
    let running = AtomicUsize::new(threads);

    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (map, barrier, running) = (&map, &barrier, &running);
                let timed = &plan.streams.timed[t];
                let warmup = &plan.streams.warmup[t];
                s.spawn(move || {
                    let mut w = map.worker();
                    prefill::<K, S, A>(&mut w, keys, t, threads);
                    barrier.wait(); // prefill done
                    barrier.wait(); // subscribed
                    run_ops(
                        &mut w,
                        keys,
                        plan.workload.key_pattern,
                        warmup,
                        None,
                        &mut new_histogram(),
                    );
                    let mut latency = new_histogram();
                    let limit = Some(runner::RUN_LIMIT);
                    let ran = run_ops(
                        &mut w,
                        keys,
                        plan.workload.key_pattern,
                        timed,
                        limit,
                        &mut latency,
                    );
                    running.fetch_sub(1, Ordering::Release);
                    (ran, latency)
                })
            })
            .collect();
        barrier.wait(); // prefill done
        let (mut replica, subscription) = map.snapshot_and_subscribe();
        let running = &running;
        let subscriber = s.spawn(move || {
            let drained = drain(&subscription, &mut replica, running);
            (drained, replica)
        });
        barrier.wait(); // subscribed: go

        let mut on = TimedRun::empty();
        for w in workers {
            let ((ops, span), latency) = w.join().expect("benchmark thread panicked");
            on.add_thread(ops, span, latency);
        }
        let workers_ended = on.span.map(|span| span.ended);
        let ((events, last_event), replica) = subscriber.join().expect("subscriber panicked");
        let drain_tail = workers_ended.map_or(Duration::ZERO, |ended| {
            last_event.saturating_duration_since(ended)
        });
        let converged = replica == map.contents();
        (on, events, drain_tail, converged)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::MapId;
    use crate::workload::{self, generate};

    #[test]
    fn every_captured_map_converges_and_counts_its_events() {
        const KEYS: usize = 2000;
        let keys: Vec<u64> = (0..KEYS as u64).map(u64::nth).collect();
        let streams = generate(&workload::CAPTURE, 2, KEYS, 20_000, 1);
        let hasher = foldhash::fast::FixedState::default();
        let plan = Plan {
            workload: &workload::CAPTURE,
            keys: &keys,
            streams: &streams,
            hasher: &hasher,
        };
        let writes: u64 = streams
            .warmup
            .iter()
            .chain(&streams.timed)
            .flatten()
            .filter(|op| op.kind != workload::OpKind::Read)
            .count() as u64;
        for id in [MapId::AtomicMap, MapId::ShardedMap, MapId::RcuMap] {
            let m = id
                .visit_captured::<u64, foldhash::fast::FixedState, _>(CaptureRunVisitor(&plan))
                .expect("the map captures");
            assert!(m.converged, "{}", id.name());
            assert_eq!(m.on.ops, 20_000, "{}", id.name());
            // Every insert commits (overwrites included), so each write is one event.
            assert_eq!(m.events, writes, "{}", id.name());
        }
        assert!(MapId::DashMap
            .visit_captured::<u64, foldhash::fast::FixedState, _>(CaptureRunVisitor(&plan))
            .is_none());
    }
}
