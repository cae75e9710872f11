#!/usr/bin/env bash
# deploy/kubernetes/ validated offline (validate_kubernetes.js). Node and the
# pinned validator packages (tools/k8s, installed by scripts/setup.sh with
# `npm ci`) are required: a missing install fails, it does not skip.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
modules="$root/tools/k8s/node_modules"
if [ ! -d "$modules/kubernetes-models" ]; then
  echo "FAIL: $modules is missing: run scripts/setup.sh (npm ci in tools/k8s)"
  exit 1
fi
exec node "$root/tests/deploy/validate_kubernetes.js" \
  "$root/deploy/kubernetes" "$modules"
