//! The registry of benchmarked maps. Adding a map is: an adapter type implementing
//! [`MapAdapter`] (in the file of its family), a [`MapId`] variant with its name, and one arm
//! in [`MapId::visit`].

pub mod atomicmap;
pub mod captured;
pub mod limit;
pub mod locked;
pub mod peers;

use crate::adapter::{BenchKey, CapturingAdapter, MapAdapter};

/// Every map the benchmark knows, in table order: ours, then the peers, then `LIMIT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapId {
    /// `atomicmap::AtomicMap`, the lock-free flagship
    AtomicMap,
    /// `atomicmap::ReadMostlyMap`
    ReadMostlyMap,
    /// `atomicmap::ShardedMap`
    ShardedMap,
    /// `atomicmap::RcuMap`, a map published whole through a `HotSwap` cell
    RcuMap,
    /// `dashmap::DashMap`
    DashMap,
    /// `papaya::HashMap`
    Papaya,
    /// `scc::HashMap`
    Scc,
    /// `flurry::HashMap`
    Flurry,
    /// `RwLock<std::collections::HashMap>`
    RwLock,
    /// 64 `RwLock<HashMap>` shards
    RwLockX64,
    /// private unsynchronised `HashMap` per thread
    Limit,
}

impl MapId {
    /// All maps, in the order of the table.
    pub const ALL: &'static [MapId] = &[
        MapId::AtomicMap,
        MapId::ReadMostlyMap,
        MapId::ShardedMap,
        MapId::RcuMap,
        MapId::DashMap,
        MapId::Papaya,
        MapId::Scc,
        MapId::Flurry,
        MapId::RwLock,
        MapId::RwLockX64,
        MapId::Limit,
    ];

    /// The name used in the table, JSON, CSV and `--maps`.
    pub fn name(self) -> &'static str {
        match self {
            MapId::AtomicMap => "AtomicMap",
            MapId::ReadMostlyMap => "ReadMostlyMap",
            MapId::ShardedMap => "ShardedMap",
            MapId::RcuMap => "RcuMap",
            MapId::DashMap => "dashmap",
            MapId::Papaya => "papaya",
            MapId::Scc => "scc",
            MapId::Flurry => "flurry",
            MapId::RwLock => "RwLock<HashMap>",
            MapId::RwLockX64 => "RwLock<HashMap>x64",
            MapId::Limit => "LIMIT",
        }
    }

    /// The map named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<MapId> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Call `visitor` with this map's adapter type for keys `K`.
    pub fn visit<K: BenchKey, V: MapVisitor<K>>(self, visitor: V) -> V::Output {
        match self {
            MapId::AtomicMap => visitor.visit::<self::atomicmap::AtomicMapAdapter<K>>(),
            MapId::ReadMostlyMap => visitor.visit::<self::atomicmap::ReadMostlyAdapter<K>>(),
            MapId::ShardedMap => visitor.visit::<self::atomicmap::ShardedAdapter<K>>(),
            MapId::RcuMap => visitor.visit::<self::atomicmap::RcuMapAdapter<K>>(),
            MapId::DashMap => visitor.visit::<peers::DashMapAdapter<K>>(),
            MapId::Papaya => visitor.visit::<peers::PapayaAdapter<K>>(),
            MapId::Scc => visitor.visit::<peers::SccAdapter<K>>(),
            MapId::Flurry => visitor.visit::<peers::FlurryAdapter<K>>(),
            MapId::RwLock => visitor.visit::<locked::RwLockAdapter<K>>(),
            MapId::RwLockX64 => visitor.visit::<locked::ShardedRwLockAdapter<K>>(),
            MapId::Limit => visitor.visit::<limit::LimitAdapter>(),
        }
    }
}

impl MapId {
    /// Call `visitor` with this map's adapter type and the adapter of the same map with change
    /// capture on; `None` for the maps without capture.
    pub fn visit_captured<K: BenchKey, V: CaptureVisitor<K>>(
        self,
        visitor: V,
    ) -> Option<V::Output> {
        match self {
            MapId::AtomicMap => Some(visitor.visit::<
                self::atomicmap::AtomicMapAdapter<K>,
                captured::VersionedAtomicMapAdapter<K>,
                captured::CapturedAtomicMapAdapter<K>,
            >()),
            MapId::ShardedMap => Some(visitor.visit::<
                self::atomicmap::ShardedAdapter<K>,
                captured::VersionedShardedAdapter<K>,
                captured::CapturedShardedAdapter<K>,
            >()),
            MapId::RcuMap => Some(visitor.visit::<
                self::atomicmap::RcuMapAdapter<K>,
                captured::VersionedRcuMapAdapter<K>,
                captured::CapturedRcuMapAdapter<K>,
            >()),
            _ => None,
        }
    }
}

/// Something to do with a map's adapter type with capture off and on.
pub trait CaptureVisitor<K: BenchKey> {
    /// What the visit produces.
    type Output;
    /// Do it with adapter `Off` (the plain map), `Stored` (the same map holding versioned
    /// values, without capture) and `On` (the same map capturing changes).
    fn visit<Off: MapAdapter<K>, Stored: MapAdapter<K>, On: CapturingAdapter<K>>(
        self,
    ) -> Self::Output;
}

/// Something to do with a map's adapter type (check it, run it), chosen at run time by
/// [`MapId::visit`] and monomorphised per adapter.
pub trait MapVisitor<K: BenchKey> {
    /// What the visit produces.
    type Output;
    /// Do it with adapter `A`.
    fn visit<A: MapAdapter<K>>(self) -> Self::Output;
}
