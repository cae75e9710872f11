#!/usr/bin/env bash
# The test command: installs what is missing, builds with AddressSanitizer +
# UndefinedBehaviorSanitizer, runs the whole suite with ctest, then the
# libFuzzer target for a bounded time (SOCKAGENT_FUZZ_SECONDS, default 60;
# 0 skips it, e.g. for quick local runs). Run as root: some tests create
# network namespaces (they report SKIPPED, with the reason, otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --sanitize --build-dir build-asan
# A RelWithDebInfo daemon for the tests that measure memory (RSS): ASan's
# quarantine makes an ASan agent's RSS meaningless.
scripts/setup.sh --build-dir build --target sockagentd
export SOCKAGENTD_RELEASE="${SOCKAGENTD_RELEASE:-$PWD/build/service/sockagentd}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# OpenSSL allocations that gRPC's TLS threads still hold when a short-lived
# sockctl exits are not ours (tests/lsan.supp says why).
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}"
ctest --test-dir build-asan --output-on-failure -j2 "$@"

fuzz_seconds="${SOCKAGENT_FUZZ_SECONDS:-60}"
if [ "$fuzz_seconds" != 0 ]; then
  scripts/setup.sh --fuzz --target service_fuzzer
  fuzz/run.sh build-fuzz "$fuzz_seconds"
fi
