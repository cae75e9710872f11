#!/usr/bin/env bash
# docker-compose.yml brought up for real: a private Docker engine
# (scripts/docker-engine.sh: no default bridge, no iptables rules, networks
# from 198.18.0.0/15 only), the image built from the Dockerfile, the three
# agents up and healthy, then from the compose `sockctl` service:
#   - `sockctl --inventory ... info` answers for agent-a, agent-b, agent-c;
#   - every agent holds the named servers of its --config
#     (examples/config/agent.yaml);
#   - `sockctl matrix --tcp --udp --expect` (every cell OK) passes;
#   - a greeting server started on agent-a is reached from agent-b, and the
#     greeting arrives;
# then `docker-compose down` and the engine stopped. The host's network
# (`ip link`, `ip addr`, `ip route`, `nft list ruleset`, iptables) and its
# mounts must be exactly as before, also when a step failed.
#
# Run by .ci/run after the ctest suite (not beside it: the image build takes
# both cores for minutes). Exit 77 = SKIPPED, only without root or overlayfs.
#
# Environment: SOCKAGENT_COMPOSE_JOBS (compile jobs inside the image build,
# default 2), and scripts/docker-engine.sh's variables.
set -euo pipefail
cd "$(dirname "$0")/../.."
top="$PWD"

if [ "$(id -u)" != 0 ]; then
  echo "SKIPPED: needs root (it starts its own dockerd)"
  exit 77
fi
if ! grep -qw overlay /proc/filesystems && ! modprobe overlay 2>/dev/null; then
  echo "SKIPPED: the kernel has no overlayfs (dockerd's overlay2 storage needs it)"
  exit 77
fi
for tool in dockerd docker docker-compose debootstrap nft findmnt; do
  command -v "$tool" >/dev/null || {
    echo "FAILED: $tool is missing (scripts/setup.sh installs it)" >&2
    exit 1
  }
done

engine="$top/scripts/docker-engine.sh"
eval "$("$engine" env)"
project=sockagent-compose-test
work="$(mktemp -d /tmp/sockagent-compose.XXXXXX)"
chmod 0755 "$work"  # the agents and sockctl run as uid 10001
compose() { docker-compose -p "$project" -f "$top/docker-compose.yml" "$@"; }
# A fresh fleet token for this run, in place of examples/fleet.token.
head -c 32 /dev/urandom | base64 >"$work/fleet.token"
chmod 0644 "$work/fleet.token"
export SOCKAGENT_TOKEN_FILE="$work/fleet.token"

# What the host's network and mounts look like; the same after the test, or
# it fails. Address lifetimes and rule counters are not state.
snapshot() {
  {
    echo "## ip link"; ip -d link show
    echo "## ip addr"; ip addr show | grep -v 'valid_lft'
    echo "## ip -6 addr"; ip -6 addr show | grep -v 'valid_lft'
    echo "## ip route"; ip route show table all
    echo "## nft"; nft list ruleset
    if command -v iptables-save >/dev/null; then
      echo "## iptables"; iptables-save 2>/dev/null | grep -vE '^(#|:)' || true
      echo "## ip6tables"; ip6tables-save 2>/dev/null | grep -vE '^(#|:)' || true
    fi
    echo "## sysctl"; sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.forwarding
    echo "## mounts"; findmnt -rn -o TARGET,FSTYPE | sort
  } 2>&1
}
snapshot >"$work/before"

t0=$SECONDS
step_start=$SECONDS
timings=()
step() {  # step NAME: record how long the previous step took
  timings+=("$1=$((SECONDS - step_start))s")
  step_start=$SECONDS
}

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ] && [ -S "${DOCKER_HOST#unix://}" ]; then
    echo "--- agent logs (the test failed) ---"
    compose logs --no-color --tail 30 2>&1 | tail -120
  fi
  if [ -S "${DOCKER_HOST#unix://}" ]; then
    compose down --remove-orphans --timeout 5 >"$work/down.log" 2>&1 ||
      cat "$work/down.log" >&2
  fi
  "$engine" stop || rc=1
  snapshot >"$work/after"
  if ! diff -u "$work/before" "$work/after" >"$work/diff"; then
    echo "FAILED: the host's network or mounts changed (- before, + after):" >&2
    cat "$work/diff" >&2
    rc=1
  fi
  rm -rf "$work"
  echo "compose test: ${timings[*]} total=$((SECONDS - t0))s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAILED: $*" >&2; exit 1; }

