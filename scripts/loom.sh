#!/usr/bin/env bash
# The loom models (crates/atomicmap/tests/loom_*.rs), each in a process of its own, as many at a
# time as the machine has cores (LOOM_JOBS to change that). A failing model's whole output is
# printed; the others print one line each.
#
# Within one process the models must run one at a time (tests/common/serial.rs: the crate hands
# out thread indexes from a process-wide pool, and models side by side would make each other's
# executions differ). Processes share no such pool, so one model per process can run in
# parallel: on 2 cores the models take about half as long as `cargo test --test-threads=1`.
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$PWD/target/loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
jobs="${LOOM_JOBS:-$(nproc)}"

loom_tests=()
for file in crates/atomicmap/tests/loom_*.rs; do
    loom_tests+=(--test "$(basename "$file" .rs)")
done
binaries="$(cargo test -p atomicmap --release "${loom_tests[@]}" --no-run --message-format=json \
    | grep -o '"executable":"[^"]*"' | cut -d'"' -f4)"
if [ -z "$binaries" ]; then
    echo "no loom model binaries were built" >&2
    exit 1
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
export logs

run_model() {
    local binary="$1" model="$2"
    local log="$logs/$(basename "$binary").$model.log" start=$SECONDS
    if "$binary" "$model" --exact --test-threads=1 >"$log" 2>&1; then
        echo "ok      $(basename "$binary") $model ($((SECONDS - start))s)"
    else
        cat "$log"
        echo "FAILED  $(basename "$binary") $model ($((SECONDS - start))s)"
        return 1
    fi
}
export -f run_model

# Test binaries run from their package's directory, as `cargo test` runs them.
cd crates/atomicmap
for binary in $binaries; do
    for model in $("$binary" --list --format terse | sed -n 's/: test$//p'); do
        printf '%s\0%s\0' "$binary" "$model"
    done
done >"$logs/queue"
count="$(tr -cd '\0' <"$logs/queue" | wc -c)"
echo "running $((count / 2)) loom models, $jobs at a time"
# xargs exits non-zero if any model failed, after the rest have run.
xargs -0 -n 2 -P "$jobs" bash -c 'run_model "$@"' run_model <"$logs/queue"
