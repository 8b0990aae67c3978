//! Point-in-time snapshots of an [`AtomicMap`](crate::AtomicMap) by a *freezing migration*: the
//! cooperative resize of `migrate`, run so that the migrated table ends up describing the map at
//! one instant.
//!
//! # Why the resize machinery
//! A resize already visits every slot exactly once, moves each live entry with a CAS that
//! writers cannot get past (`MOVED`, `SEALED`, `DROPPED` divert them), and spreads the work over
//! the writers that meet it. Two changes make it a snapshot:
//! 1. **Image.** The successor of a freezing migration carries an *image*: an array parallel to
//!    the migrated table. The owner of each chunk records, for every slot, the key and value
//!    words that its final migration CAS replaced (`target` in `migrate_slot`). Only the chunk
//!    owner writes those image slots, so plain stores suffice; its increment of
//!    `chunk_progress.finished` (`AcqRel`) publishes them, and the snapshot's `Acquire` load of
//!    the final count (in `Migrator::complete`) sees every chunk's stores, since increments form
//!    one release sequence.
//! 2. **Writers wait at the border.** A writer diverted from the migrated table into a freezing
//!    successor (`before_diverting`) first drives the migration to its end (`Migrator::complete`:
//!    it copies unclaimed chunks itself, then waits for chunks that other threads are copying).
//!    In an ordinary resize it would commit in the successor at once.
//!
//! # Linearization point
//! Let `T` be the instant of the last slot's migration CAS. For every slot `i` migrated at
//! `t_i <= T`, the image holds the words slot `i` had just before `t_i`. No write to that key
//! commits between `t_i` and `T`: in the old table its CAS fails (the value word is final), a
//! writer that finds it `MOVED` (or a new key's slot `SEALED`) waits at the border until after
//! `T`, and no writer reaches the successor any other way (the root still points to the old
//! table until after `T`). So at `T` the map held exactly the image's entries: each key once,
//! because a key lives in one slot of one table. The snapshot's instant is `T`.
//!
//! # Progress and cost
//! Readers never wait and never help: a lookup follows `MOVED` into the successor, which holds
//! the same values until `T`. The taker allocates the successor and the image (16 bytes per slot
//! each), helps copy, then clones every live entry of the image into the snapshot, which is the
//! O(n) part and runs after the migration, while writers work in the new table. Writers pay an
//! ordinary resize's share (at most one chunk each) plus, if they write a key whose slot has
//! already moved, the wait for chunks in flight: the same corner the resize protocol has when a
//! successor must grow, now for the length of one migration. Nobody waits for the clone.
//!
//! # Reclamation
//! The image holds words of boxed keys and values that writers may replace and retire right
//! after `T`. The taker pins before starting the migration and asks its guard to hold back
//! everything retired during the pin (`Guard::hold_retired`); every box in the image was
//! reachable after that pin began, so it stays allocated until the clone is done. Memory retired
//! by writers during the clone waits for it (bounded by the clone's duration).

use std::hash::{BuildHasher, Hash};
use std::ptr;

use super::migrate::Migrator;
use super::policy::out_of_memory;
use super::table::{Image, Table};
use crate::reclaim::Guard;

/// Runs a freezing migration of the root and returns its image (the map at the migration's
/// instant) with the generation of the frozen table. `guard` must hold retired memory back
/// (`Guard::hold_retired`) for as long as the image's words are read.
pub(super) fn freeze<K, V, S>(
    migrator: &Migrator<'_, K, V, S>,
    guard: &Guard<'_>,
) -> (Box<Image>, u64)
where
    K: Hash + Eq + 'static,
    V: 'static,
    S: BuildHasher,
{
    loop {
        let table = migrator.chain.root(guard);
        if !table.next().is_null() {
            // An ordinary resize is running: finish it, then freeze its result.
            migrator.complete(guard, table);
            continue;
        }
        let capacity = table.capacity();
        let Ok(image) = Image::allocate(capacity) else {
            out_of_memory(capacity)
        };
        let installed = match migrator.install_successor(guard, table, capacity, Some(image)) {
            Ok(installed) => installed,
            Err(_) => out_of_memory(capacity),
        };
        let Some(successor) = installed else {
            // Another resize got in first.
            continue;
        };
        migrator.complete(guard, table);
        let image = successor
            .take_image()
            .expect("only the snapshot that started a freezing migration takes its image");
        return (image, table.generation);
    }
}

/// Called by a writer about to continue from `table` in `next`: if `next` is the successor of a
/// freezing migration of `table`, that migration must end first (module docs).
#[inline]
pub(super) fn before_diverting<K, V, S>(
    migrator: &Migrator<'_, K, V, S>,
    guard: &Guard<'_>,
    table: &Table,
    next: &Table,
) where
    K: Hash + Eq + 'static,
    V: 'static,
    S: BuildHasher,
{
    if next.is_freezing_successor() && ptr::eq(table.next(), next) {
        migrator.complete(guard, table);
    }
}
