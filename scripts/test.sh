#!/usr/bin/env bash
# Runs the whole workspace's tests and ends with one summary line over every test binary.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace "$@" -- --test-threads=1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ - | bc)
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ - | bc)
echo
echo "Summary: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
