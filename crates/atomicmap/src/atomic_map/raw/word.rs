//! How keys and values become the 64-bit words stored in a slot.
//!
//! A slot word is one of:
//!
//! | word                  | key word means               | value word means               |
//! |-----------------------|------------------------------|--------------------------------|
//! | `0`                   | [`EMPTY`]: never claimed     | [`ABSENT`]: no value (removed) |
//! | `2`                   | [`SEALED`]: emptied by resize | [`MOVED`]: live in next table  |
//! | `4`                   | —                            | [`DROPPED`]: removed, not moved |
//! | odd: `raw << 1 \| 1`  | an inline key                | an inline value                |
//! | multiple of 8, not 0  | address of a [`Boxed`] key   | address of a [`Boxed`] value   |
//!
//! *Inline* types are the primitive integers, `bool`, `char` and `()`: their value, zero-extended (or
//! zig-zag encoded when signed) to 64 bits, is stored in the word itself when it fits in 63 bits,
//! which every type narrower than 64 bits always does. So `AtomicMap<u64, u64>` allocates nothing
//! per operation for keys and values below 2^63; a 64-bit value at or above 2^63 (or below
//! -2^62 for signed types) takes a box, transparently. Every other type is always boxed.
//!
//! Each key and value has exactly one encoding (an inline-able value is never boxed), so two
//! inline words are equal exactly when their keys are.
//!
//! Inline-ness is decided per type by comparing `TypeId`s, which the compiler folds to a
//! constant, so the encoding costs a shift on the fast path.

use std::any::TypeId;
use std::marker::PhantomData;
use std::mem;

/// Key word of a slot no key ever claimed; the end of every probe sequence.
pub(super) const EMPTY: u64 = 0;
/// Key word of an empty slot that a resize closed, so no key can claim it any more.
pub(super) const SEALED: u64 = 2;
/// Value word of a claimed key that has no value (never set, or removed).
pub(super) const ABSENT: u64 = 0;
/// Value word of a key whose value (and key) now live in the next table.
pub(super) const MOVED: u64 = 2;
/// Value word of a removed key that a resize did not carry over; the key stays owned by the old
/// table until a writer re-homes it (see `migrate`).
pub(super) const DROPPED: u64 = 4;

/// Tag bit of an inline word.
const INLINE_TAG: u64 = 1;

/// A heap-allocated key or value with the birth epoch the reclaimer needs.
///
/// Aligned to 8 so that its address is never one of the small sentinel words nor odd.
#[repr(align(8))]
pub(super) struct Boxed<T> {
    pub(super) birth: u64,
    /// Hash of a boxed key, kept so that carrying it to a new table calls no user code (an
    /// inline key has no room for it, so carrying one calls the hasher).
    pub(super) hash: u64,
    pub(super) item: T,
}

/// The primitive types stored inline, and how each maps to a raw 64-bit integer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inline {
    Unsigned,
    Signed,
    Bool,
    Char,
    /// `()`, the value of a set's map: one inline word, so a set allocates no value boxes.
    Unit,
}

/// Encoding of type `T` into slot words.
pub(super) struct Codec<T>(PhantomData<T>);

