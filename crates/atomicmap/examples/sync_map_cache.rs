//! A `sync.Map`-style cache with `ReadMostlyMap`: rendered profiles, computed once per user
//! and then read many times.
//!
//! 1. Two threads warm the cache at once with `load_or_store`: for each user exactly one
//!    render is stored, and both threads get that one back.
//! 2. Lookups of keys that are only in the dirty map are misses (they take the mutex);
//!    once the misses reach the dirty map's length the dirty map is promoted, and from then
//!    on lookups take no lock and count no miss. `stats()` shows both.
//! 3. Storing to a key of the read map is a compare-and-swap, with no dirty map built; a new
//!    key builds one.
//! 4. `range` visits every entry once.
//!
//! Exits non-zero if any of this does not hold.
//!
//! `cargo run --release -p atomicmap --example sync_map_cache`

use std::sync::Arc;
use std::thread;

use atomicmap::ReadMostlyMap;

const USERS: u64 = 2_000;
const WARMERS: u64 = 2;

fn render(user: u64, warmer: u64) -> Arc<String> {
    Arc::new(format!(
        "<profile of user {user}, rendered by warmer {warmer}>"
    ))
}

fn main() {
    let profiles: ReadMostlyMap<u64, Arc<String>> = ReadMostlyMap::new();

    let warmed: Vec<(Vec<Arc<String>>, u64)> = thread::scope(|scope| {
        let warmers: Vec<_> = (0..WARMERS)
            .map(|warmer| {
                let profiles = &profiles;
                scope.spawn(move || {
                    let mut seen = Vec::with_capacity(USERS as usize);
                    let mut stored = 0;
                    for user in 0..USERS {
                        let (profile, loaded) = profiles.load_or_store(user, render(user, warmer));
                        if !loaded {
                            stored += 1;
                        }
                        seen.push(profile);
                    }
                    (seen, stored)
                })
            })
            .collect();
        warmers
            .into_iter()
            .map(|warmer| warmer.join().expect("a warmer"))
            .collect()
    });
    let stored: u64 = warmed.iter().map(|(_, stored)| stored).sum();
    assert_eq!(stored, USERS, "exactly one render stored per user");
    for user in 0..USERS as usize {
        let first = &warmed[0].0[user];
        for (seen, _) in &warmed[1..] {
            assert!(
                Arc::ptr_eq(first, &seen[user]),
                "user {user}: the warmers got different profiles"
            );
        }
    }
    println!(
        "warmed: {USERS} users, one render stored each; {:?}",
        profiles.stats()
    );

    // Until the dirty map is promoted, a lookup of a key only it holds is a miss, and as many
    // misses as the dirty map has entries promote it (Go's rule). While the read map lacks
    // some key, each pass over every user misses at least once, so at most `USERS` passes
    // end on the read map (two, if the warmers left every key in the dirty map alone; more
    // if a promotion during warming left only a few keys there).
    let mut passes = 0;
    while profiles.stats().amended {
        assert!(
            passes < USERS,
            "misses promote the dirty map within {USERS} passes"
        );
        for user in 0..USERS {
            assert!(profiles.load(&user).is_some());
        }
        passes += 1;
    }
    let promoted = profiles.stats();
    println!("after {passes} passes of loads: {promoted:?}");
    assert!(promoted.promotions >= 1, "the dirty map was promoted");
    assert!(!promoted.amended, "the read map holds every key");
    assert_eq!(promoted.read_len, USERS as usize);

    for user in 0..USERS {
        assert!(profiles.load(&user).is_some());
    }
    let settled = profiles.stats();
    assert_eq!(
        settled.misses, 0,
        "lookups on the read map take no lock and count no miss"
    );
    assert_eq!(settled.promotions, promoted.promotions);

    profiles.store(7, render(7, 99));
    let after_overwrite = profiles.stats();
    assert!(
        !after_overwrite.has_dirty,
        "a store to a key of the read map builds no dirty map"
    );
    profiles.store(USERS, render(USERS, 99));
    let after_new_key = profiles.stats();
    assert!(
        after_new_key.has_dirty && after_new_key.amended,
        "a new key goes to a dirty map"
    );
    println!("after a store to an existing key and one to a new key: {after_new_key:?}");

    let mut visited = 0;
    let mut rerendered = 0;
    profiles.range(|_, profile| {
        visited += 1;
        if profile.ends_with("warmer 99>") {
            rerendered += 1;
        }
        true
    });
    assert_eq!(visited, USERS + 1, "range visits every entry once");
    assert_eq!(rerendered, 2);
    println!("range visited {visited} profiles; {:?}", profiles.stats());
}
