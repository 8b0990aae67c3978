//! The entry state machine: one key's value cell, shared by the read map and the dirty map.
//! The states and who may change them are described in the [parent module](super); this
//! module holds every transition and every dereference of a value pointer.
//!
//! # Ownership of a value box
//! * Before publication a box belongs to a [`NewValue`], which frees it if it is dropped (for
//!   example while a panic in a user's `Hash`, `Eq` or `Clone` unwinds past it). Each
//!   operation that may publish it hands the `NewValue` back when it does not.
//! * While published, the box belongs to the entry. The CAS that unlinks it retires it to the
//!   collector, exactly once, because a box is published once and can be unlinked once.
//! * [`Entry::drop`] frees the box still published when the last `Arc` of the entry goes.
//!
//! So a reference to a value is valid while the caller's guard is held *and* the entry it was
//! read from is alive: the guard keeps an unlinked box allocated, the entry a current one.
//! Every function that hands out a `&V` ties it to both.

use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use crate::reclaim::{self, Collector, Guard};
use crate::sync::{yield_now, AtomicPtr, Ordering};

/// Owns the address that marks an expunged entry; never read. A `u64`, so that the address is
/// even and the [`FROZEN`] bit stays free.
static EXPUNGED_MARKER: u64 = 0;

/// The expunged sentinel: a static's address, so it can never equal a boxed value.
fn expunged<V>() -> *mut Value<V> {
    ptr::addr_of!(EXPUNGED_MARKER) as *mut Value<V>
}

/// Whether an entry pointer refers to a boxed value (neither nil nor expunged).
fn is_value<V>(pointer: *mut Value<V>) -> bool {
    !pointer.is_null() && pointer != expunged()
}

/// Low bit of an entry pointer that a snapshot sets while it freezes the map (parent module
/// docs). Values, nil and the expunged marker are all even.
const FROZEN: usize = 1;

fn is_frozen<V>(pointer: *mut Value<V>) -> bool {
    pointer.addr() & FROZEN != 0
}

/// The entry pointer without the [`FROZEN`] bit.
fn thawed<V>(pointer: *mut Value<V>) -> *mut Value<V> {
    pointer.map_addr(|address| address & !FROZEN)
}

/// A boxed value as published in an entry.
struct Value<V> {
    value: V,
    /// Epoch at which the box was allocated, for the collector.
    birth: u64,
}

/// A boxed value that no entry holds yet; dropping it frees the box.
pub(super) struct NewValue<V> {
    /// A leaked `Box`, owned by this handle until [`NewValue::publish`].
    boxed: NonNull<Value<V>>,
    _owns: PhantomData<Box<Value<V>>>,
}

impl<V> NewValue<V> {
    /// Boxes `value` for publication by a thread pinned with `guard`.
    pub(super) fn new(value: V, collector: &Collector, guard: &Guard<'_>) -> Self {
        // `birth_epoch` raises our reservation to cover `birth`, which keeps the box readable
        // by us after we publish it, even if another thread unlinks and retires it at once
        // (see `LoadOrStore::Stored`).
        let birth = collector.birth_epoch(guard);
        NewValue {
            boxed: NonNull::from(Box::leak(Box::new(Value { value, birth }))),
            _owns: PhantomData,
        }
    }

    /// The pointer a CAS publishes; the handle still owns the box.
    fn as_ptr(&self) -> *mut Value<V> {
        self.boxed.as_ptr()
    }

    /// Gives up ownership once a CAS has published the box.
    fn publish(self) -> *mut Value<V> {
        let published = self.as_ptr();
        std::mem::forget(self);
        published
    }
}

impl<V> Drop for NewValue<V> {
    fn drop(&mut self) {
        // SAFETY: `boxed` came from a `Box` and was never published: publishing consumes the
        // handle without running this.
        drop(unsafe { Box::from_raw(self.boxed.as_ptr()) });
    }
}

