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
//! # Example
//!
//! A service publishes its map; another process keeps a replica of it.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use atomicmap_replicator::engine::{redis::RedisEngine, Engine, Layout};
//! use atomicmap_replicator::metrics::SourceStats;
//! use atomicmap_replicator::replica::{Replica, ReplicaConfig};
//! use atomicmap_replicator::resolve::LastWriterWins;
//! use atomicmap_replicator::sink::{LocalMap, MapSink};
//! use atomicmap_replicator::source::{self, Source, SourceConfig, SourceMap};
//! use tokio::sync::watch;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = RedisEngine::new("redis://127.0.0.1:6379/")?;
//! let layout = Layout::new("atomicmap");
//! let (_stop, shutdown) = watch::channel(false);
//!
//! // In the service that owns the map:
//! let map = Arc::new(SourceMap::with_node(1));
//! let config = SourceConfig::new("routes", 4, layout.clone(), "routes.spool".into());
//! let stats = Arc::new(SourceStats::default());
//! let recovery = source::recover(&engine, &config, &map, &stats).await?; // back from Redis
//! let publisher = Source::start(engine.fork(), config, map.clone(), stats)
//!     .await?
//!     .with_recovery(recovery);
//! tokio::spawn(publisher.run(shutdown.clone()));
//! map.insert("gw-1".into(), b"eu-west".to_vec()); // writers use the map as usual
//!
//! // In each replica process:
//! let routes = Arc::new(LocalMap::new());
//! let config = ReplicaConfig::new("replica-1", vec!["routes".into()], 4, layout);
//! let mut replica = Replica::new(config, engine.fork(), LastWriterWins, MapSink::new(routes.clone()));
//! replica.start(true).await?;
//! tokio::spawn(async move { replica.run(shutdown).await });
//! let _hops = routes.get("gw-1"); // readers on any thread
//! # Ok(())
//! # }
//! ```
//!
//! The `atomicmap-replicate` binary runs a replica (`replica`), a source under a synthetic
//! write load (`source`, for trying it out; a service embeds [`source::Source`] as above), the
//! demo and the benchmark.
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
