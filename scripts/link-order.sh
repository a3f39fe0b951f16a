#!/usr/bin/env bash
# Writes cli/link-order/gantry.txt and cli/link-order/gantry-runner.txt: the
# functions a server (with and without its embedded runner) and a remote
# runner run while they start, idle, and run 100 jobs, in the order first run
# (idle first). `cli/build.rs` hands them to
# the linker, which puts those functions first in release builds, so that
# the code an idle process keeps mapped is a few MiB instead of most of the
# binary (see bench/RESULTS.md, metric 6).
#
# How: the bench's metric 6 (a server, a remote runner, and a server with
# its default embedded runner; 100 jobs on each server) runs with all of them
# under valgrind's callgrind, which names every function run; the
# names of the start and idle part are dumped before the jobs begin. Then the
# binaries are linked in that order and metric 6 runs again natively under
# `perf record -e page-faults`: a function that ran only there (timing differs
# under valgrind) faults on a page of its own, and is added at the lists' end.
# Run it again when the lists have aged (new code runs outside them): the
# script says how many of the old lists' names the binaries still have.
# Needs valgrind, perf and python3, and what the bench needs (Docker, test images).
set -euo pipefail
cd "$(dirname "$0")/.."

# `--check`: how much of each list the release binaries have (bench/run.sh
# asks after building). Names match only for the build the lists were made
# from: `cargo build --release -p gantry` with this compiler.
if [ "${1:-}" = "--check" ]; then
  for bin in gantry gantry-runner; do
    list="cli/link-order/$bin.txt"
    have=$(nm --defined-only "target/release/$bin" | awk '{print $3}' | sort -u | comm -12 - <(sort -u "$list") | wc -l)
    all=$(sort -u "$list" | wc -l)
    if [ $((have * 10)) -lt $((all * 9)) ]; then
      echo "warning: target/release/$bin has only $have of the $all functions $list names: built otherwise than \`cargo build --release -p gantry\`, or by another compiler? scripts/link-order.sh makes the lists again" >&2
    fi
  done
  exit 0
fi

for tool in valgrind callgrind_control perf python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install valgrind linux-perf python3" >&2; exit 1; }
done
scripts/test-images.sh >/dev/null
cargo build --release -q -p gantry
cargo build --release -q -p gantry-bench

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin" "$work/out" "$work/perf"
# Copies: a build while this runs must not change the binaries measured.
cp target/release/gantry target/release/gantry-runner "$work/"
for bin in gantry gantry-runner; do
  cat >"$work/bin/$bin" <<EOF
#!/bin/sh
# No restart without malloc's thread caches (it would leave valgrind).
export GLIBC_TUNABLES=glibc.malloc.tcache_count=0
exec valgrind --tool=callgrind --trace-children=yes --demangle=no --dump-instr=no \\
  --callgrind-out-file="$work/out/$bin.%p" "$work/$bin" "\$@" 2>>"$work/valgrind.log"
EOF
  chmod +x "$work/bin/$bin"
done

echo "running metric 6 under callgrind (about 7 minutes)..." >&2
GANTRY_BIN="$work/bin/gantry" target/release/gantry-bench --only 6 --idle-secs 60 \
  --out "$work/bench.md" 2>&1 | while IFS= read -r line; do
    printf '%s\n' "$line" >&2
    case "$line" in
      # The idle part ends: what ran so far goes to files of their own (*.1).
      # The files there now are that part; a job process dumped later for
      # the first time also writes a `.1`, which is not idle code.
      *"idle: 100 jobs on each server (round 1)"*) callgrind_control -d >/dev/null 2>&1 || true; ls "$work/out" >"$work/idle-dumps" ;;
      # The jobs and most of the idling after them (*.2), before the bench
      # stops the processes: one stopped by SIGKILL writes no file at exit.
      *"idle: waiting 60 s again"*) (sleep 50; callgrind_control -d >/dev/null 2>&1 || true) & ;;
    esac
  done
wait

