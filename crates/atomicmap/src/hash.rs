//! Hashing shared by every map: the default hasher, how a hash picks a shard, and tables whose
//! keys carry their hash.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use equivalent::Equivalent;

/// The hasher every map uses unless told otherwise: foldhash's randomly seeded hasher, in its
/// quality variant (one more multiply than the fast one). `AtomicMap` finds a key's home slot
/// in the low bits of its hash, and for some process seeds the fast variant's low bits spread
/// sequential integer keys over a fraction of the table: keys 0..512 landed in 2 of 16 regions
/// of an 8192-slot table, so linear probing built clusters that made a half-empty table look
/// crowded (and grew presized maps).
pub type DefaultHashBuilder = foldhash::quality::RandomState;

/// Hash bits std's `HashMap` keeps as its per-slot tag; shard selection skips them, so that
/// the keys of one shard do not all share a tag prefix.
const TABLE_TAG_BITS: u32 = 7;

/// The shard of `hash` among `64 - shard_shift` power-of-two shards (`shard_shift == 64`:
/// one shard). `ShardedMap` and the snapshots of its shards both route through it, so they
/// agree on where a key lives.
pub(crate) fn shard_index(hash: u64, shard_shift: u32) -> usize {
    (hash << TABLE_TAG_BITS)
        .checked_shr(shard_shift)
        .unwrap_or(0) as usize
}

/// A key stored with its hash, in a table that hashes with [`StoredHash`] (see
/// [`HashedTable`]).
#[derive(Clone)]
pub(crate) struct Hashed<K> {
    pub(crate) hash: u64,
    pub(crate) key: K,
}

/// A std `HashMap` whose keys carry their hash. It never runs a key's `Hash` again once the key
/// is stored: when it grows or re-hashes in place it reads the stored hash. That matters for
/// panics: when a `Hash` panics while std's `HashMap` re-hashes in place, it drops every key not
/// re-hashed yet, so a panicking user `Hash` would lose entries. The map computes the hash with
/// its own hasher before it touches the table (and uses the same hash to pick a shard).
pub(crate) type HashedTable<K, V> = HashMap<Hashed<K>, V, StoredHash>;

impl<K> Hash for Hashed<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<K: Eq> PartialEq for Hashed<K> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for Hashed<K> {}

/// What a [`HashedTable`] (or a `PersistentMap`'s trie) is searched by: either a stored key or
/// a [`Probe`], seen through one object type, because std's `HashMap::get` compares the query
/// with each stored key *as the same borrowed type*. Going through a trait object over `K`
/// (not over the query type) is what lets a probe use [`Equivalent`] rather than `Borrow`: the
/// stored side never has to produce a `&Q`, the probe asks `Q::equivalent(&K)` instead.
pub(crate) trait Lookup<K> {
    /// The hash by the map's hasher.
    fn hash(&self) -> u64;
    /// The stored key, or `None` for a probe.
    fn stored_key(&self) -> Option<&K>;
    /// Whether this stands for a key equal to `stored`.
    fn matches(&self, stored: &K) -> bool;
}

impl<K: Eq> Lookup<K> for Hashed<K> {
    fn hash(&self) -> u64 {
        self.hash
    }

    fn stored_key(&self) -> Option<&K> {
        Some(&self.key)
    }

    fn matches(&self, stored: &K) -> bool {
        self.key == *stored
    }
}

impl<'a, K: Eq + 'a> Borrow<dyn Lookup<K> + 'a> for Hashed<K> {
    fn borrow(&self) -> &(dyn Lookup<K> + 'a) {
        self
    }
}

impl<K> Hash for dyn Lookup<K> + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(Lookup::hash(self));
    }
}

impl<K> PartialEq for dyn Lookup<K> + '_ {
    fn eq(&self, other: &Self) -> bool {
        Lookup::hash(self) == Lookup::hash(other)
            && match (self.stored_key(), other.stored_key()) {
                (_, Some(stored)) => self.matches(stored),
                (Some(stored), None) => other.matches(stored),
                // A table holds stored keys only, so a search never compares two probes.
                (None, None) => false,
            }
    }
}

impl<K> Eq for dyn Lookup<K> + '_ {}

/// A search of a [`HashedTable`] for `key`, whose hash (by the map's hasher) is `hash`; it
/// matches a stored key by [`Equivalent`].
pub(crate) struct Probe<'q, Q: ?Sized> {
    pub(crate) hash: u64,
    pub(crate) key: &'q Q,
}

impl<K, Q: Equivalent<K> + ?Sized> Lookup<K> for Probe<'_, Q> {
    fn hash(&self) -> u64 {
        self.hash
    }

    fn stored_key(&self) -> Option<&K> {
        None
    }

    fn matches(&self, stored: &K) -> bool {
        self.key.equivalent(stored)
    }
}

impl<'q, Q: ?Sized> Probe<'q, Q> {
    /// This probe as the object type a table is searched by.
    pub(crate) fn lookup<K>(&self) -> &(dyn Lookup<K> + '_)
    where
        Q: Equivalent<K>,
    {
        self
    }
}

/// The hasher of a [`HashedTable`]: the hash of a key is the hash stored with it.
pub(crate) type StoredHash = BuildHasherDefault<StoredHashHasher>;

/// Hasher of [`StoredHash`]: hands back the one `u64` a [`Hashed`] key or a [`Lookup`] writes.
#[derive(Default)]
pub(crate) struct StoredHashHasher(u64);

impl Hasher for StoredHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
}
