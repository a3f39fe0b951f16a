#!/usr/bin/env bash
# Runs every Gantry test. On a fresh machine it first installs and starts what
# the tests need; when that is already there it goes straight to the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
scripts/test-images.sh
GANTRY_TEST_DATABASE_URL=$(scripts/start-postgres.sh)
export GANTRY_TEST_DATABASE_URL

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast
fi

# Every container, network and volume Gantry made during the tests is gone.
leftovers=""
for kind in "ps -aq" "network ls -q" "volume ls -q"; do
  found=$(docker $kind --filter label=gantry.job)
  [ -z "$found" ] || leftovers="$leftovers docker $kind: $found;"
done
# ... and so is every network a runner kept ready for its next job.
found=$(docker network ls -q --filter label=gantry.runner)
[ -z "$found" ] || leftovers="$leftovers docker network ls: $found;"
# ... and no job's workspace is still mounted (overlays over checkout snapshots).
found=$(awk '$0 ~ / - overlay / && $5 ~ /^\/tmp\// {print $5}' /proc/self/mountinfo)
[ -z "$found" ] || leftovers="$leftovers overlay mounts: $found;"
if [ -n "$leftovers" ]; then
  echo "FAILED: the tests left Gantry's Docker objects or mounts behind:$leftovers" >&2
  exit 1
fi
echo "no Gantry container, network, volume or workspace mount left behind"
