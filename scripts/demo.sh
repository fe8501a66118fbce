#!/usr/bin/env bash
# The main job on a fresh machine, offline: start the services (podman's API,
# a registry on 127.0.0.1:5000, Nix), build examples/offline (no nixpkgs
# needed) into an image, push it, then pull it and run programs from it.
# The services keep running afterwards; `bash scripts/services.sh down` stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
npx tsc -p tsconfig.json
eval "$(bash scripts/services.sh up)"
nd() { node bin/nixdocker.js -C examples/offline "$@"; }
set -x
nd builder create
nd build
nd pull run hello
nd run sh hello_world.sh
