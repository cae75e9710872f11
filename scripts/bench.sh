#!/usr/bin/env bash
# Runs every benchmark (issue 7): builds a Release tree in build-bench/
# (sockagentd, sockctl and bench/), then bench/run.py prints a table, writes
# build-bench/bench-results.json and appends a dated section to BENCHMARKS.md.
#
#   scripts/bench.sh [--quick] [--build-dir DIR] [run.py options...]
#
# --quick: tiny sizes, one round, nothing appended to BENCHMARKS.md: proves
# the benchmarks work (CI runs it through ctest as bench_quick), not speed.
# A full run (7 rounds) takes about 10 minutes on 2 cores; run it on a
# quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build-bench
quick=0
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; rest+=(--quick) ;;
    --build-dir) build_dir="$2"; shift ;;
    *) rest+=("$1") ;;
  esac
  shift
done

scripts/setup.sh --no-build  # packages only (iperf3, socat, ...)
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DSOCKAGENT_BUILD_TESTS=OFF -DSOCKAGENT_BUILD_BENCH=ON
fi
nice -n 5 cmake --build "$build_dir" -j2 --target sockagentd sockctl \
  bench_load bench_echo_server bench_rpc

if [ "$quick" = 1 ]; then
  exec python3 bench/run.py --build-dir "$build_dir" "${rest[@]}"
fi
exec python3 bench/run.py --build-dir "$build_dir" --append BENCHMARKS.md \
  --json "$build_dir/bench-results.json" "${rest[@]}"
