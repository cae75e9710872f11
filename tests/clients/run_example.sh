#!/usr/bin/env bash
# Runs a client example (examples/python or examples/node) against a real
# sockagentd the way its README says, and checks what it printed:
#
#   run_example.sh SOCKAGENTD SOCKCTL python|node
#
# The agent serves 127.0.0.1 port 0 with a bearer token in a 0600 file (the
# example reads it with --token-file). Checks: the example exits 0 and
# prints the greeting its one-shot client received; it left no server of
# its label running (sockctl asks); without the token it exits 1 and says
# UNAUTHENTICATED. Waits poll a condition with a deadline.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 SOCKAGENTD SOCKCTL python|node" >&2; exit 2; }
sockagentd="$1"
sockctl="$2"
lang="$3"
root="$(cd "$(dirname "$0")/../.." && pwd)"

tmp="$(mktemp -d)"
agent=""
cleanup() {
  if [ -n "$agent" ]; then
    kill -TERM "$agent" 2>/dev/null || true
    wait "$agent" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in example.out example.err agent.out agent.err; do
    [ -s "$tmp/$f" ] && { echo "--- $f"; cat "$tmp/$f"; } >&2
  done
  exit 1
}

case "$lang" in
  python)
    # Debian's python3: it has python3-grpcio (a pyenv python3 may not).
    "$root/scripts/gen_python_stubs.sh" "$tmp/stubs" >/dev/null
    example=(env PYTHONPATH="$tmp/stubs" /usr/bin/python3
             "$root/examples/python/seed_scenario.py")
    ;;
  node)
    [ -d "$root/examples/node/node_modules/@grpc/grpc-js" ] ||
      fail "examples/node/node_modules is missing: run scripts/setup.sh (npm ci)"
    example=(node "$root/examples/node/seed_scenario.js")
    ;;
  *) echo "run_example.sh: unknown example $lang" >&2; exit 2 ;;
esac

(umask 077; head -c 32 /dev/urandom | base64 | tr -d '=+/' >"$tmp/token")
"$sockagentd" --listen 127.0.0.1:0 --token-file "$tmp/token" \
  >"$tmp/agent.out" 2>"$tmp/agent.err" &
agent=$!
deadline=$((SECONDS + 30))
until grep -q "serving on" "$tmp/agent.out"; do
  kill -0 "$agent" 2>/dev/null || fail "sockagentd exited before serving"
  [ "$SECONDS" -lt "$deadline" ] || fail "sockagentd not serving within 30 s"
  sleep 0.05  # Poll interval of a loop with a 30 s deadline, not synchronisation.
done
addr="$(sed -n 's/.*serving on //p' "$tmp/agent.out")"
label="example=$lang-$$"

status=0
"${example[@]}" --agent "$addr" --token-file "$tmp/token" --label "$label" \
  >"$tmp/example.out" 2>"$tmp/example.err" || status=$?
cat "$tmp/example.out"
[ "$status" -eq 0 ] || fail "the $lang example exited $status"
for want in "received: Thank you for connecting" \
            "1 server(s) stopped" "hostname: " "reverse 127.0.0.1 80: "; do
  grep -qF "$want" "$tmp/example.out" || fail "no '$want' in its output"
done

# Nothing of its label is left running on the agent.
left="$("$sockctl" --agent "$addr" --token-file "$tmp/token" --json \
  server list --label "$label")" || fail "sockctl server list failed"
if grep -q 'srv-' <<<"$left"; then
  fail "servers left running: $left"
fi

# A call without the token: exit 1 and the agent's status in words.
status=0
env -u SOCKAGENT_TOKEN "${example[@]}" --agent "$addr" --label "$label" \
  >"$tmp/example.out" 2>"$tmp/example.err" || status=$?
[ "$status" -eq 1 ] || fail "without a token: exit $status, want 1"
grep -q "UNAUTHENTICATED" "$tmp/example.err" ||
  fail "without a token: no UNAUTHENTICATED on stderr"
echo "the $lang example: OK"
