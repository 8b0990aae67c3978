#!/usr/bin/env bash
# The tests. The replicator's acceptance tests start their own redis-server (Redis >= 7), so
# this installs Debian's redis-server first when it is not on PATH (with sudo unless root),
# then runs `cargo test --workspace` with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."

install_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        return
    fi
    echo "redis-server not found: installing Debian's redis-server" >&2
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq redis-server >/dev/null
    command -v redis-server >/dev/null 2>&1 || {
        echo "redis-server is still not on PATH after installing it" >&2
        exit 1
    }
}

install_redis
exec cargo test --workspace "$@"
