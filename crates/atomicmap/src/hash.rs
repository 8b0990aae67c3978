//! Hashing shared by every map: the default hasher and how a hash picks a shard.

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
