#!/usr/bin/env bash
# Installs the Debian packages Den needs, only when something is missing.
set -euo pipefail
check() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] || need+=("$2"); }

# Fills `need` with the packages whose commands or files are missing.
missing() {
  need=()
  check qemu-system-x86_64 qemu-system-x86
  check qemu-img qemu-utils
  check mmdebstrap mmdebstrap
  check mkfs.ext4 e2fsprogs
  check debugfs e2fsprogs
  check dpkg-deb dpkg
  check cpio cpio
  check nft nftables
  check dnsmasq dnsmasq-base
  # The SSH gateway's tests drive the OpenSSH client (ssh, scp, sftp, ssh-agent, ssh-keygen),
  # interactive sessions in tmux, and curl through ssh -L.
  check ssh openssh-client
  check ssh-keygen openssh-client
  check sftp openssh-client
  check tmux tmux
  check curl curl
  check ip iproute2
  check tar tar
  check bc bc
  [ -x /bin/busybox ] || need+=(busybox-static)
  # The web console is built from TypeScript with Node.js and npm (only to build Den, not to run
  # it); its browser tests drive Debian's Chromium.
  check node nodejs
  check npm npm
  [ -x /usr/bin/chromium ] || need+=(chromium)
  # UEFI firmware for VMs that boot through it (SeaBIOS comes with QEMU).
  [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
  # The tests build a bootable installer ISO (BIOS and UEFI) with grub-mkrescue.
  check grub-mkrescue grub-common
  check xorriso xorriso
  check mformat mtools
  [ -d /usr/lib/grub/i386-pc ] || need+=(grub-pc-bin)
  [ -d /usr/lib/grub/x86_64-efi ] || need+=(grub-efi-amd64-bin)
  # The API fuzz test runs schemathesis (from PyPI) in a virtual environment.
  check python3 python3
  python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
}

missing
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
# QEMU's packages share one version: installing qemu-system-x86 next to a newer qemu-utils makes
# apt remove qemu-utils (and qemu-img with it). Asking for both in one transaction keeps both.
for p in "${need[@]}"; do
  case "$p" in qemu-system-x86|qemu-utils) need+=(qemu-system-x86 qemu-utils) ;; esac
done
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
echo "den: installing Debian packages: ${need[*]}"
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# A qemu-utils newer than any qemu-system-x86 apt can get (from a backports release no longer in
# the sources, say) breaks the install: take both at the version apt offers for qemu-system-x86.
if printf '%s\n' "${need[@]}" | grep -qx qemu-system-x86; then
  qemu=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  if [ -n "$qemu" ] && [ "$qemu" != "(none)" ]; then
    for i in "${!need[@]}"; do
      case "${need[$i]}" in qemu-system-x86|qemu-utils) need[$i]="${need[$i]}=$qemu" ;; esac
    done
  fi
fi
$SUDO apt-get install -y -q --no-install-recommends --allow-downgrades "${need[@]}"
# What the install removed to satisfy another package is missing now: say so instead of failing
# later with a command not found.
missing
if [ ${#need[@]} -ne 0 ]; then
  echo "den: still missing after apt-get install (apt may have removed them to satisfy another package): ${need[*]}" >&2
  echo "den: install them by hand (apt-get install ${need[*]}) and look at apt's log for the conflict" >&2
  exit 1
fi
