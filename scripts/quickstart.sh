#!/usr/bin/env bash
# Quick start: install everything on a fresh Debian 12 machine (as root), build, and bring up the
# lab (`podwire lab up`): 3 nodes in network namespaces, podwired on each, pods wired by its CNI
# plugin, real servers in them, and a table of what that proved. The lab stays up to explore.
# Running it again on the same machine works: the previous lab is torn down first.
# (`npm run lab` is the self-cleaning demo: it builds, checks and removes everything in one go.)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "quickstart: run as root (apt-get and network namespaces need it)" >&2
  exit 1
fi
# A lab from an earlier run still uses node_modules/ and dist/: take it down before reinstalling them.
if [ -f dist/src/lab/cli.js ] && [ -e /run/podwire-lab ]; then
  bin/podwire lab down || true
fi
bash scripts/install-deps.sh
npm run -s build:ts
status=0
bin/podwire lab up "$@" || status=$?
cat <<'TXT'

quickstart: the lab is up (its table above says what it proved). Next:
  bin/podwire lab status                       nodes, pods and their IPs, Services, each podwired's health
  bin/podwire lab exec web-0 -- ip -4 addr     any command inside a pod (or a node: lab exec node1 -- ip route)
  bin/podwire lab exec web-0 -- curl -s http://10.244.3.20:8080/
  bin/podwire lab down                         remove everything (namespaces, daemons, files)
See docs/lab.md.
TXT
exit "$status"
