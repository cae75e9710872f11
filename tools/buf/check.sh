#!/usr/bin/env bash
# buf checks of the sockagent API (proto/buf.yaml says which rules and why).
#
#   tools/buf/check.sh lint       buf lint: clean, or an exception listed
#   tools/buf/check.sh breaking   buf breaking against proto/baseline/v1.binpb:
#                                 v1 stays wire- and source-compatible
#   tools/buf/check.sh selftest   proves the breaking check bites: a copy of
#                                 the API with a field renamed must fail it
#   tools/buf/check.sh baseline   rewrites proto/baseline/v1.binpb from the
#                                 current API (after a compatible addition;
#                                 never to silence a breaking change)
#
# buf is the pinned npm package in tools/buf/ (scripts/setup.sh runs npm ci
# there); BUF=/path/to/buf overrides it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
buf="${BUF:-$root/tools/buf/node_modules/.bin/buf}"
if [ ! -x "$buf" ]; then
  echo "check.sh: no buf at $buf; run scripts/setup.sh (npm ci in tools/buf)" >&2
  exit 1
fi
baseline="$root/proto/baseline/v1.binpb"
cd "$root/proto"
case "${1:-}" in
  lint)
    "$buf" lint
    echo "buf lint: clean"
    ;;
  breaking)
    "$buf" breaking --against "$baseline"
    echo "buf breaking: compatible with $(basename "$baseline")"
    ;;
  selftest)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    cp -r buf.yaml sockagent "$tmp/"
    # Rename the first `string id = 1;` (Server.id): the wire stays the
    # same, but JSON, generated code and the proto's meaning do not.
    sed -i '0,/string id = 1;/s//string ident = 1;/' \
      "$tmp/sockagent/v1/agent.proto"
    if ! grep -q 'string ident = 1;' "$tmp/sockagent/v1/agent.proto"; then
      echo "check.sh selftest: could not find a field to rename" >&2
      exit 1
    fi
    if out="$(cd "$tmp" && "$buf" breaking --against "$baseline" 2>&1)"; then
      echo "check.sh selftest: buf breaking accepted a renamed field" >&2
      exit 1
    fi
    grep -q 'changed name from "id" to "ident"' <<<"$out" || {
      echo "check.sh selftest: unexpected buf output:" >&2
      echo "$out" >&2
      exit 1
    }
    echo "buf breaking flags a renamed field:"
    echo "$out"
    ;;
  baseline)
    # Only a compatible API may become the new baseline.
    "$buf" breaking --against "$baseline" || {
      echo "check.sh baseline: the API breaks v1; baseline left as it was" >&2
      exit 1
    }
    "$buf" build --exclude-source-info -o "$baseline"
    echo "wrote $baseline"
    ;;
  *)
    echo "usage: $0 lint|breaking|selftest|baseline" >&2
    exit 2
    ;;
esac
