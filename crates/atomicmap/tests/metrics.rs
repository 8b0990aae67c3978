//! `MapStats::record` publishes every figure through the `metrics` facade, labelled with the
//! map's name, to whichever recorder is installed.
#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use atomicmap::{AtomicMap, ShardedMap};
use metrics::{
    Counter, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// The last value set on each gauge, by `(name, map label)`.
#[derive(Default)]
struct Gauges(Mutex<HashMap<(String, String), f64>>);

struct GaugeCell {
    gauges: Arc<Gauges>,
    id: (String, String),
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        *self
            .gauges
            .0
            .lock()
            .unwrap()
            .entry(self.id.clone())
            .or_default() += value;
    }
    fn decrement(&self, value: f64) {
        self.increment(-value);
    }
    fn set(&self, value: f64) {
        self.gauges.0.lock().unwrap().insert(self.id.clone(), value);
    }
}

struct GaugeRecorder(Arc<Gauges>);

impl Recorder for GaugeRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let map = key
            .labels()
            .find(|label| label.key() == "map")
            .map(|label| label.value().to_owned())
            .unwrap_or_default();
        Gauge::from_arc(Arc::new(GaugeCell {
            gauges: Arc::clone(&self.0),
            id: (key.name().to_owned(), map),
        }))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn gauge(gauges: &Gauges, name: &str, map: &str) -> Option<f64> {
    gauges
        .0
        .lock()
        .unwrap()
        .get(&(name.to_owned(), map.to_owned()))
        .copied()
}

#[test]
fn record_sets_one_gauge_per_figure_labelled_with_the_map() {
    let sessions: AtomicMap<u64, u64> = (0..1_000).map(|key| (key, key)).collect();
    let _ = sessions.snapshot();
    let routes: ShardedMap<u64, u64> = (0..10).map(|key| (key, key)).collect();
    let gauges = Arc::new(Gauges::default());
    let sessions_stats = sessions.stats();
    metrics::with_local_recorder(&GaugeRecorder(Arc::clone(&gauges)), || {
        sessions_stats.record("sessions");
        routes.stats().record("routes");
    });

    assert_eq!(gauge(&gauges, "atomicmap_len", "sessions"), Some(1_000.0));
    assert_eq!(gauge(&gauges, "atomicmap_len", "routes"), Some(10.0));
    assert_eq!(
        gauge(&gauges, "atomicmap_snapshots_taken", "sessions"),
        Some(1.0)
    );
    assert_eq!(
        gauge(&gauges, "atomicmap_capacity", "sessions"),
        Some(sessions_stats.capacity as f64)
    );
    for figure in [
        "resizes",
        "migrations_in_flight",
        "tombstones",
        "longest_probe",
        "garbage_bytes",
    ] {
        let name = format!("atomicmap_{figure}");
        assert!(
            gauge(&gauges, &name, "sessions").is_some(),
            "{name} was not recorded"
        );
    }
}
