#!/usr/bin/env bash
# dend numbers as a table: API list latency with 1,000 VMs, idle RSS, create-to-agent-ready.
# Usage: bench/dend-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
make -s agent
cargo build -q --release -p dend -p den-cli -p den-tests --bin dend --bin den --bin dend-bench
cargo build -q -p den-cli   # the harness drives target/debug/den
timeout 900 "$target/release/dend-bench" "$target/release/dend"
