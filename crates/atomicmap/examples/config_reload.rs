//! Configuration hot reload with `HotSwap`: request threads read the current configuration on
//! every request while it is replaced under them, three ways:
//!
//! 1. a reloader `store`s whole new configurations (a file read again);
//! 2. two admin threads raise the rate limit at once with `rcu`, which recomputes from the
//!    newer value when the other published first, so no raise is lost;
//! 3. an operator edits the configuration it read, and publishes with `compare_and_swap`
//!    against the version it read: an edit based on a stale read is refused, not applied over
//!    a newer configuration, and succeeds once redone from the current one.
//!
//! Readers check that every configuration they see is whole (its fields agree with each
//! other) and that versions never go back; the example checks that versions count the
//! publications exactly. Exits non-zero if a check fails.
//!
//! `cargo run --release -p atomicmap --example config_reload`

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use atomicmap::HotSwap;

#[derive(Clone, Debug)]
struct Config {
    /// Which configuration file produced it.
    file_revision: u64,
    backends: Vec<String>,
    rate_limit_per_second: u32,
    /// Derived from the other fields when the configuration is built: a reader that saw a
    /// mix of two configurations would find it does not match.
    fingerprint: u64,
}

impl Config {
    fn new(file_revision: u64, backend_count: u64, rate_limit_per_second: u32) -> Config {
        let backends = (0..backend_count)
            .map(|backend| format!("pool-{file_revision}-{backend}"))
            .collect();
        let mut config = Config {
            file_revision,
            backends,
            rate_limit_per_second,
            fingerprint: 0,
        };
        config.fingerprint = config.expected_fingerprint();
        config
    }

    fn expected_fingerprint(&self) -> u64 {
        let names: u64 = self
            .backends
            .iter()
            .map(|name| name.bytes().map(u64::from).sum::<u64>())
            .sum();
        self.file_revision * 1_000_003 + names * 31 + u64::from(self.rate_limit_per_second)
    }

    fn with_rate_limit(&self, rate_limit_per_second: u32) -> Config {
        let mut config = self.clone();
        config.rate_limit_per_second = rate_limit_per_second;
        config.fingerprint = config.expected_fingerprint();
        config
    }
}

const FILE_RELOADS: u64 = 200;
const RAISES_PER_ADMIN: u32 = 500;
const ADMINS: u32 = 2;
const READERS: usize = 2;

/// Serves requests until told to stop; returns how many it served.
fn serve(config: &HotSwap<Config>, serving: &AtomicBool) -> u64 {
    let mut last_version = 0;
    let mut requests = 0;
    while serving.load(Ordering::Relaxed) {
        let current = config.load();
        assert_eq!(
            current.fingerprint,
            current.expected_fingerprint(),
            "a configuration seen half-replaced: {:?}",
            *current
        );
        assert!(current.version() >= last_version, "the version went back");
        assert!(!current.backends.is_empty());
        last_version = current.version();
        requests += 1;
    }
    requests
}

fn main() {
    let config = HotSwap::new(Config::new(0, 4, 100));
    let serving = AtomicBool::new(true);

    let requests: u64 = thread::scope(|scope| {
        let readers: Vec<_> = (0..READERS)
            .map(|_| scope.spawn(|| serve(&config, &serving)))
            .collect();

        let reloader = scope.spawn(|| {
            for file_revision in 1..=FILE_RELOADS {
                let rate_limit = config.load().rate_limit_per_second;
                let backends = 2 + file_revision % 5;
                // A rate-limit raise published between the load and this store would be
                // overwritten; this reloader runs before the admins so that none is.
                config.store(Config::new(file_revision, backends, rate_limit));
            }
        });
        reloader.join().expect("the reloader");

        let admins: Vec<_> = (0..ADMINS)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..RAISES_PER_ADMIN {
                        config.rcu(|current| {
                            current.with_rate_limit(current.rate_limit_per_second + 1)
                        });
                    }
                })
            })
            .collect();
        for admin in admins {
            admin.join().expect("an admin");
        }

        serving.store(false, Ordering::Relaxed);
        readers
            .into_iter()
            .map(|reader| reader.join().expect("a reader's check failed"))
            .sum()
    });

    let publications = FILE_RELOADS + u64::from(ADMINS * RAISES_PER_ADMIN);
    assert_eq!(
        config.version(),
        publications,
        "one version per publication"
    );
    let current = config.load_full();
    assert_eq!(current.file_revision, FILE_RELOADS);
    assert_eq!(
        current.rate_limit_per_second,
        100 + ADMINS * RAISES_PER_ADMIN
    );
    println!(
        "{READERS} readers served {requests} requests over {publications} publications \
         (version {}); every configuration seen was whole, no raise was lost",
        config.version()
    );

    // The operator reads, someone else publishes, the operator's edit is refused.
    let read = config.load();
    let (read_version, edited) = (read.version(), read.with_rate_limit(50));
    drop(read);
    config.rcu(|current| current.with_rate_limit(current.rate_limit_per_second + 1));
    let refused = config
        .compare_and_swap(read_version, edited)
        .expect_err("an edit of a stale read is refused");
    assert_eq!(refused.current_version, read_version + 1);
    assert_eq!(refused.rejected.rate_limit_per_second, 50);
    assert_eq!(
        config.load().rate_limit_per_second,
        100 + ADMINS * RAISES_PER_ADMIN + 1
    );
    println!("stale edit refused: {refused}");

    // Redone from the current configuration, it goes through.
    let read = config.load();
    let (read_version, edited) = (read.version(), read.with_rate_limit(50));
    drop(read);
    let published = config
        .compare_and_swap(read_version, edited)
        .expect("an edit of the current version is published");
    assert_eq!(published, read_version + 1);
    assert_eq!(config.load().rate_limit_per_second, 50);
    println!("edit redone from version {read_version}: published as version {published}");
}
