//! The one probe sequence every loop over a table follows.

use super::table::{Slot, Table};

/// Linear probing from a hash's home slot (`hash & mask`), visiting every slot of the table
/// once. Lookups, claims, carries during a resize and the iteration's re-lookups all walk this
/// sequence, so they agree on where a key can be: a key is claimed at the first `EMPTY` slot of
/// its sequence, and a walk that meets `EMPTY` has proved the key is not in the table.
///
/// The probe keeps its own copy of the table's geometry (slot array, mask), so that a step is
/// an add, a mask and a load: the loads of slot words between steps are atomic, and the
/// compiler would otherwise read the geometry from the table header again after each one.
pub(super) struct Probe<'t> {
    slots: &'t [Slot],
    mask: usize,
    index: usize,
    steps: usize,
}

/// A table's geometry (slot array, mask), read from its header once for many probes: a batch
/// of lookups in one table copies it before the first, so that no lookup reads the header
/// again after the slot loads of the one before.
#[derive(Clone, Copy)]
pub(super) struct Geometry<'t> {
    slots: &'t [Slot],
    mask: usize,
}

impl<'t> Geometry<'t> {
    #[inline]
    pub(super) fn of(table: &'t Table) -> Self {
        Geometry {
            slots: &table.slots,
            mask: table.mask,
        }
    }
}

impl<'t> Probe<'t> {
    #[inline]
    pub(super) fn new(table: &'t Table, hash: u64) -> Self {
        Probe::in_geometry(Geometry::of(table), hash)
    }

    /// The probe of `hash` in the table whose geometry this is.
    #[inline]
    pub(super) fn in_geometry(geometry: Geometry<'t>, hash: u64) -> Self {
        Probe {
            slots: geometry.slots,
            mask: geometry.mask,
            index: hash as usize,
            steps: 0,
        }
    }

    /// How far the last slot returned lies from the home slot.
    #[inline]
    pub(super) fn distance(&self) -> usize {
        self.steps - 1
    }
}

impl<'t> Iterator for Probe<'t> {
    type Item = &'t Slot;

    #[inline]
    fn next(&mut self) -> Option<&'t Slot> {
        if self.steps == self.slots.len() {
            return None;
        }
        // SAFETY: `mask` is the table's, one less than `slots.len()`, a power of two (see
        // `Table::allocate`), so `index & mask` is in bounds.
        let slot = unsafe { self.slots.get_unchecked(self.index & self.mask) };
        self.index = self.index.wrapping_add(1);
        self.steps += 1;
        Some(slot)
    }
}