/// One key's value cell, shared by the read map and the dirty map.
pub(super) struct Entry<V> {
    /// A boxed value, null (nil: deleted) or [`expunged`], possibly [`FROZEN`]; see the
    /// parent module docs.
    value: AtomicPtr<Value<V>>,
}

/// What [`Entry::try_load_or_store`] did.
pub(super) enum LoadOrStore<'a, V> {
    /// A value was present and is returned; the new one was dropped.
    Loaded(&'a V),
    /// The entry was nil and now holds the new value, returned as stored.
    Stored(&'a V),
    /// The entry is expunged; only the mutex holder may store into it.
    Expunged(NewValue<V>),
}

impl<V> Entry<V> {
    /// An entry without a value (nil), for a key that the mutex holder is adding.
    pub(super) fn nil() -> Self {
        Entry {
            value: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Loads the entry's pointer so that it may be dereferenced until `guard` drops. The
    /// result may carry the [`FROZEN`] bit.
    fn protected(&self, guard: &Guard<'_>) -> *mut Value<V> {
        guard.protect(|| self.value.load(Ordering::Acquire))
    }

    /// Like [`protected`](Self::protected), for a lock-free writer: while a snapshot has the
    /// entry frozen, waits until it thaws (the snapshot holds the mutex meanwhile, so a
    /// writer holding the mutex never finds an entry frozen).
    fn protected_unfrozen(&self, guard: &Guard<'_>) -> *mut Value<V> {
        loop {
            let current = self.protected(guard);
            if !is_frozen(current) {
                return current;
            }
            yield_now();
        }
    }

    /// The value behind a protected pointer.
    ///
    /// # Safety
    /// `pointer` is a value pointer (see [`is_value`]) that was loaded from this entry through
    /// `guard.protect`, or was published by this thread after [`NewValue::new`] raised the
    /// reservation of `guard` to cover its birth. Either way it stays allocated until `guard`
    /// drops, unless [`Entry::drop`] frees it first, which the `&'a self` borrow rules out.
    unsafe fn value_at<'a>(&'a self, pointer: *mut Value<V>, _guard: &'a Guard<'_>) -> &'a V {
        // SAFETY: allocated while both borrows last (the caller's contract).
        unsafe { &(*pointer).value }
    }

    /// The current value, frozen or not.
    pub(super) fn load<'a>(&'a self, guard: &'a Guard<'_>) -> Option<&'a V> {
        let current = thawed(self.protected(guard));
        // SAFETY: a value pointer loaded through `guard.protect` from this entry.
        is_value(current).then(|| unsafe { self.value_at(current, guard) })
    }

    /// Replaces `current` with `new` by CAS; on success retires `current` if it was a value
    /// and returns that value, readable while `guard` is held.
    ///
    /// # Safety
    /// `current` was loaded from this entry through `guard.protect`, so that if our CAS
    /// unlinks it, the reservation of `guard` covers it after we retire it.
    unsafe fn replace<'g>(
        &self,
        current: *mut Value<V>,
        new: *mut Value<V>,
        guard: &'g Guard<'_>,
    ) -> Result<Option<&'g V>, ()> {
        self.value
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| ())?;
        if !is_value(current) {
            return Ok(None);
        }
        // SAFETY: the box is allocated: our CAS unlinked it, and only we can retire it.
        let birth = unsafe { (*current).birth };
        // SAFETY: our CAS unlinked `current`, the only pointer to it, and only the thread
        // whose CAS unlinks a box retires it (a box is published once); it was born at
        // `birth` and is a box.
        unsafe { guard.retire(current.cast(), birth, reclaim::free_box::<Value<V>>) };
        // SAFETY: our own reservation covers the retired box until `guard` drops, because
        // the caller protected it before we retired it; no entry can free it any more.
        Ok(Some(unsafe { &(*current).value }))
    }

    /// Replaces the value unless the entry is expunged (Go's `trySwap`; with the mutex held
    /// and the entry unexpunged, Go's `swapLocked`). Returns the previous value, if any; hands
    /// `new` back if the entry is expunged.
    pub(super) fn swap_unless_expunged<'g>(
        &self,
        new: NewValue<V>,
        guard: &'g Guard<'_>,
    ) -> Result<Option<&'g V>, NewValue<V>> {
        loop {
            let current = self.protected_unfrozen(guard);
            if current == expunged() {
                return Err(new);
            }
            // SAFETY: `current` was loaded through `guard.protect`.
            if let Ok(previous) = unsafe { self.replace(current, new.as_ptr(), guard) } {
                new.publish();
                return Ok(previous);
            }
        }
    }

    /// Go's `tryLoadOrStore`: stores `new` if the entry is nil.
    pub(super) fn try_load_or_store<'a>(
        &'a self,
        new: NewValue<V>,
        guard: &'a Guard<'_>,
    ) -> LoadOrStore<'a, V> {
        loop {
            let current = self.protected_unfrozen(guard);
            if current == expunged() {
                return LoadOrStore::Expunged(new);
            }
            if !current.is_null() {
                // SAFETY: a value pointer loaded through `guard.protect` from this entry.
                return LoadOrStore::Loaded(unsafe { self.value_at(current, guard) });
            }
            // SAFETY: `current` was loaded through `guard.protect`.
            if unsafe { self.replace(current, new.as_ptr(), guard) }.is_ok() {
                // SAFETY: published by us just now; `NewValue::new` raised our reservation
                // to cover its birth, so it stays allocated while `guard` is held even if
                // another thread unlinks and retires it at once.
                return LoadOrStore::Stored(unsafe { self.value_at(new.publish(), guard) });
            }
        }
    }

    /// Deletes the value (Go's `entry.delete`), returning it.
    pub(super) fn delete<'g>(&self, guard: &'g Guard<'_>) -> Option<&'g V> {
        self.delete_if(guard, |_| true)
    }

    /// Deletes the value if `matches` accepts it (Go's `CompareAndDelete` loop); `matches`
    /// runs again on the new value whenever the CAS loses a race.
    pub(super) fn delete_if<'g>(
        &self,
        guard: &'g Guard<'_>,
        mut matches: impl FnMut(&V) -> bool,
    ) -> Option<&'g V> {
        loop {
            let current = self.protected_unfrozen(guard);
            // SAFETY: a value pointer loaded through `guard.protect` from this entry.
            if !is_value(current) || !matches(unsafe { self.value_at(current, guard) }) {
                return None;
            }
            // SAFETY: `current` was loaded through `guard.protect`.
            if let Ok(deleted) = unsafe { self.replace(current, ptr::null_mut(), guard) } {
                return deleted;
            }
        }
    }

    /// Go's `tryCompareAndSwap`: replaces the value with `make_new()` if it equals
    /// `expected`. `make_new` runs at most once, and only after a match; the new value is
    /// dropped if a later comparison fails.
    pub(super) fn try_compare_and_swap(
        &self,
        expected: &V,
        make_new: impl FnOnce() -> NewValue<V>,
        guard: &Guard<'_>,
    ) -> bool
    where
        V: PartialEq,
    {
        let mut make_new = Some(make_new);
        let mut new: Option<NewValue<V>> = None;
        loop {
            let current = self.protected_unfrozen(guard);
            // SAFETY: a value pointer loaded through `guard.protect` from this entry.
            if !is_value(current) || unsafe { self.value_at(current, guard) } != expected {
                return false;
            }
            let candidate = new.get_or_insert_with(|| {
                let make = make_new
                    .take()
                    .expect("`new` is set from the first match on");
                make()
            });
            // SAFETY: `current` was loaded through `guard.protect`.
            if unsafe { self.replace(current, candidate.as_ptr(), guard) }.is_ok() {
                if let Some(published) = new {
                    published.publish();
                }
                return true;
            }
        }
    }

    /// Freezes the entry for a snapshot (mutex held): sets the [`FROZEN`] bit, after which
    /// lock-free writers leave the entry alone until [`thaw`](Self::thaw). Returns the
    /// pointer it froze.
    fn freeze(&self) -> *mut Value<V> {
        let mut current = self.value.load(Ordering::Acquire);
        loop {
            debug_assert!(!is_frozen(current), "one snapshot at a time: the mutex");
            match self.value.compare_exchange(
                current,
                current.map_addr(|address| address | FROZEN),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return current,
                Err(actual) => current = actual,
            }
        }
    }

    /// Ends [`freeze`](Self::freeze). Nobody else changes a frozen entry, so a store suffices.
    fn thaw(&self) {
        let frozen = self.value.load(Ordering::Relaxed);
        self.value.store(thawed(frozen), Ordering::Release);
    }

    /// Whether the entry is expunged; meaningful with the mutex held, since only mutex
    /// holders expunge or unexpunge.
    pub(super) fn is_expunged_locked(&self) -> bool {
        self.value.load(Ordering::Acquire) == expunged()
    }

    /// Go's `unexpungeLocked`: expunged -> nil, with the mutex held and the entry already
    /// back in the dirty map (in that order, so that a panic in between leaves it expunged
    /// and out of the dirty map, still consistent).
    pub(super) fn unexpunge_locked(&self) {
        let unexpunged = self.value.compare_exchange(
            expunged(),
            ptr::null_mut(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        debug_assert!(
            unexpunged.is_ok(),
            "only mutex holders change an expunged entry"
        );
    }

    /// Go's `tryExpungeLocked`: nil -> expunged, with the mutex held while the dirty map is
    /// rebuilt. True when the entry ends expunged (and must stay out of the dirty map). The
    /// pointer is only compared, never dereferenced, so it needs no protection.
    pub(super) fn try_expunge_locked(&self) -> bool {
        let mut current = self.value.load(Ordering::Acquire);
        while current.is_null() {
            match self.value.compare_exchange(
                ptr::null_mut(),
                expunged(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
        current == expunged()
    }
}

/// Freezes every entry of `entries`, then thaws them: once the last one is frozen nothing in
/// the map can change, so the values returned (one per entry, in order; `None` for a deleted
/// entry) are the map's contents at that instant.
///
/// The values stay readable after the thaw, while writers replace and retire them: `guard`
/// holds back everything retired during its pin, and the `'a` borrow keeps the entries alive.
///
/// # Safety
/// The caller holds the map's mutex: no other thread freezes or thaws these entries
/// meanwhile, so every pointer frozen here is a plain entry pointer (without the
/// [`FROZEN`] bit), and no mutex holder writes them while they are frozen.
pub(super) unsafe fn frozen_values<'a, V: 'a>(
    entries: impl Iterator<Item = &'a Entry<V>> + Clone,
    guard: &'a Guard<'_>,
) -> Vec<Option<&'a V>> {
    guard.hold_retired();
    let frozen: Vec<(&Entry<V>, *mut Value<V>)> = entries
        .clone()
        .map(|entry| (entry, entry.freeze()))
        .collect();
    for entry in entries {
        entry.thaw();
    }
    frozen
        .into_iter()
        .map(|(entry, value)| {
            // SAFETY: `value` was the entry's pointer at the freeze (without the `FROZEN` bit:
            // nobody else froze it, by the caller's contract), while `guard` was pinned; since
            // then it is either still current in `entry`, which `'a` keeps alive, or was
            // retired after `hold_retired`, which keeps it allocated until `guard` drops.
            is_value(value).then(|| unsafe { entry.value_at(value, guard) })
        })
        .collect()
}

impl<V> Drop for Entry<V> {
    fn drop(&mut self) {
        let current = thawed(self.value.load(Ordering::Acquire));
        if is_value(current) {
            // SAFETY: the last `Arc` of the entry is gone: no map holds it, no read map that
            // held it is still pinned (read maps are freed by the collector), and slow paths
            // hold their own `Arc`. So nobody can reach the current value, which the entry
            // owns (published from a `NewValue`, hence a box) and which no CAS unlinked.
            drop(unsafe { Box::from_raw(current) });
        }
    }
}
