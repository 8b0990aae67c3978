//! Slot contents as they leave a table: handles whose lifetime is the guard they were loaded
//! under, in the manner of crossbeam's `Shared<'g, T>`. A word that points to a box is only
//! dereferenced through a handle, so "the box stays allocated while the caller's guard lives"
//! is a lifetime the compiler checks instead of a comment.

use std::fmt;

use equivalent::Equivalent;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::ops::Deref;

use super::word::{self, Codec};
use crate::reclaim::Guard;
use crate::sync::{AtomicU64, Ordering};

/// A key or value word loaded under a guard that lives for `'g`: a sentinel or an item.
pub(super) struct Loaded<'g, T> {
    word: u64,
    _guard: PhantomData<&'g T>,
}

impl<T> Clone for Loaded<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Loaded<'_, T> {}

/// Loads a key or value word of `T` under `guard`. A box address is loaded again under
/// protection before it is returned; inline words and sentinels need none, so maps of inline
/// keys and values never pay for it.
#[inline]
pub(super) fn load<'g, T: 'static>(guard: &'g Guard<'_>, atomic: &AtomicU64) -> Loaded<'g, T> {
    loaded(guard, atomic, atomic.load(Ordering::Acquire))
}

/// Loads a key or value word, testing for an inline item before anything else: `Ok` with the
/// item if it is stored inline, otherwise `Err` with the word as [`load`] returns it (a
/// sentinel, or a box address loaded again under protection). A probe that tests the inline
/// key first decides on the slot in one branch once its line arrives, and the CPU runs on into
/// the next operation sooner: in a bare loop over a million-key table, a lookup took 23 ns this
/// way and 30-40 ns with the sentinel and box tests first.
#[inline]
pub(super) fn load_inline_first<'g, T: 'static>(
    guard: &'g Guard<'_>,
    atomic: &AtomicU64,
) -> Result<Shared<'g, T>, Loaded<'g, T>> {
    let word = atomic.load(Ordering::Acquire);
    inline(guard, word).ok_or_else(|| loaded(guard, atomic, word))
}

/// The item of an inline word loaded under `guard`; `None` for a sentinel or a box address,
/// which this does not load again.
#[inline]
pub(super) fn inline<'g, T: 'static>(_guard: &'g Guard<'_>, word: u64) -> Option<Shared<'g, T>> {
    word::is_inline(word).then_some(Shared {
        word,
        _guard: PhantomData,
    })
}

/// A word read from `atomic` without protection (a plain load, or the word a failed CAS
/// returned), as a loaded word: a box address is loaded again under protection, anything else
/// is used as is.
#[inline]
pub(super) fn loaded<'g, T: 'static>(
    guard: &'g Guard<'_>,
    atomic: &AtomicU64,
    word: u64,
) -> Loaded<'g, T> {
    let word = if Codec::<T>::may_box() && word::is_box(word) {
        guard.protect(|| atomic.load(Ordering::Acquire))
    } else {
        word
    };
    Loaded {
        word,
        _guard: PhantomData,
    }
}

impl<'g, T> Loaded<'g, T> {
    /// The word itself, to compare with sentinels or to CAS against.
    #[inline]
    pub(super) fn raw(self) -> u64 {
        self.word
    }

    /// The key this key word holds, if it holds one (not `EMPTY` or `SEALED`).
    #[inline]
    pub(super) fn key(self) -> Option<Shared<'g, T>> {
        word::is_key(self.word).then_some(Shared {
            word: self.word,
            _guard: PhantomData,
        })
    }

    /// The value this value word holds, if it holds one (not `ABSENT`, `MOVED` or `DROPPED`).
    #[inline]
    pub(super) fn value(self) -> Option<Shared<'g, T>> {
        word::is_value(self.word).then_some(Shared {
            word: self.word,
            _guard: PhantomData,
        })
    }
}

/// A key or value stored in a table, readable while the guard it was loaded under lives.
pub(in crate::atomic_map) struct Shared<'g, T> {
    word: u64,
    _guard: PhantomData<&'g T>,
}

impl<T> Clone for Shared<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Shared<'_, T> {}

/// Two handles are equal when they are the same stored item (the same word): a value that was
/// replaced by an equal one is a different item.
impl<T> PartialEq for Shared<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.word == other.word
    }
}

