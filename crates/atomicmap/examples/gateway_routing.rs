//! A gateway's routing table: reader threads resolve hosts to backends flat out while a
//! reloader applies new route sets.
//!
//! Route set `g` maps the hosts `g .. g + HOSTS` to backends of generation `g`. A reload to
//! `g` writes every host of the new set, the one new host among them, and only then removes
//! the host that left (make before break). Readers borrow each route through a pinned handle, with no
//! clone and no lock, and check what the map promises per key while it is written:
//! * a route read is one that was written, whole (its backend matches its host and generation);
//! * a host's generation never goes back for a reader, and a removed host never comes back.
//!
//! A reload is applied key by key: a reader can see one host at generation `g` and another
//! still at `g - 1`. A gateway that must switch every route at one instant keeps its table in
//! an `RcuMap` or a `HotSwap` instead (see the `config_reload` example). Exits non-zero if a
//! check fails.
//!
//! `cargo run --release -p atomicmap --example gateway_routing`

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use atomicmap::AtomicMap;

const HOSTS: u64 = 1_000;
const RELOADS: u64 = 100;
const READERS: usize = 3;

struct Route {
    backend: String,
    generation: u64,
}

fn host_name(host: u64) -> String {
    format!("svc-{host}.internal")
}

fn route(host: u64, generation: u64) -> Route {
    Route {
        backend: format!("10.{generation}.{host}.1:8080"),
        generation,
    }
}

/// What one reader has seen of one host.
#[derive(Clone, Copy, PartialEq)]
enum Seen {
    Never,
    At(u64),
    Removed,
}

/// Resolves hosts until the reloader is done; returns the number of lookups.
fn resolve_until_done(
    routes: &AtomicMap<String, Route>,
    names: &[String],
    reloading: &AtomicBool,
    seed: u64,
) -> u64 {
    let mut seen = vec![Seen::Never; names.len()];
    let mut random = seed | 1;
    let mut lookups = 0;
    while reloading.load(Ordering::Relaxed) {
        let pinned = routes.pin();
        for _ in 0..256 {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let host = random % names.len() as u64;
            let name = &names[host as usize];
            let previously = seen[host as usize];
            match pinned.get(name.as_str()) {
                Some(found) => {
                    assert_eq!(
                        found.backend,
                        route(host, found.generation).backend,
                        "{name}: a route that was never written"
                    );
                    match previously {
                        Seen::At(generation) => assert!(
                            found.generation >= generation,
                            "{name}: generation {} after {generation}",
                            found.generation
                        ),
                        Seen::Removed => panic!("{name} came back after its removal"),
                        Seen::Never => {}
                    }
                    seen[host as usize] = Seen::At(found.generation);
                }
                None => {
                    if previously != Seen::Never {
                        seen[host as usize] = Seen::Removed;
                    }
                }
            }
        }
        lookups += 256;
    }
    lookups
}

fn main() {
    let names: Vec<String> = (0..HOSTS + RELOADS).map(host_name).collect();
    let routes: AtomicMap<String, Route> = AtomicMap::new();
    let loading = routes.pin();
    for host in 0..HOSTS {
        loading.insert(host_name(host), route(host, 0));
    }
    drop(loading);

    let reloading = AtomicBool::new(true);
    let start = Instant::now();
    let lookups: u64 = thread::scope(|scope| {
        let readers: Vec<_> = (0..READERS as u64)
            .map(|reader| {
                let (routes, names, reloading) = (&routes, &names, &reloading);
                scope.spawn(move || resolve_until_done(routes, names, reloading, reader + 1))
            })
            .collect();
        for generation in 1..=RELOADS {
            let reloader = routes.pin();
            for host in generation..generation + HOSTS {
                reloader.insert(host_name(host), route(host, generation));
            }
            reloader.remove(names[(generation - 1) as usize].as_str());
        }
        reloading.store(false, Ordering::Relaxed);
        readers
            .into_iter()
            .map(|reader| reader.join().expect("a reader's check failed"))
            .sum()
    });
    let elapsed = start.elapsed();

    assert_eq!(routes.len(), HOSTS as usize);
    let pinned = routes.pin();
    for host in RELOADS..RELOADS + HOSTS {
        let found = pinned
            .get(names[host as usize].as_str())
            .expect("a host of the last set");
        assert_eq!(found.generation, RELOADS);
    }
    println!(
        "{READERS} readers resolved {lookups} hosts in {elapsed:.2?}, during {RELOADS} reloads \
         of {HOSTS} routes; every route read was whole and no host went back"
    );
}