"$engine" start
"$engine" base-image
step engine+base-image

# The image, built as the README says but with the host's network (the
# build needs the Debian mirror; compose networks have no way out).
echo "building the image (docker build --network host)"
DOCKER_BUILDKIT=0 docker build --network host \
  --build-arg JOBS="${SOCKAGENT_COMPOSE_JOBS:-2}" \
  -t sockagent:latest . >"$work/build.log" 2>&1 || {
  tail -40 "$work/build.log" >&2
  fail "docker build failed"
}
step build
# CPU time of the build (all its steps' containers): wall time on a shared
# machine says little, this says what a machine of its own would need.
timings+=("build_cpu=$("$engine" cpu-seconds)s")

compose up -d --no-build agent-a agent-b agent-c
step up

# Healthy: Docker's HEALTHCHECK (sockctl health inside each container).
deadline=$((SECONDS + 120))
for svc in agent-a agent-b agent-c; do
  id="$(compose ps -q "$svc")"
  [ -n "$id" ] || fail "$svc has no container"
  while :; do
    status="$(docker inspect -f '{{.State.Health.Status}}' "$id")"
    [ "$status" = healthy ] && break
    [ "$status" != unhealthy ] || fail "$svc is unhealthy"
    [ $SECONDS -lt $deadline ] || fail "$svc not healthy within 120 s (status $status)"
    sleep 0.5  # poll interval of a loop with a deadline
  done
done
step healthy

inv=(--inventory /etc/sockagent/inventory)
run() { compose run --rm --no-deps -T "$@"; }

out="$(run sockctl "${inv[@]}" info)" || { echo "$out" >&2; fail "sockctl info"; }
echo "$out"
for a in agent-a agent-b agent-c; do
  grep -q "^$a " <<<"$out" || fail "sockctl info has no row for $a"
done

# Every agent holds the servers of its --config (examples/config/agent.yaml).
out="$(run sockctl "${inv[@]}" server list)" || { echo "$out" >&2; fail "sockctl server list"; }
echo "$out"
for a in agent-a agent-b agent-c; do
  for name in echo echo-udp hello; do
    grep -qE "^$a +srv-[0-9]+ +$name " <<<"$out" ||
      fail "$a does not hold the server '$name' of examples/config/agent.yaml"
  done
done

printf '* * * OK\n' >"$work/expect"
chmod 0644 "$work/expect"
out="$(run -v "$work/expect:/etc/sockagent/expect:ro" sockctl "${inv[@]}" \
         matrix --tcp --udp --expect /etc/sockagent/expect --deadline 30s)" || {
  echo "$out" >&2
  fail "matrix --tcp --udp --expect: not every cell OK"
}
echo "$out"

# A greeting server on agent-a, reached from agent-b by its service name.
tok=(--token-file /run/secrets/sockagent_token)
a=(--agent agent-a:7878 "${tok[@]}")
b=(--agent agent-b:7878 "${tok[@]}")
srv="$(run sockctl "${a[@]}" --json server start --any --port 0 \
         --greeting 'hello from agent-a\n')" || fail "server start on agent-a"
read -r srv_id port < <(python3 -c '
import json, sys
s = json.loads(sys.stdin.read())["server"]
print(s["id"], s["localAddresses"][0]["port"])' <<<"$srv") ||
  fail "cannot read the server's id and port from: $srv"
if [ -z "$port" ] || [ "$port" = 0 ]; then fail "no bound port in: $srv"; fi
conn="$(run sockctl "${b[@]}" client open -q agent-a "$port")" ||
  fail "agent-b could not connect to agent-a:$port"
got="$(run sockctl "${b[@]}" recv --wait 5s "$conn")" || fail "recv on agent-b"
[ "$got" = "hello from agent-a" ] || fail "agent-b received '$got', not the greeting"
echo "agent-b reached agent-a:$port and got: $got"
run sockctl "${b[@]}" close "$conn" >/dev/null
run sockctl "${a[@]}" server stop "$srv_id" >/dev/null
step checks

compose down --remove-orphans --timeout 5
left="$(docker ps -aq)"
[ -z "$left" ] || fail "containers left after down: $left"
nets="$(docker network ls --format '{{.Name}}' | grep -vxE 'host|none' || true)"
[ -z "$nets" ] || fail "networks left after down: $nets"
step down
echo "PASSED: compose fleet up, healthy, info, matrix, agent-b -> agent-a, down"