impl<'g, T: 'static> Shared<'g, T> {
    /// A handle on an item word the caller made itself.
    ///
    /// # Safety
    /// `word` is an item word of a `T` (inline, or the address of a [`word::Boxed<T>`]) whose
    /// box stays allocated for `'g`.
    #[inline]
    pub(super) unsafe fn from_word(word: u64) -> Self {
        debug_assert!(word::is_key(word) && word::is_value(word));
        Shared {
            word,
            _guard: PhantomData,
        }
    }

    #[inline]
    pub(super) fn word(self) -> u64 {
        self.word
    }

    /// The item: borrowed from its box, or decoded from an inline word.
    #[inline]
    pub(in crate::atomic_map) fn get(self) -> ValueRef<'g, T> {
        if word::is_inline(self.word) {
            ValueRef::Inline(Codec::<T>::from_inline(self.word))
        } else {
            ValueRef::Borrowed(&self.boxed().item)
        }
    }

    /// [`get`](Self::get) for a word known to be inline: decoded without a test.
    #[inline]
    pub(in crate::atomic_map) fn get_inline(self) -> ValueRef<'g, T> {
        debug_assert!(word::is_inline(self.word));
        ValueRef::Inline(Codec::<T>::from_inline(self.word))
    }

    /// Runs `read` on the item.
    #[inline]
    pub(in crate::atomic_map) fn with<R>(self, read: impl FnOnce(&T) -> R) -> R {
        read(&self.get())
    }

    #[inline]
    fn boxed(self) -> &'g word::Boxed<T> {
        // SAFETY: a `Shared` holds an item word; one that is not inline is a box address, and
        // the handle exists only while the guard that keeps the box allocated lives (`'g`):
        // it was loaded under that guard with `load`, or made by `from_word`'s caller.
        unsafe { word::boxed::<T>(self.word) }
    }
}

impl<K: Hash + Eq + 'static> Shared<'_, K> {
    /// Whether this key is `query`, whose hash is `hash`. A boxed key compares its stored hash
    /// first, so most mismatches never call the user's `Eq`.
    #[inline]
    pub(super) fn matches<Q>(self, hash: u64, query: &Q) -> bool
    where
        Q: Equivalent<K> + ?Sized,
    {
        if word::is_inline(self.word) {
            query.equivalent(&Codec::<K>::from_inline(self.word))
        } else {
            let boxed = self.boxed();
            boxed.hash == hash && query.equivalent(&boxed.item)
        }
    }

    /// The birth epoch of a boxed key; `None` for an inline one.
    pub(super) fn box_birth(self) -> Option<u64> {
        (!word::is_inline(self.word)).then(|| self.boxed().birth)
    }

    /// Whether two stored keys are equal: the same word, or equal boxed keys (an inline key has
    /// one encoding, so distinct inline words are distinct keys).
    pub(super) fn same_key(self, other: Self) -> bool {
        if self.word == other.word {
            return true;
        }
        if word::is_inline(self.word) || word::is_inline(other.word) {
            return false;
        }
        let (a, b) = (self.boxed(), other.boxed());
        a.hash == b.hash && a.item == b.item
    }

    /// The key's hash: stored with a boxed key, computed with the map's hasher for an inline
    /// one (which calls the user's hasher).
    pub(super) fn hash_with<S: BuildHasher>(self, hasher: &S) -> u64 {
        if word::is_inline(self.word) {
            hasher.hash_one(Codec::<K>::from_inline(self.word))
        } else {
            self.boxed().hash
        }
    }
}

/// A key or value borrowed from the map under a pin: a reference into its box, or the decoded
/// value for types stored inline in their slot.
///
/// It is deliberately not `Clone`: it derefs to `V`, so `value_ref.clone()` clones the value
/// itself, as it would through a `&V` (and [`into_owned`](Self::into_owned) does the same).
pub enum ValueRef<'g, V> {
    /// A value stored in a box the pin keeps alive.
    Borrowed(&'g V),
    /// A value stored inline in its slot, decoded.
    Inline(V),
}

impl<V: Clone> ValueRef<'_, V> {
    /// The value itself: a clone of a borrowed one, the decoded one as is.
    #[inline]
    pub fn into_owned(self) -> V {
        match self {
            ValueRef::Borrowed(value) => value.clone(),
            ValueRef::Inline(value) => value,
        }
    }
}

impl<V> Deref for ValueRef<'_, V> {
    type Target = V;

    fn deref(&self) -> &V {
        match self {
            ValueRef::Borrowed(value) => value,
            ValueRef::Inline(value) => value,
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for ValueRef<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<V: PartialEq> PartialEq for ValueRef<'_, V> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<V: PartialEq> PartialEq<V> for ValueRef<'_, V> {
    fn eq(&self, other: &V) -> bool {
        **self == *other
    }
}
