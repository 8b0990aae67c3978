//! The one fixture that starts and stops real `redis-server`s for the tests (through the
//! crate's `LocalRedis`: free loopback port, temporary directory, `--save ""`, AOF with
//! `appendfsync always` where durability is under test, SIGKILL on drop).
//!
//! A machine without `redis-server` FAILS these tests with a message saying how to install
//! it: a replication test that silently skips proves nothing.

use atomicmap_replicator::local_redis::LocalRedis;

/// A fresh server; `append_only` for tests that kill and restart it.
pub fn start(append_only: bool) -> LocalRedis {
    LocalRedis::start(append_only).unwrap_or_else(|e| panic!("cannot run this test: {e}"))
}
