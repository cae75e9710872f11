#!/usr/bin/env bash
# A private Docker engine for the compose test (tests/compose/compose_up.sh),
# started by hand (no systemd) in a mode that leaves the host's network alone:
# no default bridge, no iptables rules, no IP forwarding or masquerading, no
# IPv6, and container networks only from 198.18.0.0/15 (the benchmarking
# range, never 10/8, 172.16/12 or 192.168/16). Its data root lives outside the
# clone, so the base image and the layer cache survive between runs.
#
#   scripts/docker-engine.sh start        # dockerd in the background
#   scripts/docker-engine.sh base-image   # debian:12 (+ debian:12-slim)
#   scripts/docker-engine.sh stop         # stop it, unmount what it left
#   eval "$(scripts/docker-engine.sh env)"  # DOCKER_HOST for docker(-compose)
#
# No registry is reachable here, so the base image is made with
# `debootstrap --variant=minbase bookworm` from the Debian mirror apt uses
# and imported as debian:12 (tagged debian:12-slim too: the Dockerfile's
# runtime stage uses it). Containers on a compose network reach each other
# and nothing outside; image builds use `docker build --network host`.
#
# Environment: SOCKAGENT_DOCKER_ROOT (data, default
# /var/cache/sockagent-docker), SOCKAGENT_DOCKER_RUN (socket, pidfile, exec
# root; default /run/sockagent-docker), SOCKAGENT_DEBIAN_MIRROR (default:
# the first bookworm mirror in /etc/apt/sources.list{,.d}).
set -euo pipefail

root="${SOCKAGENT_DOCKER_ROOT:-/var/cache/sockagent-docker}"
run="${SOCKAGENT_DOCKER_RUN:-/run/sockagent-docker}"
sock="$run/docker.sock"
pidfile="$run/dockerd.pid"
log="$root/dockerd.log"
# Containers' cgroups go under /sockagent-docker in every hierarchy (not
# /docker, which a system Docker may use): `stop` removes them, and
# `cpu-seconds` reads what every container and build step used.
cgroup=sockagent-docker
export DOCKER_HOST="unix://$sock"

die() { echo "docker-engine: $*" >&2; exit 1; }

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# Every mount point under the engine's exec root or data root, deepest first.
engine_mounts() {
  findmnt -rn -o TARGET 2>/dev/null |
    awk -v a="$run" -v b="$root" \
      'index($0, a "/") == 1 || $0 == a || index($0, b "/") == 1' |
    sort -r
}

start() {
  [ "$(id -u)" = 0 ] || die "needs root (dockerd)"
  command -v dockerd >/dev/null || die "dockerd is missing (apt-get install docker.io)"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
    die "the kernel has no overlayfs"
  if running; then
    echo "docker-engine: already running (pid $(cat "$pidfile"))"
    return 0
  fi
  mkdir -p "$root/data" "$run"
  # Our own (empty) config file, so /etc/docker/daemon.json cannot add a
  # registry mirror, a bridge or iptables rules behind our back.
  echo '{}' >"$root/daemon.json"
  dockerd \
    --config-file "$root/daemon.json" \
    --data-root "$root/data" \
    --exec-root "$run/exec" \
    --pidfile "$pidfile" \
    -H "unix://$sock" \
    --storage-driver overlay2 \
    --bridge none \
    --iptables=false --ip6tables=false \
    --ip-forward=false --ip-masq=false \
    --ipv6=false \
    --default-address-pool base=198.19.0.0/16,size=24 \
    --cgroup-parent "/$cgroup" \
    >>"$log" 2>&1 </dev/null &
  local pid=$! deadline=$((SECONDS + 60))
  until docker version >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -20 "$log" >&2
      die "dockerd exited while starting (log: $log)"
    fi
    [ $SECONDS -lt $deadline ] || { tail -20 "$log" >&2; die "dockerd did not answer within 60 s"; }
    sleep 0.2  # poll interval of a loop with a deadline
  done
  echo "docker-engine: dockerd $pid on $sock (data root $root/data)"
}

