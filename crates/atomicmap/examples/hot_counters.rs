//! Hot counters updated from many threads, two ways:
//!
//! * `AtomicMap<&str, AtomicU64>`: a counter per route, created on first use with
//!   `get_or_insert_with` and incremented with `fetch_add` through the value the pinned handle
//!   lends. The map is written only when a route is new; every other increment is one
//!   `fetch_add` on the counter, not a write to the map.
//! * `AtomicMap<u16, u64>`: a count per status code with `upsert`, one compare-and-swap on the
//!   key's slot per increment (a `u64` value lives in the slot itself).
//!
//! Threads race on the same keys from the first increment, so a counter created twice, or an
//! increment lost, would show in the totals, which the example checks exactly. Exits non-zero
//! if one is off.
//!
//! `cargo run --release -p atomicmap --example hot_counters`

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use atomicmap::AtomicMap;

const THREADS: u64 = 4;
const REQUESTS_PER_THREAD: u64 = 100_000;
const ROUTES: [&str; 4] = ["/login", "/search", "/cart", "/checkout"];
const STATUS_CODES: [u16; 3] = [200, 404, 503];

/// The route and status of a thread's `n`-th request: a fixed pattern, so the totals are known.
fn request(n: u64) -> (&'static str, u16) {
    let route = ROUTES[(n % ROUTES.len() as u64) as usize];
    let status = STATUS_CODES[(n % STATUS_CODES.len() as u64) as usize];
    (route, status)
}

fn main() {
    let hits_per_route: AtomicMap<&'static str, AtomicU64> = AtomicMap::new();
    let responses_per_status: AtomicMap<u16, u64> = AtomicMap::new();

    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for n in 0..REQUESTS_PER_THREAD {
                    let (route, status) = request(n);
                    hits_per_route
                        .pin()
                        .get_or_insert_with(route, || AtomicU64::new(0))
                        .fetch_add(1, Ordering::Relaxed);
                    responses_per_status.upsert(status, || 1, |count| count + 1);
                }
            });
        }
    });

    let mut expected_per_route = [0u64; ROUTES.len()];
    let mut expected_per_status = [0u64; STATUS_CODES.len()];
    for n in 0..REQUESTS_PER_THREAD {
        expected_per_route[(n % ROUTES.len() as u64) as usize] += THREADS;
        expected_per_status[(n % STATUS_CODES.len() as u64) as usize] += THREADS;
    }

    let pinned = hits_per_route.pin();
    for (route, expected) in ROUTES.iter().zip(expected_per_route) {
        let hits = pinned
            .get(route)
            .expect("every route was hit")
            .load(Ordering::Relaxed);
        println!("{route:<10} {hits:>8} hits");
        assert_eq!(hits, expected, "hits of {route}");
    }
    assert_eq!(hits_per_route.len(), ROUTES.len());

    for (status, expected) in STATUS_CODES.iter().zip(expected_per_status) {
        let responses = responses_per_status
            .get(status)
            .expect("every status was counted");
        println!("{status:<10} {responses:>8} responses");
        assert_eq!(responses, expected, "responses with status {status}");
    }
    println!(
        "{} requests from {THREADS} threads, every one counted once",
        THREADS * REQUESTS_PER_THREAD
    );
}
