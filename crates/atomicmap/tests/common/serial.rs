//! Running loom models: one at a time within a test binary, with room for waits.
//!
//! Reading a failing model: when a model's assertion fails while another model thread is still
//! inside an operation, loom drops that thread's objects (a map, its tables) after the
//! execution has ended. Their destructors touch loom atomics, which loom forbids outside an
//! execution, so the process aborts ("cannot access Loom execution state from outside a Loom
//! model", then "panic in a destructor during cleanup", sometimes a glibc heap message) right
//! after printing the assertion that failed. The first panic in the output is the finding.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The crate hands every thread a small index from one process-wide pool (for its reclamation
/// record). Models running in parallel test threads would draw from it at
/// once and make each other's executions differ from run to run, so they run one at a time.
fn one_model_at_a_time() -> MutexGuard<'static, ()> {
    static MODELS: Mutex<()> = Mutex::new(());
    MODELS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Checks `model` under loom, one model at a time (see [`one_model_at_a_time`]). The branch
/// limit is raised from loom's default of 1000 to 20,000: the maps' operations take many steps
/// each (a pin, a probe, a resize chunk), and a writer that waits for another thread's chunk
/// yields in a loop, so executions legitimately take more steps than the default allows.
pub fn check_model(model: impl Fn() + Sync + Send + 'static) {
    check_model_with(loom::model::Builder::new(), model);
}

/// [`check_model`] with at most `preemptions` forced preemptions per execution, for a model
/// whose operations are so long (a `clear`: a walk, removes and two resizes) that the usual
/// bound takes hours; races that need one or two preemptions at the right steps still show.
pub fn check_model_with_preemptions(preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    check_model_with(builder, model);
}

fn check_model_with(mut builder: loom::model::Builder, model: impl Fn() + Sync + Send + 'static) {
    let _serial = one_model_at_a_time();
    builder.max_branches = 20_000;
    builder.check(model);
}
