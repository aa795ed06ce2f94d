#!/usr/bin/env bash
# Business OS numbers as a table: update to committed, bad boot (kernel panic, mute agent) to
# rolled back against one health window plus one boot, dend restart under the running OS.
# Usage: bench/system-bench.sh [--lab]   (--lab: den-vmm in the KVM lab instead of QEMU here)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
make -s agent
cargo build -q --release -p dend -p den-tests --bin dend --bin system-bench
cargo build -q -p den-cli   # the harness drives target/debug/den
timeout 1800 "$target/release/system-bench" "$target/release/dend" "$@"
