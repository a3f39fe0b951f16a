#!/usr/bin/env bash
# Measures libgit2 against the git CLI for the runner's fetches (the runner
# issue asks for it; the numbers are in the README). Builds a repository with
# many commits, serves it with `git daemon` on 127.0.0.1, and compares a cold
# fetch of the whole history and a warm fetch of new commits, ABAB, median of N.
set -euo pipefail
cd "$(dirname "$0")"
COMMITS=${COMMITS:-5000}
RUNS=${RUNS:-7}
PORT=${PORT:-19418}
work=$(mktemp -d)
trap 'kill $daemon 2>/dev/null; rm -rf "$work"' EXIT
repo="$work/repo"
git init -q -b master "$repo"
# Thousands of commits touching many files, made fast with fast-import.
python3 - "$COMMITS" > "$work/stream" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
for i in range(n):
    content = ("line %d of a source file\n" % i) * 40
    data = content.encode()
    msg = b"commit %d\n" % i
    out.write("commit refs/heads/master\nmark :%d\ncommitter Bench <b@b> %d +0000\n" % (i + 1, 1700000000 + i))
    out.write("data %d\n" % len(msg)); out.flush(); sys.stdout.buffer.write(msg)
    if i > 0:
        out.write("from :%d\n" % i)
    out.write("M 100644 inline src/file%d.txt\ndata %d\n" % (i % 500, len(data))); out.flush(); sys.stdout.buffer.write(data)
    out.write("\n")
PY
git -C "$repo" fast-import --quiet < "$work/stream"
git -C "$repo" checkout -q master
git -C "$repo" config user.name Bench; git -C "$repo" config user.email b@b
touch "$repo/.git/git-daemon-export-ok"
git daemon --reuseaddr --listen=127.0.0.1 --port="$PORT" --base-path="$work" --export-all "$work" &
daemon=$!
sleep 1
cargo build -q --release --manifest-path clone-compare/Cargo.toml
echo "repository: $(git -C "$repo" rev-list --count HEAD) commits, $(git -C "$repo" count-objects -v | awk '/^count|in-pack/ {s+=$2} END {print s}') objects"
clone-compare/target/release/clone-compare "git://127.0.0.1:$PORT/repo/.git" "$repo" "$RUNS"
