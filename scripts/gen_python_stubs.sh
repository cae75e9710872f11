#!/usr/bin/env bash
# Generates the Python stubs of the sockagent API into OUT_DIR (created):
# OUT_DIR/sockagent/v1/agent_pb2.py and agent_pb2_grpc.py. Uses Debian's
# protoc and grpc_python_plugin (protobuf-compiler-grpc), which match
# python3-grpcio 1.51 and python3-protobuf 3.21; the stubs are never
# committed. Only agent.proto is generated: the health service's stubs come
# with grpcio (grpc_health.v1) where a client wants them. Run the stubs
# with Debian's /usr/bin/python3: another python3 earlier on PATH (pyenv)
# has no grpcio.
#
#   scripts/gen_python_stubs.sh OUT_DIR
#   PYTHONPATH=OUT_DIR /usr/bin/python3 -c 'from sockagent.v1 import agent_pb2_grpc'
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$1"
mkdir -p "$out"
protoc -I "$root/proto" \
  --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  "$root/proto/sockagent/v1/agent.proto"
# Make the generated folders importable as regular packages.
touch "$out/sockagent/__init__.py" "$out/sockagent/v1/__init__.py"
