//! The lock-free protocol of [`AtomicMap`](crate::AtomicMap): slots, probing, and the one CAS
//! that commits every update. This layer holds all of `AtomicMap`'s `unsafe`; what leaves it is
//! typed: keys and values as [`Shared`] handles whose lifetime is the caller's guard, values to
//! store as [`Staged`] decisions, never a raw word.
//!
//! # Modules
//! ```text
//!   raw (this file: find, write, iterate; the writer's side of resizing)
//!    ├── freeze ──▶ migrate ──▶ policy        snapshot = a migration that records what it moves
//!    ├── migrate (Migrator: start / help / complete a resize)
//!    ├── policy  (when to resize, to what size)
//!    ├── pending (keys and values on their way into a slot)
//!    ├── held    (a lent value or a walk that owns its pin: `AtomicMap::insert`, `iter`)
//!    ├── shared  (guard-lifetimed handles on slot contents)
//!    ├── chain   (root table and successor links)
//!    ├── probe   (the one probe sequence)
//!    └── table, word (slot arrays; the encoding of keys and values in words)
//! ```
//! Arrows point one way: nothing below `raw` calls back into it.
//!
//! # Layout
//! The map points (`root`, see `chain`) to a [`Table`]: a power-of-two array of slots, each a
//! key word and a value word (see `word` for what a word can hold). Keys are found by linear
//! probing from `hash & mask` (`probe`).
//!
//! # Slot states and who moves them
//! ```text
//!  key word:    EMPTY ──claim (writer inserting a new key)──▶ key      (fixed for the table's life)
//!               EMPTY ──seal (resize helper, or a writer diverted by a resize)──▶ SEALED
//!  value word:  ABSENT ◀──commit──▶ value ◀──commit──▶ value          (writers: insert/update/remove)
//!               ABSENT / value ──resize helper──▶ MOVED or DROPPED     (final)
//!               DROPPED ──the writer whose key box it is──▶ MOVED      (re-homing, see `migrate`)
//! ```
//! * A key word changes at most once, from `EMPTY`. So a slot, once it holds key `k`, holds `k`
//!   until the table is discarded, and a probe for `k` that meets `EMPTY` has proved `k` is not
//!   in this table (keys are claimed at the first `EMPTY` of their probe sequence, and nothing
//!   ever empties a slot).
//! * **Every insert, update and remove is committed by one CAS on a value word.** Inserting a new
//!   key first claims a slot (a CAS on the key word), but the key is absent until the value CAS:
//!   a claimed key with value `ABSENT` reads as missing. A remove CASes the value to `ABSENT`
//!   and leaves the key: a *tombstone*. Re-inserting the same key reuses its slot; tombstones of
//!   other keys are dropped by the next resize, which copies only live entries (so a table
//!   emptied by removes compacts itself, see `migrate`).
//! * `MOVED`, `DROPPED` and `SEALED` mean "look in the next table" and are final for this table.
//! * Three writes have a short form besides the general `write`: an insert of an inline key and
//!   value into the root table, a remove of a key whose value is inline, and an update (or an
//!   `upsert` of a present key) from an inline value to another (`insert_inline`,
//!   `remove_inline`, `update_inline`). Each is the same probe and the same value CAS, taken
//!   only while the root has no successor and only over inline words, so that there is no box
//!   to retire and no resize to help or divert to. A new key is claimed at the `EMPTY` slot
//!   that ended the probe with the checks and the `SeqCst` CAS of the general claim, and only
//!   when the probe was too short to call for a crowding check (`claim_free`). Anything else
//!   (a `SEALED` slot, a long probe, paused claims, a moved or boxed value, a lost race) falls
//!   back to the general write, which starts over and finds a key the short form claimed as
//!   its own.
//! * A lookup has a short form too (`find_short`): the same answers as `search` for inline keys
//!   with inline or absent values, and none otherwise (a boxed key or value, a `SEALED` slot, a
//!   value moved on), when the full search runs. A `get` and the short writes take the root
//!   only if the guard's reservation already covers it (`Chain::try_root`), and fall back
//!   rather than raise it. So they make no call: a call would make every operation save and
//!   restore registers, and the shorter an operation, the more of the next ones' cache misses
//!   the CPU starts while it waits (docs/scaling.md).
//! * A batch of lookups (`find_each`) protects the root once per group of keys and runs every
//!   short lookup of the group in that table, which may stop being the root meanwhile. That is
//!   safe for the same reason a lookup that stalls after loading the root is: the guard keeps
//!   the table allocated, and before the root moves past a table its resize has sealed every
//!   `EMPTY` slot and forwarded every value (`MOVED`, `DROPPED`), so the short lookup in it
//!   answers only with what the map held at the instant of its loads, or falls back to the
//!   full search from the current root.
//!
//! # Linearization points
//! * `get`: the load of the value word (a value, or `ABSENT`), or the load of `EMPTY` that ends
//!   the probe: at that instant the key had no value in the map.
//! * insert/update/remove: the successful value CAS; a remove or update of a missing key: the
//!   load that proved it missing, as for `get`.
//!
//! # Orderings
//! * Claims and commits are `AcqRel` CASes: release publishes a boxed key or value (and its
//!   birth epoch) before its word, acquire lets a failing writer read the winner's box.
//! * Loads of key and value words are `Acquire`, pairing with those releases. No reader ever
//!   writes shared memory except its own reclamation record, so reads do no read-modify-write
//!   and take no lock; their only other cost is the pin (see `reclaim`).
//! * A word is compared by value, so ABA on a value word cannot corrupt the map: a CAS that
//!   succeeds against an old word does so because the slot holds that exact word, and a boxed
//!   word cannot be freed and its address reused while any thread that read it is pinned
//!   (every load of a pointer word that is then read through goes through `shared::load`,
//!   which protects it). Two probes only compare key words and never read through them, so
//!   they load box words plainly: an insert's short form, whose key is inline and so equals no
//!   box word, and a resize's carry, whose key's box is alive under its guard, so no other key
//!   has its address.
//!
//! # Progress
//! Readers never wait: a lookup probes at most every slot of each table it visits, and the
//! chain of tables is finite. Writers are lock-free: a failed CAS means another writer
//! succeeded. Resizes are cooperative and bounded per operation (see `migrate`).

mod chain;
mod freeze;
mod held;
mod migrate;
mod pending;
mod policy;
mod probe;
mod shared;
mod table;
mod word;

use std::hash::{BuildHasher, Hash};

