#!/usr/bin/env bash
# Runs the web console's unit tests and the whole workspace's tests, then a short run of
# den-vmm's fuzz targets, and ends with one summary line over every test binary (the fuzz run
# counts as one test).
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The web console's unit tests (vitest) first: they take a second.
web_ok=1
if ! (cd "$(dirname "$0")/../web" && npm test --silent) 2>&1 | tee -a "$log"; then
    web_ok=0
fi
cargo test --workspace "$@" -- --test-threads=1 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | paste -sd+ - | bc)
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | paste -sd+ - | bc)
# vitest's own summary line: "Tests  14 passed (14)" or "Tests  1 failed | 13 passed (14)".
web_passed=$(grep -E '^\s+Tests\s' "$log" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' | tail -1)
web_failed=$(grep -E '^\s+Tests\s' "$log" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' | tail -1)
passed=$((${passed:-0} + ${web_passed:-0}))
failed=$((${failed:-0} + ${web_failed:-0}))
if [ "$web_ok" = 0 ]; then
    echo "web: the console's unit tests failed (see above)"
    status=1
    [ "${web_failed:-0}" = 0 ] && failed=$((failed + 1))
fi
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
