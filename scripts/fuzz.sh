#!/usr/bin/env bash
# Builds the libFuzzer targets of the parsers of hostile input (den-vmm's virtio devices, the LPK
# package reader) with coverage instrumentation (stable Rust: the same LLVM passes cargo-fuzz
# enables) and runs each for FUZZ_SECONDS (default 30). The corpus is kept in ~/.cache/den/fuzz
# so that later runs start from what earlier ones found; the LPK corpus starts from seed packages.
# Usage: scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-${FUZZ_SECONDS:-30}}"
corpus="${DEN_CACHE_DIR:-$HOME/.cache/den}/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# --target keeps the instrumentation flags away from build scripts.
for crate in vmm lpk; do
    cargo build --release --manifest-path "$crate/fuzz/Cargo.toml" --target-dir target/fuzz --target x86_64-unknown-linux-gnu
done
for target in virtio lpk; do
    mkdir -p "$corpus/$target"
    echo "fuzz: $target for ${seconds}s (corpus $corpus/$target)"
    target/fuzz/x86_64-unknown-linux-gnu/release/"$target" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        "$corpus/$target" 2>&1 | tail -n 12
done