python3 - "$work" <<'EOF'
import glob, os, re, subprocess, sys

work = sys.argv[1]

def symbols(binary):
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    return {p[2] for p in (l.split(" ", 2) for l in out.splitlines()) if len(p) == 3 and p[1] in "tTwW"}

def names(path):
    """Functions in a callgrind file, in the order first named."""
    seen = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
            if m:
                seen.setdefault(m.group(1), None)
    return list(seen)

idle_dumps = set(open(f"{work}/idle-dumps").read().split())

def run_of(program):
    """Names of a program's processes: the idle dumps first, then the rest.
    Within each part the process that ran least comes first: the server
    without a runner before the one with an embedded runner, whose extra
    functions follow, so that each server's own part stays packed."""
    idle, rest = [], []
    def dump(path):
        # Idle; then `.2` (the jobs); then no number (the rest, at exit).
        if os.path.basename(path) in idle_dumps:
            return 1
        return 2 if path.endswith(".2") else 3
    runs = [(dump(p), names(p)) for p in glob.glob(f"{work}/out/{program}.*")]
    for kind, run in sorted(runs, key=lambda r: (r[0], len(r[1]))):
        (idle if kind == 1 else rest).extend(run)
    return idle, rest

server_idle, server_jobs = run_of("gantry")
runner_idle, runner_jobs = run_of("gantry-runner")
if not server_idle or not runner_idle:
    sys.exit("callgrind wrote no idle part: did the bench run its metric 6?")
plans = {
    # `gantry server`, with and without its embedded runner; then what the
    # remote runner ran, for `gantry runner` (the same binary's runner).
    "gantry": server_idle + server_jobs + runner_idle + runner_jobs,
    "gantry-runner": runner_idle + runner_jobs,
}
os.makedirs("cli/link-order", exist_ok=True)
for binary, order in plans.items():
    have = symbols(f"{work}/{binary}")
    path = f"cli/link-order/{binary}.txt"
    if os.path.exists(path):
        old = [l for l in open(path).read().split("\n") if l]
        kept = sum(1 for l in old if l in have)
        print(f"{path}: the binary still had {kept} of the old list's {len(old)} functions", file=sys.stderr)
    listed, seen = [], set()
    for name in order:
        if name in have and name not in seen:
            seen.add(name)
            listed.append(name)
    with open(path, "w") as f:
        f.write("\n".join(listed) + "\n")
    print(f"{path}: {len(listed)} functions", file=sys.stderr)
EOF

echo "linking in that order, then metric 6 natively under perf (about 4 minutes)..." >&2
cargo build --release -q -p gantry
cp target/release/gantry target/release/gantry-runner "$work/"
for bin in gantry gantry-runner; do
  cat >"$work/bin/$bin" <<EOF
#!/bin/sh
exec perf record -q -e page-faults -c 1 -d -o "$work/perf/$bin.\$\$.data" "$work/$bin" "\$@"
EOF
done
GANTRY_BIN="$work/bin/gantry" target/release/gantry-bench --only 6 --idle-secs 60 \
  --out "$work/bench.md" >&2
for bin in gantry gantry-runner; do
  for data in "$work/perf/$bin".*.data; do
    # A fault on an instruction of the binary: the function that ran there.
    perf script -i "$data" --no-demangle -F addr,ip,sym,dso 2>/dev/null |
      awk -v dso="($work/$bin)" '$1 == $4 && $6 == dso && $5 != "[unknown]" { print $5 }'
  done | awk '!seen[$0]++' >"$work/faulted-$bin.txt"
  list="cli/link-order/$bin.txt"
  grep -vxF -f "$list" "$work/faulted-$bin.txt" >"$work/added-$bin.txt" || true
  cat "$work/added-$bin.txt" >>"$list"
  echo "$list: $(wc -l <"$work/added-$bin.txt") functions that ran only natively added" >&2
done
echo "now: cargo build --release -p gantry (the binaries are linked in the new order)" >&2
