//! Keys and values on their way into a slot, and who owns their boxes at each step.
//!
//! A key or value that must be boxed is boxed once, the first time a CAS needs its word, and
//! the box is reused across retries. Until a CAS publishes it the box belongs to the pending
//! item, which frees it when dropped; after, it belongs to the table.

use std::hash::Hash;

use super::shared::Shared;
use super::table::{Slot, Table};
use super::word::{self, Codec, DROPPED, MOVED};
use crate::reclaim::{free_box, Collector, Guard};
use crate::sync::Ordering;

/// An owned key that a write may need to claim a slot with.
pub(super) struct PendingKey<'c, K: 'static> {
    /// The key, until it is moved into a box.
    key: Option<K>,
    hash: u64,
    /// The claim word, once computed.
    word: Option<u64>,
    /// Whether a table currently owns the box.
    published: bool,
    /// Whether the box was ever visible to other threads, so that freeing it must wait for them.
    shared: bool,
    /// The oldest birth of a table the box was claimed in: a reader of that table can load the
    /// box's word from the slot for as long as its reservation, which covers that birth, lasts.
    visible_since: u64,
    collector: &'c Collector,
}

impl<'c, K: Hash + Eq + 'static> PendingKey<'c, K> {
    pub(super) fn new(key: K, hash: u64, collector: &'c Collector) -> Self {
        PendingKey {
            key: Some(key),
            hash,
            word: None,
            published: false,
            shared: false,
            visible_since: u64::MAX,
            collector,
        }
    }

    /// Whether the stored key `key` is this key.
    pub(super) fn matches(&self, key: Shared<'_, K>) -> bool {
        match (&self.key, self.word) {
            (Some(owned), _) => key.matches(self.hash, owned),
            // SAFETY: our own box: we own it or a table does, and either way it is freed only
            // after this pending key is gone (a table frees it after retiring it past our pin).
            (None, Some(boxed)) => key.same_key(unsafe { Shared::from_word(boxed) }),
            (None, None) => unreachable!("a pending key is boxed only together with its word"),
        }
    }

    /// The word to claim a slot with.
    pub(super) fn word(&mut self, guard: &Guard<'_>) -> u64 {
        if let Some(word) = self.word {
            return word;
        }
        let key = self
            .key
            .as_ref()
            .expect("an unboxed pending key holds its key");
        let word = match Codec::<K>::inline_word(key) {
            Some(inline) => inline,
            None => {
                let key = self.key.take().expect("checked above");
                word::box_word(key, self.collector.birth_epoch(guard), self.hash)
            }
        };
        self.word = Some(word);
        word
    }

    /// The birth epoch of the key's box, once it is boxed.
    pub(super) fn box_birth(&self) -> Option<u64> {
        // SAFETY: our own box, as in `matches`.
        let key: Shared<'_, K> = unsafe { Shared::from_word(self.word?) };
        key.box_birth()
    }

    /// A claim CAS stored this key's word in a slot of `table`.
    pub(super) fn published(&mut self, claimed: u64, table: &Table) {
        debug_assert_eq!(Some(claimed), self.word);
        if !word::is_inline(claimed) {
            self.published = true;
            self.shared = true;
            self.visible_since = self.visible_since.min(table.birth);
        }
    }

    /// A resize dropped the slot this key was claimed in before any value reached it. If the
    /// slot holds our box, take it back (`DROPPED` → `MOVED` tells the old table it no longer
    /// owns the key), so the write can claim a slot in the next table with it.
    pub(super) fn rehome_from(&mut self, slot: &Slot) {
        let Some(word) = self.word else { return };
        if !self.published || slot.key.load(Ordering::Acquire) != word {
            return;
        }
        if slot
            .value
            .compare_exchange(DROPPED, MOVED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.published = false;
        }
    }
}

impl<K: 'static> Drop for PendingKey<'_, K> {
    fn drop(&mut self) {
        let Some(word) = self.word else { return };
        if self.published || word::is_inline(word) {
            return;
        }
        if self.shared {
            // Readers of the slot it was once claimed in may still compare against it.
            let guard = self.collector.enter();
            // SAFETY: we own the box (taken back by `rehome_from` and never claimed again), no
            // slot can lead a new reader to it... except those it was claimed in, which readers
            // reach only while pinned with a reservation covering their table's birth: retiring
            // it as born no later than the oldest of them defers the free past those readers.
            unsafe {
                let birth = word::boxed::<K>(word).birth.min(self.visible_since);
                guard.retire_sized(
                    word::box_ptr::<K>(word),
                    std::mem::size_of::<word::Boxed<K>>(),
                    birth,
                    free_box::<word::Boxed<K>>,
                );
            }
        } else {
            // SAFETY: never published, so no other thread has seen the box.
            drop(unsafe { word::unbox::<K>(word) });
        }
    }
}

/// What a write stores in a key's value word: a staged value, or nothing (a remove).
#[derive(Clone, Copy)]
pub(in crate::atomic_map) struct Staged(u64);

impl Staged {
    /// Removes the key's value.
    pub(in crate::atomic_map) const REMOVE: Staged = Staged(word::ABSENT);

    pub(super) fn word(self) -> u64 {
        self.0
    }
}

/// An owned value that a write will commit.
pub(in crate::atomic_map) struct PendingValue<'c, V: 'static> {
    value: Option<V>,
    word: Option<u64>,
    published: bool,
    collector: &'c Collector,
}

impl<'c, V: 'static> PendingValue<'c, V> {
    pub(super) fn new(value: V, collector: &'c Collector) -> Self {
        PendingValue {
            value: Some(value),
            word: None,
            published: false,
            collector,
        }
    }

    /// The value as a write's decision to store it; boxed on the first call, reused after.
    pub(in crate::atomic_map) fn stage(&mut self, guard: &Guard<'_>) -> Staged {
        if let Some(word) = self.word {
            return Staged(word);
        }
        let value = self
            .value
            .as_ref()
            .expect("an unboxed pending value holds its value");
        let word = match Codec::<V>::inline_word(value) {
            Some(inline) => inline,
            None => {
                let value = self.value.take().expect("checked above");
                word::box_word(value, self.collector.birth_epoch(guard), 0)
            }
        };
        self.word = Some(word);
        Staged(word)
    }

    /// The write committed this value; it now belongs to the table. Returns it as stored,
    /// readable while `guard` (the guard it was staged under) lives.
    pub(in crate::atomic_map) fn published<'g>(&mut self, guard: &'g Guard<'_>) -> Shared<'g, V> {
        let word = self.stage(guard).word();
        self.published = true;
        // SAFETY: an item word we staged under `guard`: its box (if any) was born within the
        // guard's reservation (`birth_epoch`), so it is not freed while the guard lives even if
        // a writer replaces and retires it at once.
        unsafe { Shared::from_word(word) }
    }
}

impl<V: 'static> Drop for PendingValue<'_, V> {
    fn drop(&mut self) {
        match self.word {
            Some(word) if !self.published && !word::is_inline(word) => {
                // SAFETY: never published, so no other thread has seen the box.
                drop(unsafe { word::unbox::<V>(word) });
            }
            _ => {}
        }
    }
}
