//! Fixtures shared by the test files that need one. Test files load them as `mod common;`;
//! each uses some of them, so the others are dead code there.
#![allow(dead_code)]

use std::hash::Hasher;

pub mod scale;
#[cfg(loom)]
pub mod serial;

/// Hashes an integer key to itself, so that key `k` lives in slot `k % capacity`: the table
/// layout is the same in every run (and in every loom execution, as loom's replay requires).
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }

    fn write_u8(&mut self, key: u8) {
        self.0 = u64::from(key);
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}
