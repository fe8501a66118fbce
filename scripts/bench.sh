#!/usr/bin/env bash
# The benchmark command (`npm run bench`): compiles, starts the services of
# scripts/services.sh, runs every benchmark in bench/ with the real CLI, prints
# the table and writes bench/results/latest.json.
#   scripts/bench.sh [NAME-PREFIX...]    only the benchmarks whose name starts so
# Services that were already running are left running (others may be using
# them); services this script started are stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

npx tsc -p tsconfig.json

if bash scripts/services.sh status >/dev/null 2>&1; then
  started=0
else
  started=1
fi
env_out=$(bash scripts/services.sh up)
eval "$env_out"
if [ "$started" = 1 ]; then
  trap 'bash scripts/services.sh down >&2' EXIT
fi

node --import tsx bench/run.ts "$@"
