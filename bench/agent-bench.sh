#!/usr/bin/env bash
# Den's image and agent numbers, side by side in one run, as tables.
#   cold build: an empty store (Debian packages already downloaded, as with a warm apt cache)
#   warm build: the same specs again (cache hits)
#   agent: round trips and throughput over the agent channel of a base guest under QEMU TCG
set -euo pipefail
cd "$(dirname "$0")/.."
den=./target/x86_64-unknown-linux-gnu/release/den
export DEN_DOWNLOAD_DIR="${DEN_CACHE_DIR:-$HOME/.cache/den}"
tmp=$(mktemp -d /var/tmp/den-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
images=(base dev docker)

secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }

echo "| image  | cold build s | warm build s | ratio |"
echo "|--------|-------------:|-------------:|------:|"
for i in "${images[@]}"; do
  cold=$(secs "$den" --cache-dir "$tmp" image build "$i")
  warm=$(secs "$den" --cache-dir "$tmp" image build "$i")
  printf '| %-6s | %12.2f | %12.2f | %5.0fx |\n' "$i" "$cold" "$warm" "$(echo "$cold / $warm" | bc -l)"
done
echo
cargo build -q --release -p den-tests --bin agent-bench
./target/release/agent-bench "${1:-200}"
