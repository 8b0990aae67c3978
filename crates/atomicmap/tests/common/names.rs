//! A key looked up by a query type that is not a `Borrow` of it: a name stored as two
//! `String`s ([`FullName`]), looked up by a pair of `&str` ([`NameQuery`]) through
//! `Equivalent`, as hashbrown's users do.

use std::hash::{Hash, Hasher};

use atomicmap::Equivalent;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullName {
    pub first: String,
    pub last: String,
}

/// Hashes as [`NameQuery`] does, which `Equivalent` lookups require.
impl Hash for FullName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        NameQuery(&self.first, &self.last).hash(state);
    }
}

#[derive(Hash)]
pub struct NameQuery<'a>(pub &'a str, pub &'a str);

impl Equivalent<FullName> for NameQuery<'_> {
    fn equivalent(&self, key: &FullName) -> bool {
        self.0 == key.first && self.1 == key.last
    }
}

pub fn name(first: &str, last: &str) -> FullName {
    FullName {
        first: first.into(),
        last: last.into(),
    }
}