use equivalent::Equivalent;
use std::ptr;
// std's, not `crate::sync`'s, for `RawMap::reserved_slots` only (see there).
use std::sync::atomic::AtomicUsize as StdAtomicUsize;

use crate::error::CapacityError;
use crate::reclaim::{free_box, Collector, Guard};
use crate::sync::{Backoff, Ordering};
use chain::Chain;
use migrate::{Migrator, Start};
use pending::PendingKey;
use policy::out_of_memory;
use probe::{Geometry, Probe};
use table::{Slot, Table};
use word::{Codec, ABSENT, DROPPED, EMPTY, MOVED, SEALED};

pub use held::GuardedRef;
pub(in crate::atomic_map) use held::PinnedWalk;
pub(in crate::atomic_map) use pending::{PendingValue, Staged};
pub(in crate::atomic_map) use shared::Shared;
pub use shared::ValueRef;

/// Lookups whose home slots [`RawMap::find_each`] prefetches together: enough misses in flight
/// to cover the memory latency (a core tracks 10-20 outstanding misses), few enough that the
/// first lines are still cached when their lookups run.
pub(in crate::atomic_map) const BATCH: usize = 32;

/// The map's shared state; every method takes a guard from [`RawMap::pin`].
pub(in crate::atomic_map) struct RawMap<K: 'static, V: 'static, S> {
    chain: Chain<K, V>,
    hasher: S,
    collector: Collector,
    /// Slots the table keeps however few keys it holds: what `with_capacity` and `reserve` asked
    /// for, until `shrink_to` lowers it. Only shrinks and compactions read it, so it is `std`'s
    /// atomic, used `Relaxed`: a sizing hint that no protocol step depends on, which loom need not
    /// interleave.
    reserved_slots: StdAtomicUsize,
}

/// Where a write for a key should happen.
enum Located<'g> {
    /// The slot holding the key (claimed by this call, or earlier).
    Here(&'g Slot),
    /// The key is not in this table; continue in this (next) table.
    Next(&'g Table),
    /// The key is absent and the caller has no key to insert.
    Absent,
}

/// The key a write is for, as the probe loop sees it.
enum Query<'q, 'c, K: 'static, Q: ?Sized> {
    /// A borrowed key: the write cannot insert it.
    Borrowed(&'q Q),
    /// An owned key stored inline: its word is the claim, and equal words are equal keys.
    Inline(u64),
    /// An owned key that is boxed on its first claim.
    Owned(PendingKey<'c, K>),
}

/// The outcome of a write.
pub(in crate::atomic_map) struct Written<'g, V> {
    /// The value the write replaced, or found if it decided not to write (`None`: absent).
    pub(in crate::atomic_map) previous: Option<Shared<'g, V>>,
    /// Whether the write committed.
    pub(in crate::atomic_map) committed: bool,
}

/// A position in a walk of the map's entries ([`RawMap::walk`]): the table that was the root
/// when the walk started, kept allocated by the walk's guard, and the next slot to look at.
#[derive(Clone)]
pub(in crate::atomic_map) struct Walk<'g> {
    table: &'g Table,
    next: usize,
}

impl Walk<'_> {
    /// Slots not yet passed: an upper bound on the entries still to come.
    pub(in crate::atomic_map) fn slots_left(&self) -> usize {
        self.table.capacity() - self.next
    }
}

/// What [`RawMap::table_stats`] found in the current table.
pub(in crate::atomic_map) struct TableStats {
    pub(in crate::atomic_map) slots: usize,
    /// Tables the map had before this one (every resize and every snapshot adds one).
    pub(in crate::atomic_map) generation: u64,
    /// Whether a resize (or a snapshot's freezing migration) of it is in flight.
    pub(in crate::atomic_map) migrating: bool,
    pub(in crate::atomic_map) tombstones: usize,
    pub(in crate::atomic_map) longest_probe: usize,
}

/// Why [`RawMap::root_slot`] found no slot.
enum RootMiss<'g> {
    /// The key has no slot in the map; its probe of the root table ended at this free slot.
    Absent(FreeSlot<'g>),
    /// The key may have one the short writes do not look at.
    Elsewhere,
}

/// Whether a short write's probe must read the boxed keys it meets to tell its own key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BoxedKeys {
    Read,
    /// The key is inline, so a box word is always another key.
    Skip,
}

/// A short write that could not finish: the general write must run.
pub(in crate::atomic_map) struct GeneralWrite;

/// The `EMPTY` slot that ended a probe of `table`, `distance` slots past the key's home: where
/// a write claims the key.
struct FreeSlot<'g> {
    table: &'g Table,
    slot: &'g Slot,
    distance: usize,
}

/// What [`RawMap::search`] found in one table.
enum Search<'g, V> {
    Found(Shared<'g, V>),
    Missing,
    Next,
}

