//! The chain of tables: the root (the current table), the successors that resizes link to it,
//! and how a thread that still holds an old table reaches the current one.

use std::marker::PhantomData;
use std::ptr;

use super::table::{free_table, Table};
use crate::reclaim::Guard;
use crate::sync::{AtomicPtr, Ordering};

/// The root table and, through each table's `next` link, the tables resizes are moving it into.
/// Owns every table in the chain and the keys and values they hold.
pub(super) struct Chain<K: 'static, V: 'static> {
    /// The current table. Replaced only when a resize of that table finishes.
    root: AtomicPtr<Table>,
    /// The tables hold keys and values of these types (for drop check and auto traits).
    _owns: PhantomData<(K, V)>,
}

impl<K: 'static, V: 'static> Chain<K, V> {
    pub(super) fn new(table: Box<Table>) -> Self {
        Chain {
            root: AtomicPtr::new(Box::into_raw(table)),
            _owns: PhantomData,
        }
    }

    /// The current table.
    #[inline]
    pub(super) fn root<'g>(&self, guard: &'g Guard<'_>) -> &'g Table {
        let table = guard.protect(|| self.root.load(Ordering::Acquire));
        // SAFETY: the root is never null, and `protect` keeps the table allocated while `guard`
        // lives (it is retired only after being unlinked from `root`).
        unsafe { &*table }
    }

    /// [`root`](Self::root) if the guard's reservation already covers it; `None` when it
    /// must be raised first (see [`Guard::try_protect`]).
    #[inline]
    pub(super) fn try_root<'g>(&self, guard: &'g Guard<'_>) -> Option<&'g Table> {
        let table = guard
            .try_protect(|| self.root.load(Ordering::Acquire))
            .ok()?;
        // SAFETY: as in `root`: never null, and covered by the reservation, so allocated while
        // `guard` lives.
        Some(unsafe { &*table })
    }

    /// The table to continue in after `table` sent us on (`SEALED`, `MOVED`, `DROPPED`, or no
    /// free slot): its successor, or the root if the root has moved past both.
    ///
    /// A successor link is never cleared, so a thread still holding an old, retired `table`
    /// could follow it to a successor that was retired in turn, and freed by a reclaimer that
    /// scanned this thread's reservation before it covered the successor's birth: the link is
    /// not the location the successor was unlinked from, so the reclamation handshake says
    /// nothing about it. The root is. Loading the root after protecting the link closes the
    /// gap: if the root is still `table` or the successor, the successor had not been unlinked
    /// when our reservation (stored before that load) covered it, so the reclaimer sees the
    /// reservation; otherwise we continue from the root, which reaches every entry.
    #[inline]
    pub(super) fn next_table<'g>(&self, guard: &'g Guard<'_>, table: &Table) -> &'g Table {
        let next = successor(guard, table);
        let root = self.root(guard);
        if ptr::eq(root, table) || ptr::eq(root, next) {
            next
        } else {
            root
        }
    }

    /// Swings the root from a fully migrated table to its successor; returns the old root's
    /// pointer (with the provenance of its allocation, for retiring it) if the swing happened.
    pub(super) fn replace_root(&self, old: &Table) -> Option<*mut Table> {
        self.root
            .compare_exchange(
                ptr::from_ref(old).cast_mut(),
                old.next(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()
    }
}

/// The successor of a resizing `table` that is still the root or is being migrated into the
/// root: such a successor is not retired (a table is retired only once the root moves past it),
/// so protecting the link suffices. Only called after seeing `next` set; a thread holding an
/// older table goes through [`Chain::next_table`] instead.
#[inline]
pub(super) fn successor<'g>(guard: &'g Guard<'_>, table: &Table) -> &'g Table {
    let next = guard.protect(|| table.next());
    debug_assert!(!next.is_null());
    // SAFETY: non-null once a resize started; protected as in `Chain::root`, and not retired
    // while our reservation can miss it (see `Chain::next_table` for callers holding an old
    // table).
    unsafe { &*next }
}

impl<K: 'static, V: 'static> Drop for Chain<K, V> {
    fn drop(&mut self) {
        let mut table = self.root.load(Ordering::Relaxed);
        while !table.is_null() {
            // SAFETY: `&mut self`: no operation is in flight, so the chain of tables from the
            // root (a resize may be half done) is owned by the map alone.
            let next = unsafe { &*table }.next();
            // SAFETY: as above; each table is freed once, with the map's key and value types.
            unsafe { free_table::<K, V>(table.cast()) };
            table = next;
        }
    }
}
