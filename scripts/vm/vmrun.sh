#!/usr/bin/env bash
# Run a shell command inside a throw-away qemu guest that boots the stock
# Debian kernel prepared by setup.sh, with the host's root filesystem as its
# (overlaid, writable, discarded) root. Prints the command's output and exits
# with the command's exit status.
#
# usage: vmrun.sh [options] [--] COMMAND...
#   -m MiB        guest memory (default 1024)
#   -s N          guest vCPUs (default 1: with TCG on this 2-core host 2 vCPUs
#                 were ~2x slower in measurements)
#   -C DIR        working dir inside the guest (default: current dir)
#   -w            mount the working dir read-write (writes reach the host);
#                 otherwise writes land in the discarded overlay
#   -k MODS       comma separated modules to load first (e.g. ip_vs,wireguard)
#   -t SECONDS    kill the guest after this long (default 600)
#   -v            show kernel messages
#   -J DIR        use DIR as the job dir (9p tag "job", /netvm-job in the guest)
#                 and keep it: results written there reach the host
# env: PODWIRE_VM_CACHE (default /var/cache/podwire-vm)
#      NETVM_ACCEL  tcg (default) | kvm   (kvm does NOT work on PVM hosts, see report)
#      NETVM_MACHINE microvm (default) | pc
#      NETVM_BOOT   pvh (default: uncompressed vmlinux) | bzimage
set -euo pipefail
CACHE="${PODWIRE_VM_CACHE:-/var/cache/podwire-vm}"
MEM=1024 SMP=1 WD="$PWD" WRW=0 MODS="" TMO=600 VERBOSE=0 KEEPJOB=""
while getopts "m:s:C:wk:t:vJ:" o; do
  case "$o" in
    m) MEM="$OPTARG";; s) SMP="$OPTARG";; C) WD="$(cd "$OPTARG" && pwd)";;
    w) WRW=1;; k) MODS="$OPTARG";; t) TMO="$OPTARG";; v) VERBOSE=1;; J) KEEPJOB="$OPTARG";;
    *) sed -n '2,22p' "$0" >&2; exit 2;;
  esac
done
shift $((OPTIND-1))
[ $# -gt 0 ] || { echo "vmrun.sh: no command" >&2; exit 2; }
[ -f "$CACHE/initramfs.cpio.gz" ] || { echo "vmrun.sh: run setup.sh first" >&2; exit 2; }
KVER="$(cat "$CACHE/kver")"
KROOT="$(cd "$CACHE/kroot" && pwd -P)"

if [ -n "$KEEPJOB" ]; then mkdir -p "$KEEPJOB"; JOB="$(cd "$KEEPJOB" && pwd)"; rm -f "$JOB/rc"
else JOB="$(mktemp -d "${TMPDIR:-/tmp}/netvm-job.XXXXXX")"; trap 'rm -rf "$JOB"' EXIT; fi
{ echo 'set -e'; printf '%q ' "$@"; echo; } > "$JOB/cmd.sh"
# a single string argument is run as a shell snippet
[ $# -eq 1 ] && printf '%s\n' "$1" > "$JOB/cmd.sh"

# kvm: kept for hosts with real VT-x/AMD-V. On this project's PVM-based VMs
# plain "-cpu host" aborts (MSR 0x10a), and with -arch-capabilities the stock
# kernel never gets past the boot stub (PVM only runs PVM-enabled guests).
if [ "${NETVM_ACCEL:-tcg}" = kvm ]; then ACCEL=(-accel kvm -cpu host,-arch-capabilities); else ACCEL=(-accel tcg,thread=multi -cpu max); fi
if [ "$VERBOSE" = 1 ]; then LOG="loglevel=7 netvm_trace=1"; else LOG="quiet loglevel=1"; fi
APPEND="console=ttyS0 $LOG panic=-1 mitigations=off tsc=reliable no_timer_check i8042.noaux i8042.nokbd i8042.nopnp rdinit=/init"
APPEND+=" netvm_moddir=$KROOT/lib/modules/$KVER netvm_workdir=$WD netvm_workrw=$WRW"
[ -n "$MODS" ] && APPEND+=" netvm_mods=$MODS"

M="${NETVM_MACHINE:-microvm}"
grep -q '^cpu MHz' /proc/cpuinfo || M=pc   # microvm needs the TSC rate, see below
# virtio-9p shares: PCI devices on pc, virtio-mmio devices on microvm.
# microvm needs pit=on,pic=on under TCG: with its defaults the TCG guest finds
# no timer at all and hangs early in boot.
if [ "$M" = microvm ]; then
  DEV=virtio-9p-device; MACH=(-M microvm,pit=on,pic=on,rtc=on)
  # microvm has no HPET / ACPI PM timer. Under TCG the early PIT calibration
  # of the TSC fails at random (more so on a loaded host) and the guest then
  # hangs without a clocksource, so hand it the frequency: a TCG guest's TSC
  # ticks at the host's TSC rate.
  khz="$(awk -F: '/^cpu MHz/{printf "%d", $2*1000; exit}' /proc/cpuinfo)"
  [ -n "$khz" ] && APPEND+=" tsc_early_khz=$khz"
else DEV=virtio-9p-pci; MACH=(-M pc); fi
FS=() n=0
share() { n=$((n+1)); FS+=(-fsdev "local,id=fs$n,path=$1,security_model=passthrough,multidevs=remap${3:-}" -device "$DEV,fsdev=fs$n,mount_tag=$2"); }
share / hostroot ,readonly=on
share "$JOB" job
[ "$WRW" = 1 ] && share "$WD" work
if [ "${NETVM_BOOT:-pvh}" = pvh ] && [ -f "$KROOT/vmlinux" ]; then KERNEL="$KROOT/vmlinux"; else KERNEL="$KROOT/boot/vmlinuz-$KVER"; fi

set +e
timeout -k 5 "$TMO" qemu-system-x86_64 "${ACCEL[@]}" "${MACH[@]}" -m "$MEM" -smp "$SMP" \
  -nodefaults -no-user-config -display none -serial stdio -nic none -no-reboot \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  -kernel "$KERNEL" -initrd "$CACHE/initramfs.cpio.gz" \
  -append "$APPEND" "${FS[@]}" </dev/null
qrc=$?
set -e
if [ -f "$JOB/rc" ]; then exit "$(cat "$JOB/rc")"; fi
echo "vmrun.sh: guest gave no exit status (qemu exit $qrc)" >&2
exit 125
