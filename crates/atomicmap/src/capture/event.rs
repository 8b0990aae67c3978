//! What a subscriber receives: one committed mutation.

use super::version::Version;

/// A value together with the version of the mutation that stored it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Versioned<V> {
    /// The stored value.
    pub value: V,
    /// The version of the insert or update that stored it.
    pub version: Version,
}

/// One committed mutation of a [`CapturedMap`](super::CapturedMap).
///
/// Values are *cloned* into events: one clone per subscriber per mutation (none when nobody
/// subscribes). For values that are expensive to clone, store an `Arc<T>` in the map, which
/// makes every clone a reference-count increment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChangeEvent<K, V> {
    /// `key` was absent and now holds `value`.
    Insert {
        /// The key written.
        key: K,
        /// The value it now holds.
        value: V,
        /// The mutation's version.
        version: Version,
    },
    /// `key` held a value and now holds `value`.
    Update {
        /// The key written.
        key: K,
        /// The value it now holds.
        value: V,
        /// The mutation's version.
        version: Version,
    },
    /// `key` held a value and was removed.
    Remove {
        /// The key removed.
        key: K,
        /// The mutation's version.
        version: Version,
    },
}

impl<K, V> ChangeEvent<K, V> {
    /// The key the mutation changed.
    pub fn key(&self) -> &K {
        match self {
            ChangeEvent::Insert { key, .. }
            | ChangeEvent::Update { key, .. }
            | ChangeEvent::Remove { key, .. } => key,
        }
    }

    /// The mutation's version.
    pub fn version(&self) -> Version {
        match self {
            ChangeEvent::Insert { version, .. }
            | ChangeEvent::Update { version, .. }
            | ChangeEvent::Remove { version, .. } => *version,
        }
    }

    /// The value the key holds after the mutation; `None` for a removal.
    pub fn value(&self) -> Option<&V> {
        match self {
            ChangeEvent::Insert { value, .. } | ChangeEvent::Update { value, .. } => Some(value),
            ChangeEvent::Remove { .. } => None,
        }
    }

    /// The event for a commit on `key`, which held a value before it if `had_value` and holds
    /// `next` after it (`None`: removed); `None` when nothing changed (removing an absent key).
    pub(crate) fn of_commit(
        key: K,
        had_value: bool,
        next: Option<V>,
        version: Version,
    ) -> Option<Self> {
        match (had_value, next) {
            (false, Some(value)) => Some(ChangeEvent::Insert {
                key,
                value,
                version,
            }),
            (true, Some(value)) => Some(ChangeEvent::Update {
                key,
                value,
                version,
            }),
            (true, None) => Some(ChangeEvent::Remove { key, version }),
            (false, None) => None,
        }
    }
}
