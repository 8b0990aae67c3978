//! atomicmap: concurrent maps for Rust services.
#![warn(missing_docs)]

mod atomic_map;
mod error;
mod hash;
mod persistent;
mod reclaim;
#[cfg(feature = "serde")]
mod serde_impls;
mod sync;

pub use atomic_map::{AtomicMap, Iter, MapRef, ValueRef};
pub use capture::{CapturedMap, ChangeEvent, SubscribeOptions, Subscription, Version, Versioned};
pub use error::CapacityError;
pub use hash::DefaultHashBuilder;

pub mod capture;
pub mod hot_swap;
pub mod read_mostly;
pub mod sharded;
pub mod snapshot;
pub use hot_swap::{Guard, HotSwap, PersistentMap, RcuMap, VersionMismatch};
pub use read_mostly::{ReadMostlyMap, ReadMostlyStats};
pub use sharded::{ShardedMap, ShardedMapError};
pub use snapshot::{MapSnapshot, SnapshotIter};
