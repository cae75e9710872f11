#!/usr/bin/env bash
# The main job: installs what is missing, builds, starts the agent and shows
# the seed scenario through sockctl. The agent then keeps serving in the
# foreground until Ctrl-C.
#
# By default the agent serves its owner-only UNIX socket
# (/run/sockagent/sockagentd.sock as root), which sockctl finds without
# --agent. SOCKAGENT_LISTEN=HOST:PORT serves TCP instead, with a fresh
# bearer token in a 0600 file (printed) that sockctl is given too.
#
# For the test suite (tests/docs/demo_test.sh): SOCKAGENT_DEMO_BIN=DIR uses
# the binaries already built in DIR instead of running setup, and
# SOCKAGENT_DEMO_ONCE=1 stops the agent after the scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${SOCKAGENT_DEMO_BIN:-}" ]; then
  bin=$SOCKAGENT_DEMO_BIN
else
  scripts/setup.sh --target sockagentd --target sockctl
  bin=build
fi

out=$(mktemp)
args=()
token_file=""
if [ -n "${SOCKAGENT_LISTEN:-}" ]; then
  args=(--listen "$SOCKAGENT_LISTEN")
  case "$SOCKAGENT_LISTEN" in
    unix:*) ;;
    *)
      token_file=$(mktemp)  # mode 0600
      head -c 32 /dev/urandom | base64 | tr -d '=+/' >"$token_file"
      args+=(--token-file "$token_file")
      export SOCKAGENT_TOKEN="$(cat "$token_file")"
      ;;
  esac
fi
"$bin/service/sockagentd" "${args[@]}" >"$out" &
agent=$!
trap 'kill -TERM $agent 2>/dev/null; wait $agent; rm -f "$out" ${token_file:+"$token_file"}' EXIT
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
[ -z "$token_file" ] || echo "bearer token in $token_file (SOCKAGENT_TOKEN or --token-file for sockctl)"
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
[ "${SOCKAGENT_DEMO_ONCE:-0}" = 1 ] && exit 0
printf '\nsockagentd keeps serving on %s; press Ctrl-C to stop.\n' "$addr"
wait $agent