impl<T: 'static> Codec<T> {
    fn inline_kind() -> Option<(Inline, usize)> {
        let id = TypeId::of::<T>();
        let unsigned = [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
        ];
        let signed = [
            TypeId::of::<i8>(),
            TypeId::of::<i16>(),
            TypeId::of::<i32>(),
            TypeId::of::<i64>(),
            TypeId::of::<isize>(),
        ];
        if unsigned.contains(&id) {
            Some((Inline::Unsigned, mem::size_of::<T>()))
        } else if signed.contains(&id) {
            Some((Inline::Signed, mem::size_of::<T>()))
        } else if id == TypeId::of::<bool>() {
            Some((Inline::Bool, 1))
        } else if id == TypeId::of::<char>() {
            Some((Inline::Char, 4))
        } else if id == TypeId::of::<()>() {
            Some((Inline::Unit, 0))
        } else {
            None
        }
    }

    /// Whether some items of `T` are stored inline (a primitive; `u64` below 2^63).
    #[inline]
    pub(super) fn may_inline() -> bool {
        Self::inline_kind().is_some()
    }

    /// Whether words of `T` may point to a [`Boxed`] and so need reclamation.
    #[inline]
    pub(super) fn may_box() -> bool {
        match Self::inline_kind() {
            Some((_, size)) => size == 8,
            None => true,
        }
    }

    /// The inline word for `item`, or `None` when it must be boxed.
    #[inline]
    pub(super) fn inline_word(item: &T) -> Option<u64> {
        let (kind, size) = Self::inline_kind()?;
        // SAFETY: (every read below) `inline_kind` matched `T` to a primitive of exactly `size`
        // bytes with the stated signedness, so reading `size` bytes of `item` as that primitive
        // reads a valid, fully initialised value.
        let raw = unsafe {
            match (kind, size) {
                (Inline::Unit, _) => 0,
                (Inline::Unsigned, 1) | (Inline::Bool, _) => u64::from(read::<T, u8>(item)),
                (Inline::Unsigned, 2) => u64::from(read::<T, u16>(item)),
                (Inline::Unsigned, 4) | (Inline::Char, _) => u64::from(read::<T, u32>(item)),
                (Inline::Unsigned, _) => read::<T, u64>(item),
                (Inline::Signed, 1) => zigzag(i64::from(read::<T, i8>(item))),
                (Inline::Signed, 2) => zigzag(i64::from(read::<T, i16>(item))),
                (Inline::Signed, 4) => zigzag(i64::from(read::<T, i32>(item))),
                (Inline::Signed, _) => zigzag(read::<T, i64>(item)),
            }
        };
        (raw >> 63 == 0).then_some((raw << 1) | INLINE_TAG)
    }

    /// Decodes an inline word produced by [`Self::inline_word`] for this `T`.
    #[inline]
    pub(super) fn from_inline(word: u64) -> T {
        debug_assert!(is_inline(word));
        let raw = word >> 1;
        let (kind, size) = Self::inline_kind().expect("inline word of a boxed type");
        // SAFETY: (all writes below) `raw` came from `inline_word` for this `T`, so narrowing it
        // back gives the original bit pattern of a valid value of the primitive `T` is (for
        // `bool` 0 or 1, for `char` a scalar value), of exactly `size_of::<T>()` bytes.
        unsafe {
            match (kind, size) {
                (Inline::Unit, _) => write::<T, ()>(()),
                (Inline::Unsigned, 1) | (Inline::Bool, _) => write::<T, u8>(raw as u8),
                (Inline::Unsigned, 2) => write::<T, u16>(raw as u16),
                (Inline::Unsigned, 4) | (Inline::Char, _) => write::<T, u32>(raw as u32),
                (Inline::Unsigned, _) => write::<T, u64>(raw),
                (Inline::Signed, 1) => write::<T, i8>(unzigzag(raw) as i8),
                (Inline::Signed, 2) => write::<T, i16>(unzigzag(raw) as i16),
                (Inline::Signed, 4) => write::<T, i32>(unzigzag(raw) as i32),
                (Inline::Signed, _) => write::<T, i64>(unzigzag(raw)),
            }
        }
    }
}

/// Whether a (non-sentinel) word holds its item inline rather than pointing to a box.
#[inline]
pub(super) fn is_inline(word: u64) -> bool {
    word & INLINE_TAG != 0
}

/// Whether a word is the address of a box (neither a sentinel nor inline).
#[inline]
pub(super) fn is_box(word: u64) -> bool {
    word & INLINE_TAG == 0 && word > DROPPED
}

/// Whether a key word holds a key rather than `EMPTY` or `SEALED`.
#[inline]
pub(super) fn is_key(word: u64) -> bool {
    word != EMPTY && word != SEALED
}

