//! Fixtures shared by the test files, which all load them the same way (`mod common;`): a
//! hasher that fixes the table layout, panic injection on one thread (`panics`), iteration
//! scaling for the stress tests, the loom model runner, one interface over the four maps
//! (`maps`), a key with a non-`Borrow` query type (`names`), the linearizability checker, panic injection across threads (`faults`,
//! `panic_driver`) and child processes under a watchdog (`child`).
#![allow(
    dead_code,
    reason = "each test file uses the fixtures it needs, not all of them"
)]

pub mod child;
pub mod faults;
pub mod linearizability;
pub mod maps;
pub mod names;
pub mod panic_driver;
pub mod panics;

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
