//! atomicmap: concurrent maps for Rust services.
#![warn(missing_docs)]

mod sync;

pub mod read_mostly;
pub mod sharded;
pub mod hot_swap;
pub use read_mostly::{ReadMostlyMap, ReadMostlyStats};
pub use hot_swap::{HotSwap, RcuMap, RcuSnapshot, Snapshot, VersionMismatch};
pub use sharded::{ShardedMap, ShardedMapError};
mod reclaim;
