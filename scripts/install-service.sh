#!/usr/bin/env bash
# Installs Den as a systemd service from a build (`make build`): binaries in /usr/lib/den
# (with /usr/bin/den and /usr/bin/dend), the units dend.service and dend-fallback.service, and
# /etc/den/den.toml if there is none yet. Then enables and starts dend.
#   scripts/install-service.sh [BUILD_DIR]     (default: target/x86_64-unknown-linux-gnu/release, what `make run` builds)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/target/x86_64-unknown-linux-gnu/release}
lib=${DEN_LIB_DIR:-/usr/lib/den}
agent=${DEN_AGENT_BIN:-$here/target/x86_64-unknown-linux-gnu/release/den-agent}
for f in "$build/dend" "$build/den" "$agent"; do
    [ -x "$f" ] || { echo "install-service: $f is missing; run \`make build\` first" >&2; exit 1; }
done
install -d -m 0755 "$lib" /etc/den /etc/systemd/system
install -m 0755 "$build/dend" "$lib/dend.new" && mv -f "$lib/dend.new" "$lib/dend"
# A fresh install is not an update on trial: nothing for dend-fallback to go back to.
rm -f "$lib/dend.trial" "$lib/dend.previous" "$lib/dend.failed"
install -m 0755 "$build/den" "$lib/den"
install -m 0755 "$agent" "$lib/den-agent"
[ -x "$build/den-vmm" ] && install -m 0755 "$build/den-vmm" "$lib/den-vmm"
[ -x "$build/den-jailer" ] && install -m 0755 "$build/den-jailer" "$lib/den-jailer"
install -m 0755 "$here/packaging/dend-fallback" "$lib/dend-fallback"
ln -sf "$lib/den" /usr/bin/den
ln -sf "$lib/dend" /usr/bin/dend
install -m 0644 "$here/packaging/dend.service" "$here/packaging/dend-fallback.service" /etc/systemd/system/
[ -e /etc/den/den.toml ] || install -m 0644 "$here/packaging/den.toml" /etc/den/den.toml
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable dend.service
    systemctl restart dend.service
    echo "dend is running as dend.service (systemctl status dend); update it with \`den daemon update NEW_DEND\`"
else
    echo "installed in $lib; systemd is not running here, so start $lib/dend yourself"
fi
