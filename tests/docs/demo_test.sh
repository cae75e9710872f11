#!/usr/bin/env bash
# README's first quick-start command minus its install/build step: runs
# scripts/demo.sh with the binaries of BIN_DIR, in private mount and network
# namespaces (the agent's default socket on a private /run, loopback only),
# and checks that the seed scenario printed what it should.
#
#   demo_test.sh BIN_DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$(cd "$1" && pwd)"
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: the demo runs as root in its own namespaces"
  exit 77
fi
out=$(unshare --mount --net --fork env SOCKAGENT_DEMO_BIN="$bin" \
  SOCKAGENT_DEMO_ONCE=1 bash -c '
    set -euo pipefail
    ip link set lo up
    mount -t tmpfs -o mode=0755 tmpfs /run
    bash "$0/scripts/demo.sh"' "$root" 2>&1) || {
  echo "$out"; echo "FAIL: demo.sh exited non-zero"; exit 1; }
echo "$out"
for want in "sockagentd is serving on unix:/run/sockagent/sockagentd.sock" \
            "SERVING" "Thank you for connecting" "local close"; do
  grep -qF "$want" <<<"$out" || { echo "FAIL: the demo's output lacks '$want'"; exit 1; }
done
echo "OK: the demo ran its seed scenario"
