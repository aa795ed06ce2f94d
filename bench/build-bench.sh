#!/usr/bin/env bash
# How long dend takes to build, side by side for git revisions in one run, as a table:
#   clean: `cargo build --bin dend` (debug) in an empty target folder (crates.io sources cached)
#   model edit: rebuild after a one-function change to the file defining `VmSpec` (the bottom of the
#     daemon: everything above it recompiles)
#   api edit: rebuild after a one-function change to the file defining the API router (the top)
# Each build runs with `--timings`; the HTML reports stay in the printed folder. The web console is
# bundled once beforehand (DEN_WEB_DIST), so the numbers are the Rust build's alone.
# Usage: bench/build-bench.sh [REV...]   (default HEAD; e.g. `83afa68 HEAD` for before/after)
# Heavy: a clean build per revision. Run nothing else that compiles meanwhile (2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
revs=("$@")
[ ${#revs[@]} -gt 0 ] || revs=(HEAD)
work=$(mktemp -d /tmp/den-build-bench.XXXXXX)
cleanup() {
    for dir in "$work"/tree-*; do
        [ -d "$dir" ] && git worktree remove --force "$dir" >/dev/null 2>&1 || true
    done
    rm -rf "$work"/tree-* "$work"/target-* "$work/web-dist"
}
trap cleanup EXIT

seconds() { # seconds DIR TARGET: one build of dend, wall time in seconds
    local start end
    start=$(date +%s.%N)
    if ! (cd "$1" && CARGO_TARGET_DIR="$2" cargo build -q --timings --bin dend >"$work/build.log" 2>&1); then
        tail -n 30 "$work/build.log" >&2
        echo "building dend in $1 failed" >&2
        exit 1
    fi
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}

edit_file_with() { # edit_file_with DIR PATTERN: add one public function to the file holding PATTERN
    local file
    file=$(grep -rl --include='*.rs' "$2" "$1" | grep -v '/tests/' | head -n1)
    [ -n "$file" ] || { echo "no file holds '$2' in $1" >&2; exit 1; }
    # A real change (a comment alone is nearly free to incremental builds): new code that also
    # changes the crate's public interface, so whatever depends on the crate is checked again.
    printf '\n/// Added by bench/build-bench.sh.\npub fn build_bench_edit() -> u64 {\n    %s\n}\n' "$(date +%s%N)" >>"$file"
}

[ -x web/node_modules/.bin/vite ] || (cd web && npm install --no-save --no-audit --no-fund --loglevel=error)
(cd web && node_modules/.bin/vite build --logLevel warn --outDir "$work/web-dist" >/dev/null)
export DEN_WEB_DIST="$work/web-dist"

declare -a rows
for rev in "${revs[@]}"; do
    id=$(git rev-parse --short "$rev")
    tree="$work/tree-$id" target="$work/target-$id"
    git worktree add --detach "$tree" "$rev" >/dev/null 2>&1
    echo "building dend at $id (clean, then two one-line edits)..." >&2
    clean=$(seconds "$tree" "$target")
    edit_file_with "$tree" 'pub struct VmSpec'
    model=$(seconds "$tree" "$target")
    edit_file_with "$tree" 'fn router('
    api=$(seconds "$tree" "$target")
    crates=$(cd "$tree" && cargo metadata --no-deps --format-version 1 | python3 -c "import json,sys; print(len(json.load(sys.stdin)[\"packages\"]))")
    mkdir -p "$work/timings-$id"
    cp "$target"/cargo-timings/*.html "$work/timings-$id/" 2>/dev/null || true
    rows+=("$(printf '%-10s %8s %10.1f %12.1f %10.1f' "$id" "$crates" "$clean" "$model" "$api")")
done

printf '\n%-10s %8s %10s %12s %10s\n' revision crates clean_s model_edit_s api_edit_s
printf '%s\n' "${rows[@]}"
if [ ${#revs[@]} -ge 2 ]; then
    first=$(echo "${rows[0]}" | awk '{print $3, $4, $5}')
    last=$(echo "${rows[-1]}" | awk '{print $3, $4, $5}')
    read -r c0 m0 a0 <<<"$first"
    read -r c1 m1 a1 <<<"$last"
    printf '%-10s %8s %10.2f %12.2f %10.2f\n' "ratio" "" "$(echo "$c1/$c0" | bc -l)" \
        "$(echo "$m1/$m0" | bc -l)" "$(echo "$a1/$a0" | bc -l)"
fi
echo "cargo --timings reports: $work/timings-*" >&2
trap - EXIT
cleanup
