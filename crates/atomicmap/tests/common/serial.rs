//! Serialising loom models within one test binary.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The crate hands every thread a small index from one process-wide pool (for its reclamation
/// record and counter stripe). Models running in parallel test threads would draw from it at
/// once and make each other's executions differ from run to run, so they run one at a time.
pub fn one_model_at_a_time() -> MutexGuard<'static, ()> {
    static MODELS: Mutex<()> = Mutex::new(());
    MODELS.lock().unwrap_or_else(PoisonError::into_inner)
}
