#!/usr/bin/env bash
# Runs the service fuzzer for a bounded time (CI: scripts/test.sh).
#
#   fuzz/run.sh BUILD_DIR [SECONDS]
#
# Builds the seed corpus from fuzz/seeds/*.txtpb (text protos; the file
# name's first two digits are the RPC number the fuzzer reads from byte 0)
# into BUILD_DIR/fuzz-corpus/seeds, keeps what the fuzzer finds in
# BUILD_DIR/fuzz-corpus/found across runs, and exits non-zero on any finding
# (the crash input is left in BUILD_DIR/fuzz-artifacts/).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="$1"
seconds="${2:-60}"
fuzzer="$build_dir/fuzz/service_fuzzer"
corpus="$build_dir/fuzz-corpus"
mkdir -p "$corpus/seeds" "$corpus/found" "$build_dir/fuzz-artifacts"

types=(StartServerRequest StopServerRequest ListServersRequest
  OpenClientRequest ListConnectionsRequest SendRequest ReceiveRequest
  CloseConnectionRequest WatchRequest StreamRequest ResolveRequest
  GetHostInfoRequest AddFaultRequest UpdateFaultRequest RemoveFaultRequest)
for seed in fuzz/seeds/*.txtpb; do
  name=$(basename "$seed" .txtpb)
  method=$((10#${name:0:2}))
  {
    printf "\\x$(printf %02x "$method")"
    protoc -I proto -I /usr/include \
      --encode="sockagent.v1.${types[$method]}" sockagent/v1/agent.proto \
      < "$seed"
  } > "$corpus/seeds/$name"
done

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=0"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
echo "fuzz: service_fuzzer for ${seconds}s"
"$fuzzer" -max_total_time="$seconds" -max_len=4096 -timeout=20 \
  -rss_limit_mb=3072 -print_final_stats=1 \
  -artifact_prefix="$build_dir/fuzz-artifacts/" \
  "$corpus/found" "$corpus/seeds"
