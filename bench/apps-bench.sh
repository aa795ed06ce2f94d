#!/usr/bin/env bash
# LPK app numbers as a table: package validation time and peak memory (50 vs 200 MiB),
# install-to-first-HTTP-200 of the v2 sample, app restart, host memory per idle service.
# Usage: bench/apps-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
make -s agent
cargo build -q --release -p dend -p den-tests --bin dend --bin apps-bench
cargo build -q -p den-cli   # the harness drives target/debug/den
timeout 1800 "$target/release/apps-bench" "$target/release/dend"
