//! `serde` support (the `serde` feature): every map serializes as a map of its entries and
//! deserializes from one.
//!
//! * **Serializing a map serializes a [`snapshot`](crate::AtomicMap::snapshot) of it**, so the
//!   output is the map at one instant even while other threads write, and it costs what that
//!   map's `snapshot()` costs (see each one's documentation). To serialize a weakly consistent
//!   view without that cost, serialize the entries of `iter()` yourself.
//! * A [`MapSnapshot`] serializes its own entries, and deserializes from them with version 0:
//!   the serialized form is the entries alone, as for the maps, and a version counts the
//!   history of a map that the reader of the output does not have.
//! * Deserializing builds the map with its hasher's `Default` and inserts the entries in input
//!   order; when a key repeats, the last value wins, as with `insert`.
//! * A [`HotSwap<T>`](HotSwap) serializes as its current value (one pinned load) and
//!   deserializes into a new cell holding that value. The version is not carried: it counts
//!   the publications of one cell, and a deserialized cell has made none (version 0, as
//!   [`HotSwap::new`]). A service that needs the version across a restart serializes
//!   `(cell.version(), cell.load_full())` itself.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::{AtomicMap, HotSwap, MapSnapshot, RcuMap, ReadMostlyMap, ShardedMap};

/// Entries reserved ahead from a map's length hint at most: the hint comes from the input, which
/// may be hostile, so a larger map grows as its entries actually arrive.
const MAX_PRESIZED_ENTRIES: usize = 4096;

impl<K, V, S> Serialize for MapSnapshot<K, V, S>
where
    K: Serialize,
    V: Serialize,
{
    fn serialize<Se: Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in self.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<T: Serialize> Serialize for HotSwap<T> {
    fn serialize<Se: Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        self.load().serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for HotSwap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(HotSwap::new)
    }
}

/// `Serialize` for a map type through its `snapshot()`; the bounds are those of `snapshot()`.
macro_rules! serialize_a_snapshot {
    ($map:ident where $($bounds:tt)*) => {
        impl<K, V, S> Serialize for $map<K, V, S>
        where
            K: Serialize,
            V: Serialize,
            $($bounds)*
        {
            fn serialize<Se: Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
                self.snapshot().serialize(serializer)
            }
        }
    };
}

serialize_a_snapshot!(AtomicMap where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Send + Sync + Clone + 'static,
    S: BuildHasher + Clone,
);
serialize_a_snapshot!(ShardedMap where K: Hash + Eq + Clone, V: Clone, S: BuildHasher + Clone,);
serialize_a_snapshot!(ReadMostlyMap where K: Hash + Eq + Clone, V: Clone, S: BuildHasher + Clone,);
serialize_a_snapshot!(RcuMap where K: Hash + Eq + Clone, V: Clone, S: BuildHasher + Clone,);

/// Marks the types a value produces, without owning them (so without their auto traits).
type Produces<T> = PhantomData<fn() -> T>;

/// Builds any map that can be collected from its entries.
struct EntriesVisitor<M, K, V>(Produces<(M, K, V)>);

impl<'de, M, K, V> Visitor<'de> for EntriesVisitor<M, K, V>
where
    M: FromIterator<(K, V)>,
    K: Deserialize<'de>,
    V: Deserialize<'de>,
{
    type Value = M;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<M, A::Error> {
        let mut entries = Entries {
            access,
            error: None,
            _entry: PhantomData,
        };
        let map = M::from_iter(&mut entries);
        match entries.error {
            Some(error) => Err(error),
            None => Ok(map),
        }
    }
}

/// The entries of a serialized map as an iterator, which ends at the first error and keeps it.
struct Entries<'de, A: MapAccess<'de>, K, V> {
    access: A,
    error: Option<A::Error>,
    _entry: Produces<(&'de (), K, V)>,
}

impl<'de, A, K, V> Iterator for Entries<'de, A, K, V>
where
    A: MapAccess<'de>,
    K: Deserialize<'de>,
    V: Deserialize<'de>,
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        if self.error.is_some() {
            return None;
        }
        match self.access.next_entry() {
            Ok(entry) => entry,
            Err(error) => {
                self.error = Some(error);
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let hint = self.access.size_hint().unwrap_or(0);
        (hint.min(MAX_PRESIZED_ENTRIES), None)
    }
}

/// `Deserialize` for a map type through [`EntriesVisitor`]; the bounds are those of its
/// `FromIterator`.
macro_rules! deserialize_from_entries {
    ($map:ident where $($bounds:tt)*) => {
        impl<'de, K, V, S> Deserialize<'de> for $map<K, V, S>
        where
            K: Deserialize<'de>,
            V: Deserialize<'de>,
            $($bounds)*
        {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_map(EntriesVisitor(PhantomData))
            }
        }
    };
}

deserialize_from_entries!(AtomicMap where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + Clone + 'static,
    S: BuildHasher + Default,
);
deserialize_from_entries!(MapSnapshot where K: Hash + Eq, S: BuildHasher + Default,);
deserialize_from_entries!(ShardedMap where K: Hash + Eq, S: BuildHasher + Clone + Default,);
deserialize_from_entries!(ReadMostlyMap where K: Hash + Eq + Clone, S: BuildHasher + Clone + Default,);
deserialize_from_entries!(RcuMap where K: Hash + Eq + Clone, V: Clone, S: BuildHasher + Clone + Default,);
