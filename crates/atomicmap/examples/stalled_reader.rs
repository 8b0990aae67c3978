//! What a stalled reader costs the writers: overwrites of boxed values (every one retires the
//! value it replaces) with no reader, with another thread holding a pin for the whole run, and
//! from a writer that keeps its own pin (`MapRef`) across all of its writes. Reclamation passes
//! happen at doubling sizes of what is held back, so each retirement stays amortised O(1):
//! the three rates should be of the same order. The example fails if a pinned case runs at
//! less than a twentieth of the rate with no reader: a pass per retirement (the old rule) ran
//! the writer's own-pin case at under a hundredth of it.
//!
//! `cargo run --release -p atomicmap --example stalled_reader [writes]`

use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use atomicmap::AtomicMap;

const KEYS: u64 = 1_000;
/// How many times slower than with no reader a pinned case may run before the example fails.
const LARGEST_ACCEPTED_SLOWDOWN: f64 = 20.0;

fn overwrite(map: &AtomicMap<u64, String>, writes: u64) -> f64 {
    let start = Instant::now();
    for i in 0..writes {
        map.insert(i % KEYS, i.to_string());
    }
    writes as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let writes: u64 = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(100_000);
    let map: AtomicMap<u64, String> = (0..KEYS).map(|key| (key, key.to_string())).collect();

    let free = overwrite(&map, writes);

    let stalled = thread::scope(|scope| {
        let (pinned, is_pinned) = mpsc::channel();
        let (release, wait) = mpsc::channel::<()>();
        let map = &map;
        scope.spawn(move || {
            let pin = map.pin();
            pinned.send(()).expect("the writer waits for the pin");
            wait.recv().ok();
            drop(pin);
        });
        is_pinned.recv().expect("the reader pins");
        let rate = overwrite(map, writes);
        release.send(()).ok();
        rate
    });

    let own_pin = {
        let pinned = map.pin();
        let start = Instant::now();
        for i in 0..writes {
            pinned.insert(i % KEYS, i.to_string());
        }
        writes as f64 / start.elapsed().as_secs_f64()
    };

    println!("{writes} overwrites of boxed values over {KEYS} keys, writes/s:");
    println!("  no reader:                     {free:>12.0}");
    println!(
        "  another thread holds a pin:    {stalled:>12.0}  ({:.2}x)",
        stalled / free
    );
    println!(
        "  the writer keeps its own pin:  {own_pin:>12.0}  ({:.2}x)",
        own_pin / free
    );
    for (case, rate) in [
        ("another thread holds a pin", stalled),
        ("the writer keeps its own pin", own_pin),
    ] {
        assert!(
            rate >= free / LARGEST_ACCEPTED_SLOWDOWN,
            "{case}: {rate:.0} writes/s, under a twentieth of the {free:.0} with no reader"
        );
    }
}
