#!/usr/bin/env bash
# `make run` on a clean clone, side by side for git revisions in one run, as a table: the time from
# the command to a dend answering its API, with warm crates.io, npm and guest-image caches.
#
# Each revision is cloned, and make run's steps are timed one by one, as `make -n run` lists them:
#   build_s:   `make deps build` in the clone (an empty target folder)
#   up_s:      `den up`: the host check, and the default guest images, cached (a first `den up`,
#              not counted, builds this revision's images when its guest agent is new)
#   dend_s:    dend (with packaging/den.toml) from its start until it answers GET /api/v1/host
#   total_s:   the three together: `make run` to a serving dend
# The build and `den up` run in the host's namespaces (npm, cargo and apt may need the network).
# dend runs in its own mount, PID and network namespace: /var/lib/den, /run/den and
# /etc/den are temp folders (so packaging/den.toml is used), Den's networks have no uplink, and
# every process it started (dend, QEMU, dnsmasq) ends with the namespace. The images go to the
# user's cache (~/.cache/den), as `make run` does.
# Usage: bench/run-bench.sh [REV...]   (default HEAD; e.g. `83afa68 HEAD` for before/after)
# Heavy: a clean release build per revision. Run nothing else that compiles meanwhile (2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run-bench.sh needs root (namespaces, bind mounts, KVM)" >&2; exit 1; }
revs=("$@")
[ ${#revs[@]} -gt 0 ] || revs=(HEAD)
repo=$(pwd)
work=$(mktemp -d /tmp/den-run-bench.XXXXXX)
made_dirs=()
for d in /var/lib/den /run/den /etc/den; do # mount points for the namespaces' own folders
    [ -e "$d" ] || { mkdir -p "$d"; made_dirs+=("$d"); }
done
cleanup() {
    rm -rf "$work"
    for d in "${made_dirs[@]}"; do rmdir "$d" 2>/dev/null || true; done
}
trap cleanup EXIT

# serve CLONE STATE LOG CMD: in the new namespaces, runs CMD (make run's last command: dend) in
# CLONE until dend answers. Prints seconds.
serve() {
    local clone=$1 state=$2 log=$3 cmd=$4 t0 t1 pid
    mount --make-rprivate /
    mkdir -p "$state/lib" "$state/run" "$state/etc"
    mount --bind "$state/lib" /var/lib/den
    mount --bind "$state/run" /run/den
    mount --bind "$state/etc" /etc/den
    ip link set lo up
    t0=$(date +%s.%N)
    (cd "$clone" && exec bash -c "$cmd") >"$log" 2>&1 &
    pid=$!
    until curl -sf --unix-socket /run/den/dend.sock http://dend/api/v1/host >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$log" >&2
            echo "dend ended before it answered (log: $log)" >&2
            exit 1
        fi
        sleep 0.1
    done
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}
export -f serve

step() { # step CLONE LOG COMMAND...: runs a step of `make run` in CLONE; prints its seconds
    local clone=$1 log=$2 t0 t1
    shift 2
    t0=$(date +%s.%N)
    if ! (cd "$clone" && "$@") >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "\`$*\` failed in $clone (log: $log)" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}

# run_once CLONE NAME: make run's steps, each timed: `make deps build`, `den up` (after a first
# `den up` that warms the images and is not counted), dend until it answers. Prints
# "BUILD UP DEND" in seconds.
run_once() {
    local clone=$1 name=$2 build up up_cmd dend_cmd dend commands
    # `make -n run` prints make run's commands: the last two are `den up` and dend.
    commands=$(cd "$clone" && make -s -n run)
    up_cmd=$(tail -n 2 <<<"$commands" | head -n 1)
    dend_cmd=$(tail -n 1 <<<"$commands")
    build=$(step "$clone" "$work/$name.build.log" make deps build)
    step "$clone" "$work/$name.warm.log" bash -c "$up_cmd" >/dev/null
    up=$(step "$clone" "$work/$name.up.log" bash -c "$up_cmd")
    dend=$(unshare --mount --pid --fork --mount-proc --net bash -c 'serve "$@"' _ "$clone" "$work/state-$name" \
        "$work/$name.dend.log" "$dend_cmd")
    echo "$build $up $dend"
}

declare -a rows
for rev in "${revs[@]}"; do
    id=$(git rev-parse --short "$rev")
    clone="$work/clone-$id"
    git clone -q "$repo" "$clone"
    git -C "$clone" checkout -q --detach "$id"
    echo "$id: make run's steps from an empty target folder..." >&2
    out=$(run_once "$clone" "$id")
    read -r build up dend <<<"$out"
    rows+=("$(printf '%-10s %9.1f %9.2f %9.2f %9.1f' "$id" "$build" "$up" "$dend" "$(echo "$build + $up + $dend" | bc)")")
    rm -rf "$clone/target"
done

printf '\n%-10s %9s %9s %9s %9s\n' revision build_s up_s dend_s total_s
printf '%s\n' "${rows[@]}"
if [ ${#revs[@]} -ge 2 ]; then
    read -r -a r0 <<<"${rows[0]}"
    read -r -a r1 <<<"${rows[-1]}"
    printf '%-10s' ratio
    for i in 1 2 3 4; do
        if [ "$(echo "${r0[$i]} > 0" | bc)" = 1 ]; then
            printf ' %9.2f' "$(echo "${r1[$i]}/${r0[$i]}" | bc -l)"
        else
            printf ' %9s' -
        fi
    done
    printf '\n'
fi
