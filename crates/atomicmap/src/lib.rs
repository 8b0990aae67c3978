//! Concurrent maps for Rust services, each with its guarantees stated exactly.
//!
//! ```toml
//! [dependencies]
//! # Not published to a registry: depend on the crate by path (or git).
//! atomicmap = { path = "path/to/this/repository/crates/atomicmap", features = ["serde"] }
//! # Optional features: "serde", "rayon", "metrics" (see Features below).
//! ```
//!
//! # Which map for which job
//!
//! | job | map | why |
//! |---|---|---|
//! | a hot table read and written by many threads (routing, sessions, counters, caches) | [`AtomicMap`] | lock-free: a read is loads only, a write one CAS; no thread ever waits for a descheduled lock holder |
//! | Go's `sync.Map` semantics: keys written once, read many times, or disjoint per thread | [`ReadMostlyMap`] | a faithful port (read map, dirty map, `misses`, promotion); reads of promoted keys take no lock |
//! | in-place mutation of large values under a lock, `&mut V` access | [`ShardedMap`] | per-shard `RwLock`s behind a closure API that cannot deadlock |
//! | configuration read constantly and replaced now and then | [`HotSwap`] (one value), [`RcuMap`] (a map) | readers never block and never write shared memory; every publish has a version |
//! | the whole map at one instant (audit, export, checkpoint) | `snapshot()` on every map | a [`MapSnapshot`], linearizable: never a mix of states that did not coexist |
//! | every change as an ordered stream (replication, cache invalidation, audit log) | [`CapturedMap`] | versioned change events per key, lossless or bounded-lag subscribers |
//!
//! # Guarantees and costs
//!
//! | map | read | write | `len` | iteration | `snapshot()` |
//! |---|---|---|---|---|---|
//! | [`AtomicMap`] | no lock, no read-modify-write, no fence on Linux (a pin is two plain stores) | lock-free, one CAS on the key's slot; resizes are cooperative, at most one 1024-slot chunk per operation | sum of per-thread counters: exact when no write is in flight | weakly consistent | a *freezing migration*: lock-free, O(n); writers help move at most a chunk each |
//! | [`ReadMostlyMap`] | lock-free for keys in the read map; a miss takes the mutex | a store to a key of the read map is a CAS; a new key takes the mutex | see its docs | `range`, promoting first as Go does | entries frozen under the mutex, O(n) |
//! | [`ShardedMap`] | a shard's read lock | a shard's write lock | locks every shard in turn | shard by shard | every shard read-locked for O(shards), then copy-on-write |
//! | [`HotSwap`] / [`RcuMap`] | no lock, no read-modify-write | a CAS of the pointer; `RcuMap` copies O(log n) of a persistent map per change; every publish runs a reclamation pass (one `membarrier` system call on Linux) | O(1) | a whole immutable version | O(1): the current version |
//!
//! Every single-key operation of every map is linearizable. Where maps share an operation, it
//! means the same thing (as in std's `HashMap`): `get` clones, `get_with` borrows through a
//! closure, `insert` and `remove` return the previous value, `update` changes an existing
//! value, `upsert` inserts or updates, `compute` inserts, updates or removes in one step,
//! `get_or_insert_with` runs its closure at most once, and `with_capacity` panics where
//! `try_with_capacity` returns a [`CapacityError`]. Each method's docs say whether its closure
//! may run more than once (on the lock-free maps, a lost race runs it again).
//!
//! # Features
//!
//! None is on by default.
//! * `serde`: `Serialize` and `Deserialize` for [`AtomicMap`], [`ShardedMap`],
//!   [`ReadMostlyMap`], [`RcuMap`] and [`MapSnapshot`], as a map of the entries, and for
//!   [`HotSwap`] as its current value (the version is not carried: a deserialized one starts
//!   at 0). A map serializes a snapshot of itself, so the output is the map at one instant even
//!   while other threads write (the `audit_export` example).
//! * `rayon`: `snapshot.par_iter()` (`IntoParallelIterator for &MapSnapshot`) yields every
//!   entry of the snapshot once, split over rayon's threads after one pass on the calling
//!   thread that gathers a reference to each entry; `ParallelExtend<(K, V)>` (also through
//!   `&map`) and `FromParallelIterator<(K, V)>` for [`AtomicMap`], [`ShardedMap`] and
//!   [`ReadMostlyMap`], and their element forms for [`AtomicSet`]. A parallel extend inserts each entry with the map's own insert from
//!   whichever thread produced it, so when a key comes twice, which value is kept is not
//!   specified. New keys of a `ReadMostlyMap` all take its one mutex, so it fills no faster in
//!   parallel.
//! * `metrics`: `MapStats::record` publishes a map's [`MapStats`] figures as gauges through the
//!   [`metrics`](https://docs.rs/metrics) facade, for whatever exporter the service installed.
//!
#![cfg_attr(
    feature = "rayon",
    doc = r#"
