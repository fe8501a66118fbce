#!/usr/bin/env bash
# The test command: builds, starts the real services (podman, registry, nix),
# runs every uvu suite, stops the services, and prints "N passed, N failed, N skipped".
#   scripts/test.sh           everything
#   scripts/test.sh --unit    unit suites only, no services
#   scripts/test.sh [--unit] PATTERN   only suites whose path matches PATTERN
set -uo pipefail
cd "$(dirname "$0")/.."

unit=0
if [ "${1:-}" = "--unit" ]; then unit=1; shift; fi
pattern="${1:-}"

# The build, and a type check of the tests and benchmarks (tsx runs them without one).
npx tsc -p tsconfig.json && npx tsc -p test/tsconfig.json --noEmit || { echo "0 passed, 1 failed"; exit 1; }

dirs=(test/unit)
if [ "$unit" = 0 ]; then
  dirs+=(test/integration)
  env_out=$(bash scripts/services.sh up) || { echo "services failed to start" >&2; echo "0 passed, 1 failed"; exit 1; }
  eval "$env_out"
  # NIXDOCKER_KEEP_SERVICES=1 leaves them running for the next run (parallel work on one machine).
  [ -n "${NIXDOCKER_KEEP_SERVICES:-}" ] || trap 'bash scripts/services.sh down >&2' EXIT
fi

log=$(mktemp)
status=0
for dir in "${dirs[@]}"; do
  [ -d "$dir" ] || continue
  # One uvu process per directory: unit suites stay fast, integration suites share the services.
  node --import tsx node_modules/uvu/bin.js "$dir" "${pattern:-\\.test\\.ts$}" 2>&1 | tee -a "$log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
done

# Stop the services now, so the summary below is the very last line printed.
if [ "$unit" = 0 ] && [ -z "${NIXDOCKER_KEEP_SERVICES:-}" ]; then
  bash scripts/services.sh down >&2
  trap - EXIT
fi

clean=$(sed -e 's/\x1b\[[0-9;]*m//g' "$log")
total=$(printf '%s\n' "$clean" | awk '/Total:/ {s += $2} END {print s+0}')
passed=$(printf '%s\n' "$clean" | awk '/Passed:/ {s += $2} END {print s+0}')
skipped=$(printf '%s\n' "$clean" | awk '/Skipped:/ {s += $2} END {print s+0}')
# uvu's Total counts only the tests that ran (a skipped test is never in it).
failed=$((total - passed))
# A suite that crashed before uvu's summary counts as a failure.
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
rm -f "$log"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$status" = 0 ] && [ "$failed" = 0 ]
