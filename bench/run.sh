#!/usr/bin/env bash
# Gantry's benchmarks in one command: builds in release mode, prepares what
# they need (test images, PostgreSQL on 127.0.0.1:55432), then measures every
# metric against its floor and prints the table (also in target/bench/latest.md).
# Arguments go to the harness: e.g. `bench/run.sh --only 1,2 --samples 10`,
# `bench/run.sh --help`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
scripts/test-images.sh >/dev/null
GANTRY_BENCH_DATABASE_URL=$(scripts/start-postgres.sh)
export GANTRY_BENCH_DATABASE_URL
# Two builds: the binaries measured are built as a user builds them
# (`-p gantry` alone). Built beside another package, shared dependencies get
# other features, and with them other symbol names than cli/link-order lists.
cargo build --release -q -p gantry
cargo build --release -q -p gantry-bench
scripts/link-order.sh --check
exec target/release/gantry-bench "$@"
