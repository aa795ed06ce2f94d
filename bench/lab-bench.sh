#!/usr/bin/env bash
# den-vmm against QEMU microvm (-accel kvm) in the KVM lab: spawn to the inner guest's init, same
# kernel, initramfs and command line, alternating runs, as a table with the ratio.
# Usage: bench/lab-bench.sh [RUNS] [TABLES]   (default 5 runs; tables: any of boot,profile,fs,block,dev, all by default)
set -euo pipefail
cd "$(dirname "$0")/.."
make -s agent
target="${CARGO_TARGET_DIR:-target}"
cargo build -q --release -p den-tests --bin lab-bench
timeout 3600 "$target/release/lab-bench" "${1:-5}" "${2:-boot,profile,fs,block,dev}"
