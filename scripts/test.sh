#!/usr/bin/env bash
# Runs the whole workspace's tests, then a short run of den-vmm's fuzz targets, and ends with one
# summary line over every test binary (the fuzz run counts as one test).
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace "$@" -- --test-threads=1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ - | bc)
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ - | bc)
if "$(dirname "$0")/fuzz.sh" "${FUZZ_SECONDS:-30}"; then
    passed=$((${passed:-0} + 1))
else
    echo "fuzz: a target crashed (see above)"
    failed=$((${failed:-0} + 1))
    status=1
fi
echo
echo "Summary: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
