//! The registry of benchmarked maps. Adding a map is: an adapter type implementing
//! [`MapAdapter`] (in the file of its family), a [`MapId`] variant with its name, and one arm
//! in [`MapId::visit`].

pub mod atomicmap;
pub mod bare_growth;
pub mod captured;
pub mod floor;
pub mod growing_floor;
pub mod harness;
pub mod limit;
pub mod locked;
pub mod peers;
pub mod stop_the_world;

use crate::adapter::{CapturingAdapter, MapAdapter};
use crate::hasher::BenchHasher;
use crate::keys::BenchKey;

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
    /// not a map: operations that only `black_box` their key, timing the benchmark's own cost
    /// per operation. Run with every throughput workload, shown in the table's footer, never
    /// in [`MapId::ALL`] nor selectable with `--maps`.
    Harness,
    /// not a map: a fixed shared array of `AtomicMap`'s slots with no pin, resize or codec,
    /// the least work a map of that design can do. Run and shown like [`MapId::Harness`].
    Floor,
    /// not a map: a slot table of that design that grows, with a lock-free copy's locked
    /// instructions, one per thread; run with one thread, in throughput workloads that start
    /// empty, and shown in the footer.
    GrowingFloor,
    /// not a map: [`MapId::GrowingFloor`] with a plain copy, as a table that one writer at a
    /// time owns may make; run and shown with it.
    GrowingFloorPlainCopy,
    /// not a map, and not a bound: one slot table of that design, shared by every thread, that
    /// grows by stopping them all and copying in parallel, to set `AtomicMap`'s lock-free resize
    /// against; run with more than one thread and at most one per core, in throughput
    /// workloads that start empty, and shown in the footer.
    StopTheWorld,
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
            MapId::Harness => "harness",
            MapId::Floor => "floor",
            MapId::GrowingFloor => "growing floor",
            MapId::GrowingFloorPlainCopy => "growing floor, plain copy",
            MapId::StopTheWorld => "stop-the-world growth",
        }
    }

    /// The map named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<MapId> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Call `visitor` with this map's adapter type for keys `K` and hasher `S`.
    pub fn visit<K: BenchKey, S: BenchHasher, V: MapVisitor<K, S>>(self, visitor: V) -> V::Output {
        match self {
            MapId::AtomicMap => visitor.visit::<self::atomicmap::AtomicMapAdapter<K, S>>(),
            MapId::ReadMostlyMap => visitor.visit::<self::atomicmap::ReadMostlyAdapter<K, S>>(),
            MapId::ShardedMap => visitor.visit::<self::atomicmap::ShardedAdapter<K, S>>(),
            MapId::RcuMap => visitor.visit::<self::atomicmap::RcuMapAdapter<K, S>>(),
            MapId::DashMap => visitor.visit::<peers::DashMapAdapter<K, S>>(),
            MapId::Papaya => visitor.visit::<peers::PapayaAdapter<K, S>>(),
            MapId::Scc => visitor.visit::<peers::SccAdapter<K, S>>(),
            MapId::Flurry => visitor.visit::<peers::FlurryAdapter<K, S>>(),
            MapId::RwLock => visitor.visit::<locked::RwLockAdapter<K, S>>(),
            MapId::RwLockX64 => visitor.visit::<locked::ShardedRwLockAdapter<K, S>>(),
            MapId::Limit => visitor.visit::<limit::LimitAdapter<S>>(),
            MapId::Harness => visitor.visit::<harness::HarnessAdapter>(),
            MapId::Floor => visitor.visit::<floor::FloorAdapter<S>>(),
            MapId::GrowingFloor => visitor.visit::<growing_floor::GrowingFloorAdapter<S, true>>(),
            MapId::GrowingFloorPlainCopy => {
                visitor.visit::<growing_floor::GrowingFloorAdapter<S, false>>()
            }
            MapId::StopTheWorld => visitor.visit::<stop_the_world::StopTheWorldAdapter<S>>(),
        }
    }
}

impl MapId {
    /// Call `visitor` with this map's adapter type and the adapter of the same map with change
    /// capture on; `None` for the maps without capture.
    pub fn visit_captured<K: BenchKey, S: BenchHasher, V: CaptureVisitor<K, S>>(
        self,
        visitor: V,
    ) -> Option<V::Output> {
        match self {
            MapId::AtomicMap => Some(visitor.visit::<
                self::atomicmap::AtomicMapAdapter<K, S>,
                captured::VersionedAtomicMapAdapter<K, S>,
                captured::CapturedAtomicMapAdapter<K, S>,
            >()),
            MapId::ShardedMap => Some(visitor.visit::<
                self::atomicmap::ShardedAdapter<K, S>,
                captured::VersionedShardedAdapter<K, S>,
                captured::CapturedShardedAdapter<K, S>,
            >()),
            MapId::RcuMap => Some(visitor.visit::<
                self::atomicmap::RcuMapAdapter<K, S>,
                captured::VersionedRcuMapAdapter<K, S>,
                captured::CapturedRcuMapAdapter<K, S>,
            >()),
            _ => None,
        }
    }
}

/// Something to do with a map's adapter type with capture off and on.
pub trait CaptureVisitor<K: BenchKey, S: BenchHasher> {
    /// What the visit produces.
    type Output;
    /// Do it with adapter `Off` (the plain map), `Stored` (the same map holding versioned
    /// values, without capture) and `On` (the same map capturing changes).
    fn visit<Off: MapAdapter<K, S>, Stored: MapAdapter<K, S>, On: CapturingAdapter<K, S>>(
        self,
    ) -> Self::Output;
}

/// Something to do with a map's adapter type (check it, run it), chosen at run time by
/// [`MapId::visit`] and monomorphised per adapter.
pub trait MapVisitor<K: BenchKey, S: BenchHasher> {
    /// What the visit produces.
    type Output;
    /// Do it with adapter `A`.
    fn visit<A: MapAdapter<K, S>>(self) -> Self::Output;
}
