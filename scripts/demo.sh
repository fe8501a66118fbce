#!/usr/bin/env bash
# The main job on a fresh machine, offline: start the services, build the
# examples/offline project (no nixpkgs needed) into an image, push it to the
# local registry and run a program from it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
npx tsc -p tsconfig.json
eval "$(bash scripts/services.sh up)"
nd() { node bin/nixdocker.js -C examples/offline "$@"; }
nd builder create
nd build
nd hash
