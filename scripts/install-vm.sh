#!/usr/bin/env bash
# Installs and prepares the kernel VM the kernel-VM tests boot (scripts/vm, docs/testing.md):
# qemu-system-x86, busybox-static, kmod, cpio, ipvsadm and strace (test comparison / golden-byte
# capture only), then Debian's stock kernel package, downloaded with `apt-get download` and
# extracted into /var/cache/podwire-vm (never installed into /boot).
# Optional: .ci/run calls it and carries on when it fails; the suite then prints that the VM
# tests were skipped and why. Needs root and network (apt) the first time; idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "install-vm: run as root (apt-get, /var/cache/podwire-vm)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 >/dev/null; }
start=$(date +%s)
bash scripts/vm/setup.sh
echo "install-vm: kernel VM ready in $(( $(date +%s) - start ))s (npm run test:vm runs its tests)"
