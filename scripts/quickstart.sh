#!/usr/bin/env bash
# Quick start, step 1: install everything on a fresh Debian 12 machine (as root), build, and run the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm run build:ts
npm run lab
