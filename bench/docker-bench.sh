#!/usr/bin/env bash
# Docker bridge numbers as a table: API call latency, `docker version`/`ps`, `run --rm`, log
# throughput through the bridge versus inside the sandbox, and the cold wake.
# Usage: bench/docker-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
make -s agent
cargo build -q --release -p dend -p den-tests --bin dend --bin docker-bench
cargo build -q -p den-cli   # the harness drives target/debug/den
timeout 1800 "$target/release/docker-bench" "$target/release/dend"
