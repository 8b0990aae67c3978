//! Tests that run in a child process under a watchdog, so that a map that hangs (a livelock, a
//! resize that never finishes) fails its test instead of stalling the whole run.
//!
//! [`child_test!`] declares a test whose body runs in a child: the test re-executes its own
//! binary with a filter that selects only itself and an environment variable that tells the
//! child to run the body; the parent kills the child once `ATOMICMAP_WATCHDOG_SECS` (default
//! 120) have passed, and fails with the child's output.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Set in a child to the name of the test it must run.
const SCENARIO_VAR: &str = "ATOMICMAP_CHILD_SCENARIO";
const DEFAULT_WATCHDOG_SECS: u64 = 120;

fn watchdog() -> Duration {
    let secs =
        std::env::var("ATOMICMAP_WATCHDOG_SECS")
            .ok()
            .map_or(DEFAULT_WATCHDOG_SECS, |secs| {
                secs.parse()
                    .unwrap_or_else(|_| panic!("ATOMICMAP_WATCHDOG_SECS={secs}: not a number"))
            });
    Duration::from_secs(secs)
}

/// In the child that was started for `test_name`, runs `body`; anywhere else, starts that child
/// and fails if it fails or outlives the watchdog.
pub fn run_in_child(test_name: &str, body: impl FnOnce()) {
    if std::env::var(SCENARIO_VAR).as_deref() == Ok(test_name) {
        body();
        return;
    }
    let mut child = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([
            test_name,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO_VAR, test_name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the test binary again");
    // Drained on threads of their own: a child that fills a pipe nobody reads would block.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let limit = watchdog();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break Some(status);
        }
        if started.elapsed() > limit {
            child.kill().expect("killing the hung child");
            child.wait().expect("reaping the killed child");
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr.join().unwrap_or_default();
    let output = format!(
        "--- stdout\n{}\n--- stderr\n{stderr}",
        stdout.join().unwrap_or_default(),
    );
    match status {
        None => panic!("{test_name} hung: killed after {limit:?}\n{output}"),
        Some(status) if !status.success() => {
            panic!("{test_name} failed in its child process ({status})\n{output}")
        }
        // A filter that matched nothing would also exit successfully.
        Some(_) => {
            assert!(
                output.contains("test result: ok. 1 passed"),
                "{test_name}: the child did not run the test\n{output}"
            );
            // What a passing child wrote to stderr is its report (counts, times): shown on the
            // stderr handle, which the harness does not capture.
            let _ = std::io::stderr().write_all(stderr.as_bytes());
        }
    }
}

/// The name the test harness gives test `function` of module `module` (its path without the
/// crate's name).
pub fn test_path(module: &str, function: &str) -> String {
    module
        .split("::")
        .skip(1)
        .chain([function])
        .collect::<Vec<_>>()
        .join("::")
}

/// `child_test!(#[attributes] fn name() { body })`: a `#[test] fn name` whose body runs in a
/// child process under the watchdog (see the module docs).
#[allow(unused_macros, reason = "only the test files with child tests use it")]
macro_rules! child_test {
    ($(#[$attribute:meta])* fn $name:ident() $body:block) => {
        $(#[$attribute])*
        #[test]
        fn $name() {
            $crate::common::child::run_in_child(
                &$crate::common::child::test_path(module_path!(), stringify!($name)),
                || $body,
            );
        }
    };
}
#[allow(unused_imports, reason = "only the test files with child tests use it")]
pub(crate) use child_test;
