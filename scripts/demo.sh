#!/usr/bin/env bash
# The main job: installs what is missing, builds, starts the agent on
# SOCKAGENT_LISTEN (default 127.0.0.1:7878) and shows the seed scenario
# through sockctl. The agent then keeps serving in the foreground until
# Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --target sockagentd --target sockctl
listen="${SOCKAGENT_LISTEN:-127.0.0.1:7878}"
bin=build

out=$(mktemp)
"$bin/service/sockagentd" --listen "$listen" >"$out" &
agent=$!
trap 'kill -TERM $agent 2>/dev/null; wait $agent; rm -f "$out"' EXIT
trap 'exit 0' INT TERM
for _ in $(seq 1 200); do
  grep -q "serving on" "$out" && break
  kill -0 $agent 2>/dev/null || { echo "demo: sockagentd did not start" >&2; exit 1; }
  sleep 0.05
done
addr=$(sed -n 's/.*serving on //p' "$out")
export SOCKAGENT_ADDR="$addr"
ctl="$bin/cli/sockctl"

step() { printf '\n$ sockctl %s\n' "$*"; "$ctl" "$@" || true; }
echo "sockagentd is serving on $addr"
step health
step hostname                      # socket.gethostname()
step resolve localhost www         # socket.getaddrinfo('localhost', 'www')
step resolve -r 127.0.0.1 80       # reverse lookup
step info
if "$ctl" server list >/dev/null 2>&1; then
  # The seed's "Thank you for connecting" server and its one-shot client.
  step server start --port 0 --greeting 'Thank you for connecting' --close-after --label demo=seed
  port=$("$ctl" --json server list --label demo=seed | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["servers"][0]["localAddresses"][0]["port"])')
  printf '\n$ python3 one-shot client to 127.0.0.1:%s\n' "$port"
  python3 - "$port" <<'PY'
import socket, sys
s = socket.socket()
s.connect(("127.0.0.1", int(sys.argv[1])))
print(s.recv(1024).decode())
s.close()
PY
  step conn list --all --label demo=seed
  step server list --label demo=seed
  step server stop --label demo=seed
fi
printf '\nsockagentd keeps serving on %s; press Ctrl-C to stop.\n' "$addr"
wait $agent
