#!/usr/bin/env bash
# Web console numbers as a table: JavaScript shipped (gzip), navigation to a usable VM list,
# console keystroke echo, each next to its baseline or goal.
# Usage: bench/web-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
make -s agent
cargo build -q --release -p dend -p den-tests --bin dend --bin web-bench
cargo build -q -p den-cli   # the harness drives target/debug/den
timeout 1200 "$target/release/web-bench" "$target/release/dend"
