//! A snapshot whose entries carry their versions.

use std::fmt;
use std::hash::{BuildHasher, Hash};

use equivalent::Equivalent;

use super::event::Versioned;
use super::version::Version;
use crate::hash::DefaultHashBuilder;
use crate::snapshot::{MapSnapshot, SnapshotIter};

/// A [`CapturedMap`](super::CapturedMap) at one instant: every entry with the version of the
/// mutation that stored it, and the highest of those versions.
pub struct VersionedSnapshot<K, V, S = DefaultHashBuilder> {
    entries: MapSnapshot<K, Versioned<V>, S>,
    max_version: Version,
}

impl<K, V, S> VersionedSnapshot<K, V, S> {
    pub(crate) fn new(entries: MapSnapshot<K, Versioned<V>, S>) -> Self {
        let max_version = entries
            .iter()
            .map(|(_, entry)| entry.version)
            .max()
            .unwrap_or(Version::ZERO);
        VersionedSnapshot {
            entries,
            max_version,
        }
    }

    /// The highest version of any entry ([`Version::ZERO`] when empty). Removals leave no
    /// entry, so a removal newer than every entry is not reflected here.
    pub fn max_version(&self) -> Version {
        self.max_version
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the snapshot has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry with its version, in no particular order.
    pub fn iter(&self) -> SnapshotIter<'_, K, Versioned<V>, S> {
        self.entries.iter()
    }

    /// The entries with their versions, as the map's plain [`MapSnapshot`].
    pub fn entries(&self) -> &MapSnapshot<K, Versioned<V>, S> {
        &self.entries
    }

    /// The values without their versions, cloned into any map type.
    pub fn to_map<M: FromIterator<(K, V)>>(&self) -> M
    where
        K: Clone,
        V: Clone,
    {
        self.iter()
            .map(|(key, entry)| (key.clone(), entry.value.clone()))
            .collect()
    }
}

impl<K, V, S> VersionedSnapshot<K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher + Clone,
{
    /// The entry for `key` with its version.
    pub fn get<Q>(&self, key: &Q) -> Option<&Versioned<V>>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.get(key)
    }
}

impl<'a, K, V, S> IntoIterator for &'a VersionedSnapshot<K, V, S> {
    type Item = (&'a K, &'a Versioned<V>);
    type IntoIter = SnapshotIter<'a, K, Versioned<V>, S>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K: Clone, V: Clone, S: Clone> Clone for VersionedSnapshot<K, V, S> {
    /// Shares the entries (see [`MapSnapshot`]'s `Clone`).
    fn clone(&self) -> Self {
        VersionedSnapshot {
            entries: self.entries.clone(),
            max_version: self.max_version,
        }
    }
}

impl<K, V, S> PartialEq for VersionedSnapshot<K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher + Clone,
{
    /// Same keys with equal values *and* versions: two snapshots are equal when they
    /// describe the same history, as replication compares them. (Compare
    /// [`to_map`](Self::to_map)s to ignore versions.)
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<K, V, S> Eq for VersionedSnapshot<K, V, S>
where
    K: Hash + Eq,
    V: Eq,
    S: BuildHasher + Clone,
{
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for VersionedSnapshot<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionedSnapshot")
            .field("max_version", &self.max_version)
            .field("entries", &self.entries)
            .finish()
    }
}
