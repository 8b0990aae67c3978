//! The hashers a run can use. The command line names one ([`HasherKind`]); the run is then
//! monomorphised for its type once, at the top ([`HasherKind::visit`]), and every map of the
//! run is generic over it. So each map hashes through the hasher's own code, inlined, with no
//! branch per hash and with the hasher's fast paths (foldhash's `u64` one) intact.

use std::hash::{BuildHasher, Hasher, RandomState};

use clap::ValueEnum;

/// A `--hasher` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HasherKind {
    /// foldhash::fast with a fixed seed.
    Foldhash,
    /// std's SipHash-1-3 (RandomState).
    Std,
    /// An identity hash, as nohash-hasher gives: a `u64` key is its own hash. The weak
    /// hasher users pass for integer ids; with `--key-pattern sequential` it shows what
    /// neighbouring hashes do to each map.
    Identity,
}

/// Hashes an integer to itself, as nohash-style hashers do. Other input (the length and bytes
/// of a string) is folded in by a multiply-add per byte, as weak as Java's `String.hashCode`:
/// enough for every workload to run, and still a hasher that does no mixing.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.wrapping_mul(31).wrapping_add(u64::from(byte));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.0 = self.0.wrapping_mul(31).wrapping_add(n as u64);
    }
}

/// Builds [`IdentityHasher`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityState;

impl BuildHasher for IdentityState {
    type Hasher = IdentityHasher;

    #[inline]
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher::default()
    }
}

/// What every map under test needs of its hasher.
pub trait BenchHasher: BuildHasher + Clone + Send + Sync + 'static {}

impl<S: BuildHasher + Clone + Send + Sync + 'static> BenchHasher for S {}

/// Something to do with the hasher of a run, monomorphised per hasher type.
pub trait HasherVisitor {
    /// What the visit produces.
    type Output;
    /// Do it with `hasher`, the one every map of the run is built with.
    fn visit<S: BenchHasher>(self, hasher: S) -> Self::Output;
}

impl HasherKind {
    /// The name in the output.
    pub fn name(self) -> &'static str {
        match self {
            HasherKind::Foldhash => "foldhash",
            HasherKind::Std => "std",
            HasherKind::Identity => "identity",
        }
    }

    /// Call `visitor` with a hasher of this kind.
    pub fn visit<V: HasherVisitor>(self, visitor: V) -> V::Output {
        match self {
            HasherKind::Foldhash => visitor.visit(foldhash::fast::FixedState::default()),
            HasherKind::Std => visitor.visit(RandomState::new()),
            HasherKind::Identity => visitor.visit(IdentityState),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_hashes_a_u64_to_itself() {
        for n in [0u64, 1, 2, 1 << 40, u64::MAX] {
            assert_eq!(IdentityState.hash_one(n), n);
        }
    }

    #[test]
    fn identity_tells_strings_apart() {
        let a = IdentityState.hash_one("key0000000000001");
        let b = IdentityState.hash_one("key0000000000002");
        assert_ne!(a, b);
    }
}
