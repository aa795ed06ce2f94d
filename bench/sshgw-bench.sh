#!/usr/bin/env bash
# SSH gateway numbers as a table: session setup and scp throughput through the gateway versus
# straight to the guest's sshd over a port forward, side by side.
# Usage: bench/sshgw-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
make -s agent
cargo build -q --release -p dend -p den-tests --bin dend --bin sshgw-bench
cargo build -q -p den-cli   # the harness drives target/debug/den
timeout 1200 "$target/release/sshgw-bench" "$target/release/dend"
