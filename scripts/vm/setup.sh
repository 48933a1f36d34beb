#!/usr/bin/env bash
# Prepare everything needed to boot a stock Debian kernel (which ships ip_vs,
# wireguard, ... as modules) under qemu, for running network tests that need
# kernel features the host kernel lacks.
#
# Idempotent. Writes only into $PODWIRE_VM_CACHE (default /var/cache/podwire-vm).
# Does NOT install the kernel into /boot: the .deb is only extracted.
#
# usage: setup.sh [--no-install]
#   --no-install  never apt-get install: exit 3 naming what is missing (the test
#                 runner uses this; scripts/install-vm.sh installs)
# Exit status: 0 ready, 3 a package is missing, other: setup failed (message on stderr).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${PODWIRE_VM_CACHE:-/var/cache/podwire-vm}"
mkdir -p "$CACHE"

need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)  # static: copied into the initramfs
command -v depmod >/dev/null || need_pkgs+=(kmod)
# optional (test comparison, golden-byte capture): installed, but --no-install does not insist
opt_pkgs=()
command -v ipvsadm >/dev/null || opt_pkgs+=(ipvsadm)
command -v strace >/dev/null || opt_pkgs+=(strace)
[ "${1:-}" = --no-install ] || need_pkgs+=("${opt_pkgs[@]}")
command -v cpio >/dev/null || need_pkgs+=(cpio)
if [ ${#need_pkgs[@]} -gt 0 ] && [ "${1:-}" = --no-install ]; then
  echo "missing Debian packages: ${need_pkgs[*]} (run scripts/install-vm.sh as root)" >&2
  exit 3
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# Resolve the versioned image package behind the linux-image-amd64 metapackage.
# (once resolved and extracted, the cached kernel is reused: no apt-cache call, works offline)
if [ -z "${PODWIRE_VM_KPKG:-}" ] && [ -f "$CACHE/kver" ] && [ -f "$CACHE/kroot/.done" ]; then
  PODWIRE_VM_KPKG="linux-image-$(cat "$CACHE/kver")"
fi
if [ -z "${PODWIRE_VM_KPKG:-}" ]; then
  [ -n "$(apt-cache policy linux-image-amd64 2>/dev/null | awk '/Candidate:/{print $2}')" ] || apt-get update -qq
  PODWIRE_VM_KPKG="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
fi
KVER="${PODWIRE_VM_KPKG#linux-image-}"
KROOT="$CACHE/kroot-$KVER"
if [ ! -f "$KROOT/.done" ]; then
  tmp="$(mktemp -d "$CACHE/dl.XXXXXX")"
  ( cd "$tmp" && apt-get download -qq "$PODWIRE_VM_KPKG" 2>/dev/null )
  rm -rf "$KROOT"
  dpkg-deb -x "$tmp"/*.deb "$KROOT"
  rm -rf "$tmp"
  depmod -b "$KROOT" "$KVER"
  touch "$KROOT/.done"
fi
# Uncompressed ELF vmlinux: qemu boots it through its PVH entry point, which
# skips the real-mode setup and the xz decompression (~2.5 s under TCG).
# (Without python3 this is skipped and vmrun.sh boots the bzImage instead.)
if [ ! -f "$KROOT/vmlinux" ] && command -v python3 >/dev/null; then
  python3 - "$KROOT/boot/vmlinuz-$KVER" "$KROOT/vmlinux.tmp" <<'PY'
import sys, lzma
d = open(sys.argv[1], 'rb').read()
i = d.find(b'\xfd7zXZ\x00')  # Debian's amd64 kernels are CONFIG_KERNEL_XZ
out = lzma.LZMADecompressor().decompress(d[i:])
assert out[:4] == b'\x7fELF', 'no ELF inside the bzImage'
open(sys.argv[2], 'wb').write(out)
PY
  mv "$KROOT/vmlinux.tmp" "$KROOT/vmlinux"
fi
ln -sfn "kroot-$KVER" "$CACHE/kroot"
echo "$KVER" > "$CACHE/kver"

# ---- initramfs: static busybox + /init + the modules needed to reach 9p ----
# rebuilt only when /init or the kernel changed
stamp="$KVER $(sha1sum "$HERE/init" | cut -c1-40)"
if [ -f "$CACHE/initramfs.cpio.gz" ] && [ "$(cat "$CACHE/initramfs.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "podwire-vm ready: kernel $KVER, cache $CACHE (cached)"
  exit 0
fi
IRD="$(mktemp -d)"
trap 'rm -rf "$IRD"' EXIT
mkdir -p "$IRD"/{bin,sbin,proc,sys,dev,host,newroot,rw,job,lib/modules/"$KVER"}
cp /bin/busybox "$IRD/bin/busybox"
MD="$KROOT/lib/modules/$KVER"
# modules + their dependencies, resolved from modules.dep
boot_mods="virtio_pci virtio_mmio 9pnet_virtio 9p overlay"
for m in $boot_mods; do
  line="$(grep -E "/${m}\.ko(\.[a-z]+)?:" "$MD/modules.dep")"
  for f in ${line%%:*} ${line#*:}; do
    mkdir -p "$IRD/lib/modules/$KVER/$(dirname "$f")"
    cp "$MD/$f" "$IRD/lib/modules/$KVER/$f"
  done
done
# a modules.dep cut down to these modules: busybox modprobe parses it on every
# call, and the full one (0.5 MB) costs noticeable time under TCG
( cd "$IRD/lib/modules/$KVER" && find kernel -name '*.ko*' | sed 's/[.]/[.]/g; s/^/^/; s/$/:/' > "$IRD/pat" )
grep -f "$IRD/pat" "$MD/modules.dep" > "$IRD/lib/modules/$KVER/modules.dep"
rm "$IRD/pat"
cp "$MD/modules.builtin" "$IRD/lib/modules/$KVER/"
install -m 0755 "$HERE/init" "$IRD/init"
( cd "$IRD" && find . | cpio -o -H newc --quiet | gzip -1 ) > "$CACHE/initramfs.cpio.gz.tmp"
mv "$CACHE/initramfs.cpio.gz.tmp" "$CACHE/initramfs.cpio.gz"
echo "$stamp" > "$CACHE/initramfs.stamp"
echo "podwire-vm ready: kernel $KVER, cache $CACHE ($(du -h "$CACHE/initramfs.cpio.gz" | cut -f1) initramfs)"