/// Whether a value word holds a value rather than `ABSENT`, `MOVED` or `DROPPED`.
#[inline]
pub(super) fn is_value(word: u64) -> bool {
    word != ABSENT && word != MOVED && word != DROPPED
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// # Safety
/// `T` and `P` are the same type.
#[inline]
unsafe fn read<T, P: Copy>(item: &T) -> P {
    debug_assert_eq!(mem::size_of::<T>(), mem::size_of::<P>());
    // SAFETY: the caller guarantees `T` is `P`.
    unsafe { mem::transmute_copy::<T, P>(item) }
}

/// # Safety
/// `T` and `P` are the same type.
#[inline]
unsafe fn write<T, P: Copy>(primitive: P) -> T {
    debug_assert_eq!(mem::size_of::<T>(), mem::size_of::<P>());
    // SAFETY: the caller guarantees `T` is `P`.
    unsafe { mem::transmute_copy::<P, T>(&primitive) }
}

/// Boxes `item` and returns its word.
pub(super) fn box_word<T>(item: T, birth: u64, hash: u64) -> u64 {
    let boxed = Box::into_raw(Box::new(Boxed { birth, hash, item }));
    boxed.expose_provenance() as u64
}

/// The box a pointer word refers to.
///
/// # Safety
/// `word` is a pointer word of a `Boxed<T>` that stays allocated for `'a` (the caller holds a
/// guard that protected the load of `word`, or owns the box).
#[inline]
pub(super) unsafe fn boxed<'a, T>(word: u64) -> &'a Boxed<T> {
    debug_assert!(word != 0 && word.is_multiple_of(8));
    // SAFETY: guaranteed by the caller; the address was exposed by `box_word`.
    unsafe { &*std::ptr::with_exposed_provenance::<Boxed<T>>(word as usize) }
}

/// Takes back ownership of a box.
///
/// # Safety
/// `word` is a pointer word of a `Boxed<T>` that no other thread can reach and that is not freed
/// elsewhere.
pub(super) unsafe fn unbox<T>(word: u64) -> Box<Boxed<T>> {
    // SAFETY: guaranteed by the caller; the address was exposed by `box_word`.
    unsafe {
        Box::from_raw(std::ptr::with_exposed_provenance_mut::<Boxed<T>>(
            word as usize,
        ))
    }
}

/// The raw pointer of a pointer word, for retiring it.
pub(super) fn box_ptr<T>(word: u64) -> *mut () {
    std::ptr::with_exposed_provenance_mut::<Boxed<T>>(word as usize) as *mut ()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: 'static + Copy + PartialEq + std::fmt::Debug>(item: T) {
        let word = Codec::<T>::inline_word(&item).expect("inline");
        assert!(is_inline(word) && is_key(word) && is_value(word));
        assert_eq!(Codec::<T>::from_inline(word), item);
    }

    #[test]
    fn primitives_round_trip_inline() {
        round_trip(0u64);
        round_trip((1u64 << 63) - 1);
        round_trip(u32::MAX);
        round_trip(-1i64);
        round_trip(i64::MIN / 2);
        round_trip(i8::MIN);
        round_trip(true);
        round_trip('é');
        round_trip(usize::MAX >> 1);
    }

    #[test]
    fn wide_values_and_other_types_are_boxed() {
        assert_eq!(Codec::<u64>::inline_word(&(1 << 63)), None);
        assert_eq!(Codec::<i64>::inline_word(&i64::MIN), None);
        assert_eq!(Codec::<String>::inline_word(&String::new()), None);
        assert!(Codec::<u64>::may_box() && !Codec::<u32>::may_box());
        assert!(Codec::<String>::may_box());
    }

    #[test]
    fn zigzag_is_a_bijection_at_the_edges() {
        for value in [0, 1, -1, i64::MAX, i64::MIN, 12345, -98765] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
    }
}
