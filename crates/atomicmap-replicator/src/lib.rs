//! atomicmap-replicator: copies a live [`CapturedMap`](atomicmap::CapturedMap) to other
//! processes over Redis Streams, with nothing lost after a `kill -9` of either side.
//!
//! # Data flow
//!
//! ```text
//!  SOURCE PROCESS                                   REDIS (engine)              REPLICA PROCESS
//!
//!  writers ──> CapturedMap                           {prefix}/streams/{task.p0}
//!                 │ Subscription (bounded, Wait:      {prefix}/streams/{task.p1}  ┌──> reader task
//!                 │ writers wait when it is full)     ...  one stream per         │    (own connection,
//!                 v                                        partition              │     XREAD BLOCK)
//!  [1 source]  capture thread (std, blocks on recv)                               │        │ bounded mpsc
//!                 │ bounded mpsc of change batches                                │        v
//!                 v                                                               │  check entry against
//!              publisher task ── split by key hash ──> pipelined XADD ────────────┘  its cursor (codec,
//!                 │   flow: rate limit, batch size,        │                         epoch/seq, clock)
//!                 │   hold low-priority prefixes           │                             │
//!                 │                                        │                      [2 transform] closure
//!                 ├── engine down ──> spool (file, fsync, bounded) ──> drained later     │
//!                 │                                                               [3 resolve] LWW,
//!                 └── every interval: anchor (cursors) ──> {prefix}/anchors/{task}     G-Counter, closure
//!                     then map.snapshot() ──> {prefix}/snapshots/{task}/{id}/{i}         │
//!                                                                                 [4 sink] local map,
//!                                                                                  Redis hash + checkpoint
//!                                                                                  (one MULTI per batch)
//! ```
//!
//! Who owns what: the capture thread owns the [`Subscription`](atomicmap::Subscription); the
//! publisher task owns the sequence numbers, the flow state and the spool; a background task
//! owns each snapshot being written. On the replica, the reader task owns only its read
//! positions; the applying task owns the records (with versions and tombstones), the cursors
//! and the sink. Every channel is bounded, so a slow stage slows the stage before it, down to
//! the map's writers: memory stays bounded end to end.
//!
//! # Modules
//!
//! | stage / part | module |
//! |---|---|
//! | 1. source: capture, publish, snapshot + anchor, recovery | [`source`] |
//! | 2. transform: rename, filter, TTL | [`transform`] |
//! | 3. resolve: LWW, G-Counter, closure | [`resolve`] |
//! | 4. sink: local map, Redis hash | [`sink`] |
//! | the replica that drives 2-4 | [`replica`] |
//! | the engine trait, and Redis Streams | [`engine`], [`engine::redis`] |
//! | bytes on the wire | [`codec`] |
//! | rate limit, adaptive batches, pause | [`flow`] |
//! | local durable queue | [`spool`] |
//! | metrics | [`metrics`] |
//! | synthetic load, private redis-server (demo, bench, tests) | [`load`], [`local_redis`] |
//!
//! # Guarantees
//!
//! * Per key, a replica applies changes in version order and ignores older ones (LWW), so
//!   duplicates, a snapshot overlapping the stream, and retries change nothing twice.
//! * Nothing acknowledged by Redis (or fsynced to the spool) is lost by a crash of the source:
//!   the restarted source recovers its map from Redis and goes on with larger versions.
//! * A replica with a durable sink resumes from a checkpoint committed with its data; one
//!   that fell behind the trimmed streams loads the latest snapshot by itself.
//! * Entries that are not ours, damaged, duplicated or from the future are counted and
//!   skipped; a gap in a publisher's sequence that is not explained by a trim stops the
//!   replica with an error instead of leaving it silently wrong.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod engine;
pub mod flow;
pub mod load;
pub mod local_redis;
pub mod metrics;
pub mod replica;
pub mod resolve;
pub mod sink;
pub mod source;
pub mod spool;
pub mod transform;
