#!/usr/bin/env bash
# den-vmm numbers on this host's bare /dev/kvm, side by side in one run, as tables:
#   start to first guest instruction: den-vmm's debug-port milestone (median/p90 of N runs), the
#     launcher's view of the first console line, the same jailed by den-jailer (as dend runs it;
#     as root), and QEMU microvm (-accel kvm) with the same kernel
#   memory overhead of a resting 256 MiB VM (RSS minus guest RAM touched), stopped by SIGTERM
#   50 VMs started at once: wall time until all reported, VMs per second
# The guests are tiny hand-assembled kernels (den_vmm::tiny_kernel) booted through den-vmm's full
# Linux boot path; a PVM-backed /dev/kvm runs them by instruction emulation (it cannot run Linux).
# Usage: bench/vmm-bench.sh [RUNS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build -q --release -p den-vmm -p den-jailer -p den-tests --bin den-vmm --bin den-jailer --bin vmm-bench
timeout 900 "$target/release/vmm-bench" "$target/release/den-vmm" "${1:-20}"