stop() {
  if running; then
    local pid deadline
    pid="$(cat "$pidfile")"
    kill -TERM "$pid"
    deadline=$((SECONDS + 40))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
      sleep 0.2  # poll interval of a loop with a deadline
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "docker-engine: dockerd $pid ignored SIGTERM for 40 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # The containerd dockerd supervises exits with it; if it was killed,
  # end that one containerd too (by its own pidfile, never by name).
  local cpid="$run/exec/containerd/containerd.pid"
  if [ -f "$cpid" ] && kill -0 "$(cat "$cpid")" 2>/dev/null; then
    kill -TERM "$(cat "$cpid")" 2>/dev/null || true
  fi
  # dockerd leaves EXEC_ROOT/netns/default (and, after a crash, container
  # mounts) mounted: unmount everything under its roots.
  local m
  while read -r m; do
    [ -n "$m" ] || continue
    umount "$m" 2>/dev/null || umount -l "$m" || echo "docker-engine: could not unmount $m" >&2
  done < <(engine_mounts)
  if [ -n "$(engine_mounts)" ]; then
    die "mounts left under $run or $root: $(engine_mounts | tr '\n' ' ')"
  fi
  rm -rf "$run"
  # The (now empty) cgroups of its containers, deepest first; rmdir only
  # removes empty ones.
  local d
  while read -r d; do
    rmdir "$d" 2>/dev/null || echo "docker-engine: cgroup $d is not empty" >&2
  done < <(find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name "$cgroup" \
             -exec find {} -depth -type d \; 2>/dev/null)
  echo "docker-engine: stopped"
}

debian_mirror() {
  if [ -n "${SOCKAGENT_DEBIAN_MIRROR:-}" ]; then
    echo "$SOCKAGENT_DEBIAN_MIRROR"
    return
  fi
  local m
  # deb822 .sources files: the URIs of the stanza whose Suites has bookworm.
  m=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ {
             if (match($0, /URIs:[ \t]*[^ \t\n]+/)) {
               s = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  if [ -z "$m" ]; then
    m=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' \
          /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1)
  fi
  [ -n "$m" ] || die "no bookworm mirror in /etc/apt/sources.list*; set SOCKAGENT_DEBIAN_MIRROR"
  echo "$m"
}

base_image() {
  running || die "dockerd is not running (scripts/docker-engine.sh start)"
  if docker image inspect debian:12 >/dev/null 2>&1; then
    docker image inspect debian:12-slim >/dev/null 2>&1 || docker tag debian:12 debian:12-slim
    echo "docker-engine: debian:12 is there"
    return 0
  fi
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  local mirror dir
  mirror="$(debian_mirror)"
  dir="$root/rootfs.tmp"
  rm -rf "$dir"
  echo "docker-engine: debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$root/debootstrap.log" 2>&1 || {
    tail -20 "$root/debootstrap.log" >&2
    rm -rf "$dir"
    die "debootstrap failed (log: $root/debootstrap.log)"
  }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | docker import --change 'CMD ["bash"]' - debian:12 >/dev/null
  docker tag debian:12 debian:12-slim
  rm -rf "$dir"
  echo "docker-engine: imported debian:12 (and debian:12-slim)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  base-image) base_image ;;
  env) echo "export DOCKER_HOST=unix://$sock" ;;
  cpu-seconds)  # CPU time used by containers and build steps since start
    u=$(cat "/sys/fs/cgroup/cpuacct/$cgroup/cpuacct.usage" 2>/dev/null ||
        awk '/^usage_usec/ { print $2 * 1000 }' "/sys/fs/cgroup/$cgroup/cpu.stat" 2>/dev/null ||
        echo 0)
    echo $((u / 1000000000)) ;;
  *) echo "usage: $0 start|stop|base-image|env|cpu-seconds" >&2; exit 2 ;;
esac
