//! The hashers a run can use. The command line names one ([`HasherKind`]); the run is then
//! monomorphised for its type once, at the top ([`HasherKind::visit`]), and every map of the
//! run is generic over it. So each map hashes through the hasher's own code, inlined, with no
//! branch per hash and with the hasher's fast paths (foldhash's `u64` one) intact.

use std::hash::{BuildHasher, RandomState};

use clap::ValueEnum;

/// A `--hasher` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HasherKind {
    /// foldhash::fast with a fixed seed.
    Foldhash,
    /// std's SipHash-1-3 (RandomState).
    Std,
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
        }
    }

    /// Call `visitor` with a hasher of this kind.
    pub fn visit<V: HasherVisitor>(self, visitor: V) -> V::Output {
        match self {
            HasherKind::Foldhash => visitor.visit(foldhash::fast::FixedState::default()),
            HasherKind::Std => visitor.visit(RandomState::new()),
        }
    }
}
