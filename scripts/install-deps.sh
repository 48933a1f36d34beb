#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, run and test Podwire, then `npm ci`.
# Needs root (apt-get, and later the lab creates network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: run as root (apt-get and network namespaces need it)" >&2
  exit 1
fi
# Debian 12's own nodejs is 18, below Podwire's floor: Node.js >= 20 with npm must already be there.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null; then
  echo "install-deps: Node.js >= 20 with npm is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
packages=(
  iproute2 iptables nftables conntrack ipset util-linux kmod procps
  dnsutils curl netcat-openbsd iputils-ping tcpdump jq
  openssl                       # the Kubernetes source's HTTPS tests make a throwaway CA
  containernetworking-plugins   # the reference bridge/host-local/portmap plugins: conformance tests and CNI bench
  python3 make g++ libc6-dev    # node-gyp builds native/; the CNI shim links statically
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: npm ci"
npm ci --no-audit --no-fund
