#!/usr/bin/env bash
# What a client gets when it generates every .proto a clone offers outside
# proto/third_party/ into one Python folder, with __init__.py files as
# scripts/gen_python_stubs.sh makes them: only the sockagent package, and
# `import grpc` is still grpcio (a vendored grpc/health/v1/health.proto in
# the client tree would generate a `grpc` package that shadows it).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$root/proto"
mapfile -t protos < <(find . -name '*.proto' -not -path './third_party/*' \
  | sed 's|^\./||' | sort)
echo "client protos: ${protos[*]}"
protoc -I . --python_out="$tmp" --grpc_python_out="$tmp" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  "${protos[@]}"
find "$tmp" -type d -exec touch {}/__init__.py \;
rm -f "$tmp/__init__.py"
packages="$(cd "$tmp" && ls)"
if [ "$packages" != "sockagent" ]; then
  echo "FAIL: generating the client protos gives top-level packages:" $packages >&2
  exit 1
fi
PYTHONPATH="$tmp" /usr/bin/python3 - <<'PY'
import grpc
assert hasattr(grpc, "insecure_channel"), "import grpc is not grpcio: %r" % grpc
from sockagent.v1 import agent_pb2_grpc
print("generated tree: sockagent only; import grpc is grpcio", grpc.__version__)
PY
