//! The log engine behind a small trait, so the pipeline reads without it and a second engine
//! (NATS JetStream, say) could follow.
//!
//! An engine offers two things:
//! * append-only streams, one per partition of a task, whose entries carry one opaque payload
//!   and get an increasing [`Position`] from the engine;
//! * a key-value store for blobs: snapshot chunks, anchors and checkpoints.
//!
//! Every call is one round trip (appends of a whole batch are pipelined). Errors say whether
//! retrying can help ([`EngineError::Unavailable`]) or not; the callers own the retry loops,
//! with their backoff and their counters.

pub mod redis;

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

/// An entry's place in its stream. Redis stream IDs (`ms-seq`) fit exactly; an engine with
/// plain offsets would use `ms = 0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Major part (Redis: milliseconds).
    pub ms: u64,
    /// Minor part (Redis: sequence within the millisecond).
    pub seq: u64,
}

impl Position {
    /// Before every entry.
    pub const ZERO: Position = Position { ms: 0, seq: 0 };
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for Position {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EngineError::Protocol(format!("bad stream position {s:?}"));
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(Position {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// One entry read from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// Where it is.
    pub position: Position,
    /// Our payload field, `None` when the entry has none (someone else's entry).
    pub payload: Option<Vec<u8>>,
}

/// What went wrong talking to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineError {
    /// Not reachable, connection lost, or no answer in time: retrying later can help. For an
    /// append, some of the batch may have been stored.
    Unavailable(String),
    /// The engine refused the command (wrong key type, out of memory...): retrying the same
    /// command will not help.
    Rejected(String),
    /// The engine answered something we cannot interpret.
    Protocol(String),
}

impl EngineError {
    /// Whether a retry after a backoff can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, EngineError::Unavailable(_))
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Unavailable(e) => write!(f, "engine unavailable: {e}"),
            EngineError::Rejected(e) => write!(f, "engine rejected the command: {e}"),
            EngineError::Protocol(e) => write!(f, "unexpected engine reply: {e}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// The names of everything a task keeps in the engine.
///
/// Each partition's stream carries a hash tag (`{task.pN}`) so that on a Redis Cluster each
/// partition lands in its own slot, wherever the other partitions are.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Common prefix of every key.
    pub prefix: String,
}

impl Layout {
    /// Keys under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Layout {
            prefix: prefix.into(),
        }
    }
    /// The stream of one partition of a task.
    pub fn stream(&self, task: &str, partition: u16) -> String {
        format!("{}/streams/{{{task}.p{partition}}}", self.prefix)
    }
    /// The anchor of a task's latest snapshot.
    pub fn anchor(&self, task: &str) -> String {
        format!("{}/anchors/{task}", self.prefix)
    }
    /// One chunk of one snapshot.
    pub fn chunk(&self, task: &str, snapshot_id: u64, index: u32) -> String {
        format!("{}/snapshots/{task}/{snapshot_id}/{index}", self.prefix)
    }
    /// A replica's checkpoint. The hash tag puts it in the slot of the replica's Redis hash
    /// sink, so both can change in one transaction on a cluster too.
    pub fn checkpoint(&self, replica: &str) -> String {
        format!("{}/checkpoints/{{{replica}}}", self.prefix)
    }
    /// The Redis hash that a replica's hash sink writes.
    pub fn replica_hash(&self, replica: &str) -> String {
        format!("{}/replicas/{{{replica}}}", self.prefix)
    }
}

/// A log engine: partitioned streams plus a blob store.
///
/// Methods take `&self`; an implementation serialises internally as it needs. [`fork`](Self::fork)
/// gives a handle with its own connection, for a task that blocks on reads.
pub trait Engine: Send + Sync + 'static {
    /// A handle to the same engine with a connection of its own.
    fn fork(&self) -> Self
    where
        Self: Sized;

    /// Appends each `(stream, payload)` in order, in one round trip, and returns the positions
    /// given. `max_len` bounds each stream approximately (oldest entries go first).
    fn append(
        &self,
        batch: &[(String, Vec<u8>)],
        max_len: Option<u64>,
    ) -> impl Future<Output = Result<Vec<Position>, EngineError>> + Send;

    /// Reads up to `count` entries after each given position, waiting up to `block` when there
    /// is none (not at all when `block` is zero). Returns, per stream index in `from`, the entries read (streams with none are
    /// left out).
    fn read(
        &self,
        from: &[(String, Position)],
        count: usize,
        block: Duration,
    ) -> impl Future<Output = Result<Vec<(usize, Vec<StreamEntry>)>, EngineError>> + Send;

    /// Up to `count` entries strictly before `before` (the newest when `None`), newest first.
    fn read_back(
        &self,
        stream: &str,
        before: Option<Position>,
        count: usize,
    ) -> impl Future<Output = Result<Vec<StreamEntry>, EngineError>> + Send;

    /// Whether entries after `position` were deleted from the stream (trimmed, or removed
    /// one by one): a reader whose cursor is at `position` has missed them.
    fn lost_after(
        &self,
        stream: &str,
        position: Position,
    ) -> impl Future<Output = Result<bool, EngineError>> + Send;

    /// Deletes the entries before `position`; returns how many went.
    fn trim_before(
        &self,
        stream: &str,
        position: Position,
    ) -> impl Future<Output = Result<u64, EngineError>> + Send;

    /// Stores blobs, in one round trip.
    fn put(
        &self,
        items: &[(String, Vec<u8>)],
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Reads blobs, in one round trip; `None` for a missing key.
    fn get(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Option<Vec<u8>>>, EngineError>> + Send;

    /// Deletes blobs.
    fn delete(&self, keys: &[String]) -> impl Future<Output = Result<(), EngineError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_and_order() {
        let a: Position = "1700-3".parse().unwrap();
        assert_eq!(a, Position { ms: 1700, seq: 3 });
        assert_eq!(a.to_string(), "1700-3");
        assert!(a < "1700-4".parse().unwrap());
        assert!(a < "1701-0".parse().unwrap());
        assert!("17003".parse::<Position>().is_err());
        assert!("a-1".parse::<Position>().is_err());
    }
}