impl<K, V, S> RawMap<K, V, S>
where
    K: Hash + Eq + 'static,
    V: 'static,
    S: BuildHasher,
{
    /// An empty map whose table holds `entries` keys before it grows.
    pub(in crate::atomic_map) fn with_capacity(
        entries: usize,
        hasher: S,
    ) -> Result<Self, CapacityError> {
        let capacity = policy::capacity_for(entries).ok_or(CapacityError::Overflow)?;
        let collector = Collector::new();
        let table = {
            let guard = collector.enter();
            Table::allocate(capacity, collector.birth_epoch(&guard), 0, 0, None)
                .map_err(|_| CapacityError::AllocationFailed)?
        };
        Ok(RawMap {
            chain: Chain::new(table),
            hasher,
            collector,
            reserved_slots: StdAtomicUsize::new(capacity),
        })
    }

    pub(in crate::atomic_map) fn hasher(&self) -> &S {
        &self.hasher
    }

    /// Pins the calling thread; every handle a method returns lives as long as this guard.
    #[inline]
    pub(in crate::atomic_map) fn pin(&self) -> Guard<'_> {
        self.collector.enter()
    }

    #[inline]
    pub(in crate::atomic_map) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// A value to stage for a write under a guard of this map.
    pub(in crate::atomic_map) fn pending_value(&self, value: V) -> PendingValue<'_, V> {
        PendingValue::new(value, &self.collector)
    }

    fn migrator(&self) -> Migrator<'_, K, V, S> {
        Migrator {
            chain: &self.chain,
            collector: &self.collector,
            hasher: &self.hasher,
        }
    }

    /// The value of `query`, borrowed, or `None` if it has none. Never writes.
    ///
    /// Small enough to inline into the caller: the search of the root table is the whole
    /// lookup unless a resize is under way, and following successors is out of line. The short
    /// lookup builds its answer (an inline value or none) on one path for both, which the
    /// compiler makes a select (a `cmov` on x86) rather than a branch on which it is: a caller
    /// that does not branch on the answer either (one that counts hits, sums values or stores
    /// the answers) pays no misprediction when hits and misses alternate unpredictably, as
    /// they do over a key space that is half removed.
    #[inline(always)]
    pub(in crate::atomic_map) fn find<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        hash: u64,
        query: &Q,
    ) -> Option<ValueRef<'g, V>>
    where
        Q: Equivalent<K> + ?Sized,
    {
        // Without raising the reservation: `try_root` makes no call.
        self.find_from(
            guard,
            || self.chain.try_root(guard).map(Geometry::of),
            hash,
            query,
        )
    }

    /// [`find`](Self::find) whose short lookup runs in the table `short_table` gives the
    /// geometry of, if it gives one; the full search, from the current root, otherwise.
    #[inline(always)]
    fn find_from<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        short_table: impl FnOnce() -> Option<Geometry<'g>>,
        hash: u64,
        query: &Q,
    ) -> Option<ValueRef<'g, V>>
    where
        Q: Equivalent<K> + ?Sized,
    {
        if !Codec::<K>::may_inline() {
            return self.find_in_chain(guard, hash, query).map(Shared::get);
        }
        let short = short_table().and_then(|table| Self::find_short(guard, table, hash, query));
        match short {
            Some(found) => found.map(Shared::get_inline),
            None => self.find_long(guard, hash, query).map(Shared::get),
        }
    }

    /// [`find`](Self::find) for the common case of a map with inline keys, in code that makes
    /// no call, so that a lookup saves and restores no registers: inline keys up to the
    /// query's or an `EMPTY` slot, then an inline or absent value. The same answers as
    /// [`search`](Self::search) where it answers; `None` where `search` would need more (a
    /// boxed key or value, a `SEALED` slot or a value moved on, a probe of the whole table). A
    /// value it returns is inline. `table` is the geometry of a table the caller protected:
    /// the root when it was loaded. In a table that is no longer the root it still answers
    /// only with what the map held at the instant of its loads, or sends the lookup on: a
    /// resize seals or forwards every slot before the root moves past the table.
    #[inline(always)]
    fn find_short<'g, Q>(
        guard: &'g Guard<'_>,
        table: Geometry<'g>,
        hash: u64,
        query: &Q,
    ) -> Option<Option<Shared<'g, V>>>
    where
        Q: Equivalent<K> + ?Sized,
    {
        for slot in Probe::in_geometry(table, hash) {
            let word = slot.key.load(Ordering::Acquire);
            match shared::inline::<K>(guard, word) {
                Some(key) if key.matches(hash, query) => {}
                Some(_) => continue,
                None if word == EMPTY => return Some(None),
                None => return None,
            }
            let value = slot.value.load(Ordering::Acquire);
            // One rarely taken branch for the words that need more; an inline value and
            // `ABSENT` share the rest of the path. Written out: the same test as a helper
            // returning `is_inline(value) || value == ABSENT` compiled to branches again (10K
            // keys, read-heavy: 0.87x to 0.70x LIMIT).
            if !word::is_inline(value) && value != ABSENT {
                return None;
            }
            return Some(shared::inline::<V>(guard, value));
        }
        None
    }

    /// [`find`](Self::find) after the short lookup could not answer: out of line, so that the
    /// short lookup makes no call.
    #[inline(never)]
    fn find_long<'g, Q>(&self, guard: &'g Guard<'_>, hash: u64, query: &Q) -> Option<Shared<'g, V>>
    where
        Q: Equivalent<K> + ?Sized,
    {
        self.find_in_chain(guard, hash, query)
    }

    /// [`find`](Self::find) from the root table on.
    #[inline]
    fn find_in_chain<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        hash: u64,
        query: &Q,
    ) -> Option<Shared<'g, V>>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let root = self.chain.root(guard);
        match self.search(guard, root, hash, |key| key.matches(hash, query)) {
            Search::Found(value) => Some(value),
            Search::Missing => None,
            Search::Next => self.find_in_successors(guard, root, hash, query),
        }
    }

    /// [`find`](Self::find) after `table` sent the lookup on to its successor.
    #[cold]
    #[inline(never)]
    fn find_in_successors<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        table: &'g Table,
        hash: u64,
        query: &Q,
    ) -> Option<Shared<'g, V>>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let mut table = self.chain.next_table(guard, table);
        loop {
            match self.search(guard, table, hash, |key| key.matches(hash, query)) {
                Search::Found(value) => return Some(value),
                Search::Missing => return None,
                Search::Next => table = self.chain.next_table(guard, table),
            }
        }
    }

    /// Looks in one table for the key `is_wanted` accepts: its value, or that it has none here,
    /// or that it can only be in a successor (its slot was migrated or sealed, or every slot of
    /// the table holds another key while a successor exists).
    #[inline(always)]
    fn search<'g>(
        &self,
        guard: &'g Guard<'_>,
        table: &Table,
        hash: u64,
        mut is_wanted: impl FnMut(Shared<'g, K>) -> bool,
    ) -> Search<'g, V> {
        for slot in Probe::new(table, hash) {
            let wanted = match shared::load_inline_first::<K>(guard, &slot.key) {
                Ok(inline) => is_wanted(inline),
                Err(other) => match other.raw() {
                    EMPTY => return Search::Missing,
                    SEALED => return Search::Next,
                    _ => other.key().is_some_and(&mut is_wanted),
                },
            };
            if wanted {
                return match shared::load_inline_first::<V>(guard, &slot.value) {
                    Ok(inline) => Search::Found(inline),
                    Err(value) => match value.raw() {
                        MOVED | DROPPED => Search::Next,
                        _ => value.value().map_or(Search::Missing, Search::Found),
                    },
                };
            }
        }
        if table.next().is_null() {
            Search::Missing
        } else {
            Search::Next
        }
    }

    /// Asks the CPU to start loading the home slot of each hash in the current table, for a
    /// batch of operations whose misses should overlap. Only a hint: a resize may move the keys
    /// on. The table is loaded once for the whole group.
    #[inline]
    pub(in crate::atomic_map) fn prefetch_homes(
        &self,
        guard: &Guard<'_>,
        hashes: impl IntoIterator<Item = u64>,
    ) {
        self.prefetch_homes_in_root(guard, hashes);
    }

    /// [`prefetch_homes`](Self::prefetch_homes), returning the table it prefetched from.
    #[inline]
    fn prefetch_homes_in_root<'g>(
        &self,
        guard: &'g Guard<'_>,
        hashes: impl IntoIterator<Item = u64>,
    ) -> &'g Table {
        let table = self.chain.root(guard);
        for hash in hashes {
            table.prefetch(hash as usize);
        }
        table
    }

    /// Looks up every query of a batch, calling `found` with each query's index and value. The
    /// home slots of up to [`BATCH`] queries are prefetched before the first is looked up, so
    /// their cache misses overlap instead of following one another (group prefetching). The
    /// group's lookups share one load of the root and of its geometry, which spares each of
    /// them a dependent load of the root, a reservation check and three header loads
    /// (docs/scaling.md, "Batched lookups in one table").
    #[inline]
    pub(in crate::atomic_map) fn find_each<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        queries: &[&Q],
        mut found: impl FnMut(usize, Option<ValueRef<'g, V>>),
    ) where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let mut hashes = [0u64; BATCH];
        for (group, queries) in queries.chunks(BATCH).enumerate() {
            let hashed = hashes.iter_mut().zip(queries).map(|(hash, query)| {
                *hash = self.hash(*query);
                *hash
            });
            let geometry = Geometry::of(self.prefetch_homes_in_root(guard, hashed));
            for (index, (hash, query)) in hashes.iter().zip(queries).enumerate() {
                let value = self.find_from(guard, || Some(geometry), *hash, *query);
                found(group * BATCH + index, value);
            }
        }
    }

    /// [`write`](Self::write) for a key the caller owns: a missing key is claimed first, so
    /// `decide` always runs.
    #[inline]
    pub(in crate::atomic_map) fn write_owned<'g>(
        &self,
        guard: &'g Guard<'_>,
        key: K,
        decide: impl FnMut(Option<Shared<'g, V>>) -> Option<Staged>,
    ) -> Written<'g, V> {
        let hash = self.hash(&key);
        self.write_owned_hashed(guard, key, hash, decide)
    }

    /// [`write_owned`](Self::write_owned) of a key whose hash the caller has.
    #[inline]
    pub(in crate::atomic_map) fn write_owned_hashed<'g>(
        &self,
        guard: &'g Guard<'_>,
        key: K,
        hash: u64,
        decide: impl FnMut(Option<Shared<'g, V>>) -> Option<Staged>,
    ) -> Written<'g, V> {
        let query = match Codec::<K>::inline_word(&key) {
            Some(word) => Query::<K, K>::Inline(word),
            None => Query::Owned(PendingKey::new(key, hash, &self.collector)),
        };
        self.write(guard, hash, query, decide)
    }

    /// An insert into the root table when the key and both values are stored inline: the probe
    /// and the value CAS alone (after a claim of the free slot the probe ended at, for a new
    /// key), plus the count when the key gets a value. An inline value replacing an inline
    /// value retires nothing, so the general write's staging and book-keeping have nothing else
    /// to do. `hash` is the key's. `Ok` holds the value replaced; `Err` means the general
    /// write must run: a key or value that is boxed, a resize in flight, a new key whose claim
    /// the general write must make (see [`claim_free`](Self::claim_free)), a lost race.
    ///
    /// Why a second path for a write the general one also does: with a table larger than the
    /// cache, a write waits for one miss, and the next operation's miss starts during that wait
    /// only if the CPU reaches it, which the general path's length prevents (at a million keys
    /// an overwrite took 2.3 times as long as in a bare slot array with the same miss).
    #[inline(always)]
    pub(in crate::atomic_map) fn insert_inline<'g>(
        &self,
        guard: &'g Guard<'_>,
        key: &K,
        value: &V,
        hash: u64,
    ) -> Result<Option<Shared<'g, V>>, GeneralWrite> {
        let (Some(key_word), Some(value_word)) =
            (Codec::<K>::inline_word(key), Codec::<V>::inline_word(value))
        else {
            return Err(GeneralWrite);
        };
        // Inline words are equal exactly when their keys are (one encoding per key), and no
        // boxed key has an inline word: the probe passes boxes by unread.
        let slot = match self
            .root_slot(guard, hash, BoxedKeys::Skip, |here| here.word() == key_word)
        {
            Ok(slot) => slot,
            Err(RootMiss::Absent(free)) => Self::claim_free(free, key_word).ok_or(GeneralWrite)?,
            Err(RootMiss::Elsewhere) => return Err(GeneralWrite),
        };
        let current = slot.value.load(Ordering::Acquire);
        // Inline first, as in `search`.
        if !word::is_inline(current) && current != ABSENT {
            // Moved on, or a boxed value that would need retiring.
            return Err(GeneralWrite);
        }
        if !self.commit_inline(guard, slot, current, value_word) {
            return Err(GeneralWrite);
        }
        // SAFETY: `current` is an inline word of a `V`: it points to nothing.
        Ok((current != ABSENT).then(|| unsafe { Shared::from_word(current) }))
    }

    /// Claims `free` for the inline key word `claim` when [`locate`](Self::locate) would claim
    /// it in the same steps: `free`'s table is still the root with no successor, the probe was
    /// short enough that the table needs no crowding check, and no fit successor is being
    /// sized. The claimed key has no value yet, like a removed key's, and a resize that meets
    /// it before the value lands drops it as one: the value CAS then fails and the general
    /// write takes over. `None` sends the caller to the general write.
    #[inline(always)]
    fn claim_free<'g>(free: FreeSlot<'g>, claim: u64) -> Option<&'g Slot> {
        let FreeSlot {
            table,
            slot,
            distance,
        } = free;
        if !table.next().is_null()
            || distance >= policy::probe_limit(table)
            || table.claims_paused()
        {
            return None;
        }
        claim_empty(table, slot, claim).then_some(slot)
    }

    /// The slot of the key `is_wanted` accepts in the root table, for the short writes.
    /// `RootMiss::Absent` if the probe proved the key missing (at a free slot where it may be
    /// claimed); `RootMiss::Elsewhere` if the general write must look: a resize is in flight,
    /// or the probe met a `SEALED` slot or no end (or, for keys that may be inline, a boxed
    /// key it would have to read), or the reservation does not cover the root yet. With
    /// [`BoxedKeys::Skip`], boxed keys are passed by without being loaded under protection or
    /// shown to `is_wanted`.
    #[inline(always)]
    fn root_slot<'g>(
        &self,
        guard: &'g Guard<'_>,
        hash: u64,
        boxed_keys: BoxedKeys,
        mut is_wanted: impl FnMut(Shared<'g, K>) -> bool,
    ) -> Result<&'g Slot, RootMiss<'g>> {
        // Without raising the reservation, as in `find`: no call on the short path.
        let Some(table) = self.chain.try_root(guard) else {
            return Err(RootMiss::Elsewhere);
        };
        if !table.next().is_null() {
            return Err(RootMiss::Elsewhere);
        }
        let mut probe = Probe::new(table, hash);
        while let Some(slot) = probe.next() {
            let word = slot.key.load(Ordering::Acquire);
            // Inline first, as in `search`.
            if let Some(inline) = shared::inline(guard, word) {
                if is_wanted(inline) {
                    return Ok(slot);
                }
                continue;
            }
            match word {
                EMPTY => {
                    return Err(RootMiss::Absent(FreeSlot {
                        table,
                        slot,
                        distance: probe.distance(),
                    }))
                }
                SEALED => return Err(RootMiss::Elsewhere),
                _ if boxed_keys == BoxedKeys::Skip => {}
                // Boxes are rare among keys that may be inline: the general write reads them,
                // and the short path keeps the protected load (and its call) out of its loop.
                _ if Codec::<K>::may_inline() => return Err(RootMiss::Elsewhere),
                _ => {
                    let boxed = shared::loaded::<K>(guard, &slot.key, word);
                    if boxed.key().is_some_and(&mut is_wanted) {
                        return Ok(slot);
                    }
                }
            }
        }
        Err(RootMiss::Elsewhere)
    }

    /// [`write`](Self::write) for a borrowed key: a missing key is reported as absent without
    /// calling `decide`.
    #[inline]
    pub(in crate::atomic_map) fn write_borrowed<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        key: &Q,
        decide: impl FnMut(Option<Shared<'g, V>>) -> Option<Staged>,
    ) -> Written<'g, V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.write_borrowed_hashed(guard, key, self.hash(key), decide)
    }

    /// [`write_borrowed`](Self::write_borrowed) of a key whose hash the caller has.
    #[inline]
    pub(in crate::atomic_map) fn write_borrowed_hashed<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        key: &Q,
        hash: u64,
        decide: impl FnMut(Option<Shared<'g, V>>) -> Option<Staged>,
    ) -> Written<'g, V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.write(guard, hash, Query::Borrowed(key), decide)
    }

    /// A remove from the root table of a key whose value is stored inline (or that has none):
    /// the probe and the value CAS, then the count and the occasional shrink check that follow
    /// every remove. `Ok` holds the value removed; `Err` (with the key's hash) means the
    /// general write must run: a resize in flight, a boxed value, a lost race. Short for the
    /// reason [`insert_inline`](Self::insert_inline) is.
    #[inline(always)]
    pub(in crate::atomic_map) fn remove_inline<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        query: &Q,
    ) -> Result<Option<Shared<'g, V>>, u64>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let hash = self.hash(query);
        let Some((slot, current)) = self.root_inline_value(guard, hash, query)? else {
            return Ok(None);
        };
        if !self.commit_inline(guard, slot, current, ABSENT) {
            return Err(hash);
        }
        // SAFETY: `current` is an inline word of a `V`: it points to nothing.
        Ok(Some(unsafe { Shared::from_word(current) }))
    }

    /// An update in the root table of the key `query`, whose hash is `hash` and whose value is
    /// stored inline, to a new value that is inline too: the probe, `change`, and the value
    /// CAS. The count does not move and nothing is retired, so there is nothing else to do.
    /// `Ok` holds the value stored (`None` if the key has no value); `Err` means the general
    /// write must run: a resize in flight, a boxed old or new value, a lost race. `change` then
    /// runs again, which `update` and `upsert` allow (their change may run more than once under
    /// races). The caller hashes, so that `upsert` of a missing key hashes it once.
    #[inline(always)]
    pub(in crate::atomic_map) fn update_inline<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        hash: u64,
        query: &Q,
        change: impl FnOnce(&V) -> V,
    ) -> Result<Option<Shared<'g, V>>, GeneralWrite>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let found = self
            .root_inline_value(guard, hash, query)
            .map_err(|_| GeneralWrite)?;
        let Some((slot, current)) = found else {
            return Ok(None);
        };
        // SAFETY: `current` is an inline word of a `V`: it points to nothing.
        let new = unsafe { Shared::<V>::from_word(current) }.with(change);
        let new_word = Codec::<V>::inline_word(&new).ok_or(GeneralWrite)?;
        if !self.commit_inline(guard, slot, current, new_word) {
            return Err(GeneralWrite);
        }
        // SAFETY: `new_word` is an inline word of a `V`: it points to nothing.
        Ok(Some(unsafe { Shared::from_word(new_word) }))
    }

    /// The short writes' commit: one value CAS from `current` to `new` (inline words or
    /// `ABSENT`, so nothing is retired), then the count. False if another write won the race.
    #[inline(always)]
    fn commit_inline(&self, guard: &Guard<'_>, slot: &Slot, current: u64, new: u64) -> bool {
        let won = slot
            .value
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            self.committed(guard, current, new);
        }
        won
    }

    /// For the short writes of a key that has a value: the key's slot in the root table and
    /// its current value word, which is inline. `Ok(None)` if the probe proved the key has no
    /// value; `Err` (with the key's hash) if the general write must look: a resize in flight,
    /// or a boxed value.
    #[inline(always)]
    fn root_inline_value<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        hash: u64,
        query: &Q,
    ) -> Result<Option<(&'g Slot, u64)>, u64>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let slot =
            match self.root_slot(guard, hash, BoxedKeys::Read, |key| key.matches(hash, query)) {
                Ok(slot) => slot,
                Err(RootMiss::Absent(_)) => return Ok(None),
                Err(RootMiss::Elsewhere) => return Err(hash),
            };
        // Inline first, as in `search`.
        match slot.value.load(Ordering::Acquire) {
            current if word::is_inline(current) => Ok(Some((slot, current))),
            ABSENT => Ok(None),
            _ => Err(hash),
        }
    }

    /// Commits `decide(current)` for the key `query` with one value CAS, retrying on races.
    ///
    /// `decide` sees the current value (`None` if the key has none) and returns what to store,
    /// or `None` to leave it. It runs once per attempt.
    #[inline]
    fn write<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        hash: u64,
        mut query: Query<'_, '_, K, Q>,
        mut decide: impl FnMut(Option<Shared<'g, V>>) -> Option<Staged>,
    ) -> Written<'g, V>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let migrator = self.migrator();
        let mut table = self.chain.root(guard);
        if !table.next().is_null() {
            migrator.help(guard, table);
        }
        'tables: loop {
            let slot = match self.locate(guard, table, hash, &mut query) {
                Located::Here(slot) => slot,
                Located::Next(next) => {
                    freeze::before_diverting(&migrator, guard, table, next);
                    table = next;
                    continue 'tables;
                }
                Located::Absent => {
                    return Written {
                        previous: None,
                        committed: false,
                    }
                }
            };
            let mut current = shared::load::<V>(guard, &slot.value);
            loop {
                if matches!(current.raw(), MOVED | DROPPED) {
                    if let (DROPPED, Query::Owned(pending)) = (current.raw(), &mut query) {
                        pending.rehome_from(slot);
                    }
                    migrator.help(guard, table);
                    let next = self.chain.next_table(guard, table);
                    freeze::before_diverting(&migrator, guard, table, next);
                    table = next;
                    continue 'tables;
                }
                let Some(new) = decide(current.value()) else {
                    return Written {
                        previous: current.value(),
                        committed: false,
                    };
                };
                table.note_stored(new.word());
                match slot.value.compare_exchange(
                    current.raw(),
                    new.word(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        self.committed(guard, current.raw(), new.word());
                        return Written {
                            previous: current.value(),
                            committed: true,
                        };
                    }
                    Err(actual) => current = shared::loaded(guard, &slot.value, actual),
                }
            }
        }
    }

    /// Book-keeping after a value CAS from `previous` to `new`: the length, the replaced box
    /// (which no reader can newly reach but current readers may still hold), and after a
    /// remove, an occasional check for a shrink. Inlined, with the rarer work in
    /// [`unlinked`](Self::unlinked), so that the common commits (a new key, an inline value
    /// replaced) add a few instructions to the write rather than a call.
    #[inline(always)]
    fn committed(&self, guard: &Guard<'_>, previous: u64, new: u64) {
        if previous == ABSENT {
            if new != ABSENT {
                guard.count_entries(1);
            }
        } else if new == ABSENT || !word::is_inline(previous) {
            self.unlinked(guard, previous, new);
        }
    }

    /// [`committed`](Self::committed) for a CAS that removed a value or replaced a box.
    #[inline(never)]
    fn unlinked(&self, guard: &Guard<'_>, previous: u64, new: u64) {
        if new == ABSENT {
            guard.count_entries(-1);
            self.after_remove(guard);
        }
        if !word::is_inline(previous) {
            // SAFETY: `previous` is a boxed value this CAS unlinked, so it is retired exactly
            // once (by us); its birth was written before it was published.
            unsafe {
                let birth = word::boxed::<V>(previous).birth;
                guard.retire_sized(
                    word::box_ptr::<V>(previous),
                    std::mem::size_of::<word::Boxed<V>>(),
                    birth,
                    free_box::<word::Boxed<V>>,
                );
            }
        }
    }

    /// Finds the slot of `query` in `table` for a write, claiming one if the key is missing and
    /// the caller owns a key.
    fn locate<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        table: &'g Table,
        hash: u64,
        query: &mut Query<'_, '_, K, Q>,
    ) -> Located<'g>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let mut probe = Probe::new(table, hash);
        while let Some(slot) = probe.next() {
            // Each pass looks at `slot`; a lost race looks at it again.
            loop {
                // Inline keys first, as in `search`.
                let key = match shared::load_inline_first::<K>(guard, &slot.key) {
                    Ok(inline) => inline,
                    Err(loaded) if loaded.raw() == SEALED => {
                        return Located::Next(self.chain.next_table(guard, table));
                    }
                    Err(loaded) => match loaded.key() {
                        Some(key) => key,
                        None => match self.at_empty(guard, table, slot, probe.distance(), query) {
                            Some(located) => return located,
                            None => continue,
                        },
                    },
                };
                let matches = match query {
                    Query::Borrowed(query) => key.matches(hash, *query),
                    Query::Inline(word) => key.word() == *word,
                    Query::Owned(pending) => pending.matches(key),
                };
                if matches {
                    return Located::Here(slot);
                }
                break;
            }
        }
        // Every slot holds another key.
        match query {
            Query::Owned(_) | Query::Inline(_) => self.overflow(guard, table),
            Query::Borrowed(_) if table.next().is_null() => Located::Absent,
            Query::Borrowed(_) => Located::Next(self.chain.next_table(guard, table)),
        }
    }

    /// What a writer's probe does at an `EMPTY` slot `distance` slots from its key's home:
    /// claim it for a new key (`Located::Here`), report a borrowed key absent, or, after
    /// sealing the slot for a resize, helping one, or waiting for one, `None`: look at the
    /// slot again.
    #[inline]
    fn at_empty<'g, Q>(
        &self,
        guard: &'g Guard<'_>,
        table: &'g Table,
        slot: &'g Slot,
        distance: usize,
        query: &mut Query<'_, '_, K, Q>,
    ) -> Option<Located<'g>>
    where
        Q: Equivalent<K> + ?Sized,
    {
        let claim = match query {
            Query::Borrowed(_) => return Some(Located::Absent),
            Query::Inline(word) => *word,
            Query::Owned(pending) => pending.word(guard),
        };
        if !table.next().is_null() {
            // A resize started: new keys go to the next table, but only once this slot is
            // sealed, so no one can still claim the key here (see `migrate`).
            let _ = slot
                .key
                .compare_exchange(EMPTY, SEALED, Ordering::AcqRel, Ordering::Acquire);
            return None;
        }
        let root = self.chain.root(guard);
        if !ptr::eq(root, table) && !table.take_claim_budget() {
            // `table` is the successor of a resize of `root` in flight, and the room left in it
            // is reserved for keys still to be carried (see `migrate`).
            self.migrator().complete(guard, root);
            return None;
        }
        if distance >= policy::probe_limit(table) && self.resize_crowded(guard, table) {
            // The resize started (or we helped it, or waited for its successor), so look at
            // this slot again: now that the table has a successor it gets sealed, so lookups of
            // our key, which will live in the successor, do not stop at it.
            return None;
        }
        if let Query::Owned(pending) = query {
            if let Some(birth) = pending.box_birth() {
                table.lower_key_birth_floor(birth);
            }
        }
        if table.claims_paused() {
            // A fit successor is being sized by counting claimed slots.
            self.migrator().wait_for_successor(table);
            return None;
        }
        if claim_empty(table, slot, claim) {
            if let Query::Owned(pending) = query {
                pending.published(claim, table);
            }
            return Some(Located::Here(slot));
        }
        None
    }

    /// For a writer that probed far in `table`: starts (or helps) its resize, or waits for the
    /// successor another writer is allocating (see `migrate`, "Start"), and returns true; or
    /// returns false when it should claim its slot in `table` anyway: the table is not crowded
    /// enough, or crowded only by a weak hash (see `policy`).
    fn resize_crowded(&self, guard: &Guard<'_>, table: &Table) -> bool {
        if table.next().is_null() {
            if table.successor_allocating() {
                self.migrator().wait_for_successor(table);
                return true;
            }
            let Some(capacity) = policy::crowding_after_long_probe(table, || self.len()) else {
                return false;
            };
            let capacity = self.at_least_reserved(capacity);
            let migrator = self.migrator();
            let root = self.chain.root(guard);
            if !ptr::eq(root, table) {
                // `table` is the successor of a resize in flight; only the root is resized.
                migrator.complete(guard, root);
            }
            match migrator.start(guard, table, capacity) {
                Start::Installed => {}
                Start::Allocating => {
                    migrator.wait_for_successor(table);
                    return true;
                }
                Start::Failed => out_of_memory(capacity),
            }
        }
        self.overflow(guard, table);
        true
    }

    /// A table too full for another key: make sure a resize is under way and continue in the
    /// successor. On return `table` has a successor.
    fn overflow<'g>(&self, guard: &'g Guard<'_>, table: &'g Table) -> Located<'g> {
        let migrator = self.migrator();
        let mut backoff = Backoff::new();
        loop {
            if !table.next().is_null() {
                migrator.help(guard, table);
                return Located::Next(self.chain.next_table(guard, table));
            }
            let root = self.chain.root(guard);
            if ptr::eq(root, table) {
                let capacity =
                    self.at_least_reserved(policy::full_table_capacity(table, self.len()));
                match migrator.start(guard, table, capacity) {
                    Start::Installed => {}
                    Start::Allocating => backoff.wait(),
                    Start::Failed => out_of_memory(capacity),
                }
            } else {
                // `table` is the successor of a resize still in progress.
                migrator.complete(guard, root);
            }
        }
    }

    /// Called after a remove committed: occasionally shrinks a mostly empty table, never below
    /// the reserved slots. The root is loaded only when this thread's check is due, so the
    /// other removes load nothing shared here.
    fn after_remove(&self, guard: &Guard<'_>) {
        if !policy::shrink_check_due() {
            return;
        }
        let table = self.chain.root(guard);
        let shrink = policy::shrink_target(table, || self.len())
            .map(|capacity| self.at_least_reserved(capacity))
            .filter(|&capacity| capacity < table.capacity());
        if let Some(capacity) = shrink {
            let migrator = self.migrator();
            migrator.start(guard, table, capacity);
            migrator.help(guard, table);
        }
    }

    /// Number of keys with a value (each thread counts its `ABSENT` ↔ value commits in its
    /// reclamation record); exact when no write is in flight.
    pub(in crate::atomic_map) fn len(&self) -> usize {
        self.collector.entries().max(0) as usize
    }

    /// How many slots the current table has.
    pub(in crate::atomic_map) fn capacity(&self, guard: &Guard<'_>) -> usize {
        self.chain.root(guard).capacity()
    }

    /// Makes the table big enough for `entries` keys, waiting for the resize to finish.
    pub(in crate::atomic_map) fn reserve(
        &self,
        guard: &Guard<'_>,
        entries: usize,
    ) -> Result<(), CapacityError> {
        let capacity = policy::capacity_for(entries).ok_or(CapacityError::Overflow)?;
        if self.capacity(guard) >= capacity || self.resize_now(guard, capacity, false) {
            self.reserved_slots.fetch_max(capacity, Ordering::Relaxed);
            Ok(())
        } else {
            Err(CapacityError::AllocationFailed)
        }
    }

    /// Lowers the reserved slots to room for `entries` keys (never above the current table),
    /// then compacts the table down to its keys or that room, whichever is larger.
    pub(in crate::atomic_map) fn shrink_to(&self, guard: &Guard<'_>, entries: usize) {
        let room = policy::capacity_for(entries).unwrap_or(usize::MAX);
        self.reserved_slots
            .store(room.min(self.capacity(guard)), Ordering::Relaxed);
        self.compact(guard);
    }

    /// `capacity`, or the reserved slots if they are more: what a shrink or a compaction sizes
    /// its successor to.
    fn at_least_reserved(&self, capacity: usize) -> usize {
        capacity.max(self.reserved_slots.load(Ordering::Relaxed))
    }

    /// Resizes the table to fit the live keys (or the reserved slots, if more), dropping
    /// tombstones (for `clear`). The first pass runs even when the table already has that
    /// size (a presized map's, say), since it is what drops the tombstones. A compaction
    /// keeps room for every claimed slot, tombstones included (see `migrate`, "Room to
    /// carry"), so a second pass over the compacted table shrinks it to the live keys. If a
    /// smaller table cannot be allocated the map keeps its table: nothing is lost.
    pub(in crate::atomic_map) fn compact(&self, guard: &Guard<'_>) {
        for pass in 0..2 {
            let Some(capacity) = policy::capacity_for(self.len()) else {
                return;
            };
            let capacity = self.at_least_reserved(capacity);
            if !self.resize_now(guard, capacity, pass == 0) || self.capacity(guard) <= capacity {
                return;
            }
        }
    }

    /// Resizes the root to `capacity` slots and waits until the resize is done; a root of that
    /// size is kept as it is unless it is crowded or `even_at_this_size`. Returns false if the
    /// table could not be allocated.
    fn resize_now(&self, guard: &Guard<'_>, capacity: usize, even_at_this_size: bool) -> bool {
        let migrator = self.migrator();
        let mut backoff = Backoff::new();
        loop {
            let table = self.chain.root(guard);
            if table.next().is_null() {
                if table.capacity() == capacity
                    && !even_at_this_size
                    && policy::crowded_verdict(table, || self.len()).is_none()
                {
                    return true;
                }
                match migrator.start(guard, table, capacity) {
                    Start::Installed => {
                        migrator.complete(guard, table);
                        return true;
                    }
                    Start::Allocating => backoff.wait(),
                    Start::Failed => return false,
                }
                continue;
            }
            // Someone else's resize is running: finish it, then start ours.
            migrator.complete(guard, table);
        }
    }

    /// Visits every live entry reachable from the root at the time of each slot's load: the
    /// weakly consistent iteration of [`AtomicMap::iter`](crate::AtomicMap::iter), run to the
    /// end (see [`walk`](Self::walk)).
    pub(in crate::atomic_map) fn for_each_entry<'g>(
        &self,
        guard: &'g Guard<'_>,
        mut visit: impl FnMut(Shared<'g, K>, Shared<'g, V>),
    ) {
        let mut walk = self.walk(guard);
        while let Some((key, value)) = self.walk_next(guard, &mut walk) {
            visit(key, value);
        }
    }

    /// Starts a weakly consistent walk of the map's entries, advanced by
    /// [`walk_next`](Self::walk_next) under the same guard.
    ///
    /// A resize in flight when the walk starts is completed first (the walk costs a pass over
    /// the table anyway): keys inserted since it began live only in its successor, which a walk
    /// of the old table would not see. The walk then keeps to the table that was the root: a
    /// resize that starts during the walk is followed through `MOVED` slots by a re-lookup in
    /// the successors, so each key is visited at most once, with a value it had during the
    /// walk; keys inserted during the walk may or may not be visited.
    pub(in crate::atomic_map) fn walk<'g>(&self, guard: &'g Guard<'_>) -> Walk<'g> {
        let mut table = self.chain.root(guard);
        while !table.next().is_null() {
            self.migrator().complete(guard, table);
            table = self.chain.root(guard);
        }
        Walk { table, next: 0 }
    }

    /// The next live entry of `walk`, or `None` when every slot has been passed.
    pub(in crate::atomic_map) fn walk_next<'g>(
        &self,
        guard: &'g Guard<'_>,
        walk: &mut Walk<'g>,
    ) -> Option<(Shared<'g, K>, Shared<'g, V>)> {
        let table = walk.table;
        while let Some(slot) = table.slots.get(walk.next) {
            walk.next += 1;
            let Some(key) = shared::load::<K>(guard, &slot.key).key() else {
                continue;
            };
            let value = shared::load::<V>(guard, &slot.value);
            if matches!(value.raw(), MOVED | DROPPED) {
                // The entry lives on in the next table; find its current value there.
                let hash = key.hash_with(&self.hasher);
                let mut next = self.chain.next_table(guard, table);
                loop {
                    match self.find_carried(guard, next, hash, key) {
                        Search::Found(value) => return Some((key, value)),
                        Search::Missing => break,
                        Search::Next => next = self.chain.next_table(guard, next),
                    }
                }
            } else if let Some(value) = value.value() {
                return Some((key, value));
            }
        }
        None
    }

    /// The current table's figures for `stats()`, by a walk of every slot (O(capacity)): its
    /// tombstones and the longest distance of a live key from its home slot. Slots already
    /// moved by a resize in flight are not counted.
    pub(in crate::atomic_map) fn table_stats(&self, guard: &Guard<'_>) -> TableStats {
        let table = self.chain.root(guard);
        let mut stats = TableStats {
            slots: table.capacity(),
            generation: table.generation,
            migrating: !table.next().is_null(),
            tombstones: 0,
            longest_probe: 0,
        };
        for (index, slot) in table.slots.iter().enumerate() {
            let Some(key) = shared::load::<K>(guard, &slot.key).key() else {
                continue;
            };
            match slot.value.load(Ordering::Acquire) {
                ABSENT => stats.tombstones += 1,
                value if word::is_value(value) => {
                    let home = key.hash_with(&self.hasher) as usize & table.mask;
                    let distance = index.wrapping_sub(home) & table.mask;
                    stats.longest_probe = stats.longest_probe.max(distance);
                }
                _ => {}
            }
        }
        stats
    }

    /// Bytes that writers retired (replaced values, removed entries, old tables) and that are
    /// not yet freed.
    pub(in crate::atomic_map) fn garbage_bytes(&self) -> usize {
        self.collector.garbage_bytes()
    }

    /// Looks a stored key up in one table (the table it was carried to).
    fn find_carried<'g>(
        &self,
        guard: &'g Guard<'_>,
        table: &Table,
        hash: u64,
        key: Shared<'g, K>,
    ) -> Search<'g, V> {
        self.search(guard, table, hash, |here| here.same_key(key))
    }

    /// The map at one instant (a freezing migration, see `freeze`): visits its entries and
    /// returns the snapshot's version, the generation of the frozen table.
    pub(in crate::atomic_map) fn snapshot<'g>(
        &self,
        guard: &'g Guard<'_>,
        mut visit: impl FnMut(Shared<'g, K>, Shared<'g, V>),
    ) -> u64 {
        guard.hold_retired();
        let (image, version) = freeze::freeze(&self.migrator(), guard);
        for slot in image.slots.iter() {
            // The migration published the image (module `freeze`): relaxed loads suffice.
            let key = slot.key.load(Ordering::Relaxed);
            let value = slot.value.load(Ordering::Relaxed);
            if word::is_key(key) && word::is_value(value) {
                // SAFETY: item words of this map's keys and values, each reachable when the
                // freeze began; `guard` holds back everything retired since, so their boxes
                // stay allocated for `'g`.
                let (key, value) = unsafe { (Shared::from_word(key), Shared::from_word(value)) };
                visit(key, value);
            }
        }
        version
    }
}

// SAFETY: the map owns `K`s and `V`s and hands out clones or shared references to them from any
// thread, so it is `Send`/`Sync` exactly when they are both; the raw pointers inside (tables,
// boxes, the collector's records) are owned by the map and reclaimed through its collector.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Send> Send for RawMap<K, V, S> {}
// SAFETY: as above; `S` is only read (`&S`) by concurrent operations.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Sync> Sync for RawMap<K, V, S> {}

/// Claims the `EMPTY` `slot` of `table` for the key word `claim`; whether this claim won it.
/// The caller has just seen claims not paused (`Table::claims_paused`): that `SeqCst` load and
/// this `SeqCst` CAS are what keeps the claim counted by a fit successor's sizing (see
/// `migrate`, "Room to carry").
#[inline(always)]
fn claim_empty(table: &Table, slot: &Slot, claim: u64) -> bool {
    table.note_stored(claim);
    slot.key
        .compare_exchange(EMPTY, claim, Ordering::SeqCst, Ordering::Acquire)
        .is_ok()
}
