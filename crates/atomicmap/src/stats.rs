//! [`MapStats`]: what a map reports about its internals, the same figures for every map, so
//! that a service can watch resizes, tombstones, probe lengths and garbage the way seed 003
//! watches `sync.Map`'s misses. With the `metrics` feature, [`MapStats::record`] publishes them
//! through the `metrics` facade, where a Prometheus exporter picks them up.

/// A map's internals at one moment, from its `stats()`. Each figure is read without stopping
/// writers, so under concurrent writes the figures are each current but not one consistent
/// state. A figure that has no meaning for a map (tombstones of a map without open
/// addressing, say) is 0, and that map's `stats()` docs say which.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapStats {
    /// Entries, as `len()` reports them.
    pub len: usize,
    /// Entries the map holds before it next grows its table.
    pub capacity: usize,
    /// Resizes (grow, shrink or compaction) completed since the map was made.
    pub resizes: u64,
    /// Resizes started and not yet finished.
    pub migrations_in_flight: usize,
    /// Slots that hold a removed key's tombstone (open addressing only).
    pub tombstones: usize,
    /// The longest distance, in slots, from a key's home slot to where it is stored.
    pub longest_probe: usize,
    /// Bytes retired by writers (replaced values, removed entries, old tables) and not yet
    /// freed, because a reader's pin may still see them.
    pub garbage_bytes: usize,
    /// Snapshots taken since the map was made.
    pub snapshots_taken: u64,
}

#[cfg(feature = "metrics")]
impl MapStats {
    /// Publishes every figure as a gauge named `atomicmap_<figure>` (for example
    /// `atomicmap_tombstones`), labelled `map = name`, through the `metrics` crate's facade:
    /// whichever recorder the service installed (a Prometheus exporter, say) receives them.
    /// Call it from the service's own metrics tick.
    pub fn record(&self, name: &str) {
        let figures = [
            ("atomicmap_len", self.len as f64),
            ("atomicmap_capacity", self.capacity as f64),
            ("atomicmap_resizes", self.resizes as f64),
            (
                "atomicmap_migrations_in_flight",
                self.migrations_in_flight as f64,
            ),
            ("atomicmap_tombstones", self.tombstones as f64),
            ("atomicmap_longest_probe", self.longest_probe as f64),
            ("atomicmap_garbage_bytes", self.garbage_bytes as f64),
            ("atomicmap_snapshots_taken", self.snapshots_taken as f64),
        ];
        for (figure, value) in figures {
            metrics::gauge!(figure, "map" => name.to_owned()).set(value);
        }
    }
}
