//! Panic injection: keys and values whose `Hash`, `Eq` and `Clone` (and closures that call
//! [`trip`]) panic on the N-th call, and a ledger of every key and value alive.
//!
//! One tripwire per process: [`arm`] picks a site and N, and the N-th call at that site from
//! then on panics with an [`InjectedPanic`] payload, once. The sweeps run in child processes
//! (see `child.rs`), one scenario each, so process-wide state is the scenario's own.
//!
//! The ledger gives every instance a serial number when it is made (constructed or cloned) and
//! crosses it off when it is dropped: an instance dropped twice is counted (not asserted in
//! `drop`, where a panic during an unwind would abort), and what is still alive once a map and
//! everything taken from it are gone has leaked.

#![allow(
    dead_code,
    reason = "the test files and fuzz targets that include this module each use part of it"
)]

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, Once, PoisonError};

/// Where a panic can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Site {
    KeyHash = 1,
    KeyEq,
    KeyClone,
    ValueClone,
    /// A closure passed to the map (`update`, `get_or_insert_with`, `retain`).
    Closure,
}

/// The payload of an injected panic: anything else that unwinds is a real failure.
pub struct InjectedPanic;

static ARMED_SITE: AtomicU8 = AtomicU8::new(0);
/// Calls at the armed site still to go before the panic; 0 when disarmed.
static COUNTDOWN: AtomicUsize = AtomicUsize::new(0);
static INJECTED: AtomicUsize = AtomicUsize::new(0);
/// Calls per site (index `site as usize`), armed or not: how far a sweep over N must go.
static CALLS: [AtomicUsize; 6] = [const { AtomicUsize::new(0) }; 6];

/// Makes the `nth` call at `site` from now on panic (once).
pub fn arm(site: Site, nth: usize) {
    assert!(nth > 0, "calls are counted from 1");
    ARMED_SITE.store(site as u8, Ordering::SeqCst);
    COUNTDOWN.store(nth, Ordering::SeqCst);
}

/// Disarms the tripwire; whether it was still armed (had not fired).
pub fn disarm() -> bool {
    COUNTDOWN.swap(0, Ordering::SeqCst) != 0
}

/// Panics injected in this process so far.
pub fn injected() -> usize {
    INJECTED.load(Ordering::SeqCst)
}

/// Calls made at `site` in this process so far.
pub fn calls(site: Site) -> usize {
    CALLS[site as usize].load(Ordering::SeqCst)
}

/// A call at `site`: panics if it is the one the tripwire waits for.
pub fn trip(site: Site) {
    CALLS[site as usize].fetch_add(1, Ordering::SeqCst);
    if ARMED_SITE.load(Ordering::SeqCst) != site as u8 {
        return;
    }
    let previous = COUNTDOWN.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
        left.checked_sub(1)
    });
    if previous == Ok(1) {
        INJECTED.fetch_add(1, Ordering::SeqCst);
        panic::panic_any(InjectedPanic);
    }
}

/// Keeps injected panics out of the output (they are expected by the thousand); any other
/// panic is still reported by the hook that was installed before.
pub fn quiet_injected_panics() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| {
        let report = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<InjectedPanic>() {
                report(info);
            }
        }));
    });
}

/// Runs `operation`; `Err(())` if it unwound with an injected panic. Any other panic goes on
/// unwinding: it is a real failure.
pub fn attempt<T>(operation: impl FnOnce() -> T) -> Result<T, ()> {
    match panic::catch_unwind(AssertUnwindSafe(operation)) {
        Ok(result) => Ok(result),
        Err(payload) if payload.is::<InjectedPanic>() => Err(()),
        Err(payload) => panic::resume_unwind(payload),
    }
}

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(0);
static DOUBLE_DROPS: AtomicUsize = AtomicUsize::new(0);

fn alive_set() -> MutexGuard<'static, HashSet<u64>> {
    static ALIVE: LazyLock<Mutex<HashSet<u64>>> = LazyLock::new(Mutex::default);
    ALIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn register() -> u64 {
    let serial = NEXT_SERIAL.fetch_add(1, Ordering::SeqCst);
    alive_set().insert(serial);
    serial
}

fn cross_off(serial: u64) {
    if !alive_set().remove(&serial) {
        DOUBLE_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

/// Keys and values made and not yet dropped.
pub fn alive() -> usize {
    alive_set().len()
}

/// Drops of an instance that was already dropped.
pub fn double_drops() -> usize {
    DOUBLE_DROPS.load(Ordering::SeqCst)
}

/// A key the harness names by a number: [`Key`], whose own `Hash`, `Eq` and `Clone` are
/// injection sites, or a plain `u64` (which `AtomicMap` stores inline, not boxed), for sweeps
/// whose panics come from the hasher.
pub trait TestKey: Hash + Eq + Clone + Send + Sync + 'static {
    fn from_id(id: u64) -> Self;
    fn id(&self) -> u64;
}

impl TestKey for u64 {
    fn from_id(id: u64) -> Self {
        id
    }
    fn id(&self) -> u64 {
        *self
    }
}

impl TestKey for Key {
    fn from_id(id: u64) -> Self {
        Key::new(id)
    }
    fn id(&self) -> u64 {
        self.id
    }
}

/// A map key identified by `id`; its `Hash`, `Eq` and `Clone` are injection sites.
#[derive(Debug)]
pub struct Key {
    pub id: u64,
    serial: u64,
}

impl Key {
    pub fn new(id: u64) -> Self {
        Key {
            id,
            serial: register(),
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        trip(Site::KeyHash);
        self.id.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        trip(Site::KeyEq);
        self.id == other.id
    }
}

impl Eq for Key {}

impl Clone for Key {
    fn clone(&self) -> Self {
        trip(Site::KeyClone);
        Key::new(self.id)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        cross_off(self.serial);
    }
}

/// A map value identified by `id`; its `Clone` is an injection site. Its `PartialEq` (for
/// compare-and-swap) is not.
#[derive(Debug)]
pub struct Value {
    pub id: u64,
    serial: u64,
}

impl Value {
    pub fn new(id: u64) -> Self {
        Value {
            id,
            serial: register(),
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Clone for Value {
    fn clone(&self) -> Self {
        trip(Site::ValueClone);
        Value::new(self.id)
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        cross_off(self.serial);
    }
}