```
use atomicmap::AtomicMap;
use rayon::prelude::*;

let squares: AtomicMap<u64, u64> = (0..10_000u64).into_par_iter().map(|n| (n, n * n)).collect();
let snapshot = squares.snapshot();
let sum: u64 = snapshot.par_iter().map(|(_, square)| *square).sum();
assert_eq!(sum, (0..10_000u64).map(|n| n * n).sum());
```
"#
)]
//!
//! The examples in `examples/` are small programs for the jobs above, each checking what it
//! shows: `gateway_routing`, `hot_counters`, `config_reload`, `sync_map_cache`,
//! `audit_export` (needs `serde`) and `stalled_reader`.
//!
//! # How the crate is built
//!
//! ```text
//!   serde_impls, rayon_impls ──▶ lib (re-exports)     (the optional features)
//!   capture ──▶ atomic_map, sharded, hot_swap              (change capture wraps a map)
//!   atomic_map ──▶ pinned (MapRef: each operation, once) ──▶ raw/ (all of AtomicMap's unsafe)
//!   read_mostly/ (mod ──▶ dirty ──▶ entry), sharded, hot_swap
//!   every map ──▶ snapshot (MapSnapshot) ──▶ persistent (RcuMap's PersistentMap)
//!   every map ──▶ reclaim, hash, error, stats, sync
//! ```
//! Imports flow one way, down this picture: the snapshot view knows no concrete map, and the
//! reclamation layer (`reclaim`) and the loom switch (`sync`) know no map at all. Each lock-free
//! module opens with its protocol: states, transitions, who may write what, and why each
//! memory ordering is enough.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod atomic_map;
mod error;
mod hash;
mod persistent;
#[cfg(feature = "rayon")]
mod rayon_impls;
mod reclaim;
#[cfg(feature = "serde")]
mod serde_impls;
mod set;
mod stats;
mod sync;

pub use atomic_map::{AtomicMap, Iter, MapRef, ValueRef};
pub use atomic_map::{ClonedIter, Entry, ExtractIf, GuardedRef, ModifyEntry};
pub use capture::{CapturedMap, ChangeEvent, SubscribeOptions, Subscription, Version, Versioned};
pub use equivalent::Equivalent;
pub use error::CapacityError;
pub use hash::DefaultHashBuilder;
pub use set::{AtomicSet, SetIter};

pub mod capture;
pub mod hot_swap;
pub mod read_mostly;
pub mod sharded;
mod sharded_set;
pub mod snapshot;
pub use hot_swap::{Guard, HotSwap, PersistentMap, RcuMap, VersionMismatch};
pub use read_mostly::{ReadMostlyMap, ReadMostlyStats};
pub use sharded::{ShardedMap, ShardedMapError};
pub use sharded_set::ShardedSet;
pub use snapshot::{MapSnapshot, SnapshotIter};
pub use stats::MapStats;

/// The README's Rust examples, run as doc tests so that they stay true; not part of the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;
