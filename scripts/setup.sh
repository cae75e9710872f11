#!/usr/bin/env bash
# Installs the Debian 12 packages sockagent needs (only those missing), then
# configures and builds. Idempotent and non-interactive.
#
#   scripts/setup.sh [--sanitize|--fuzz] [--build-dir DIR] [--target T]...
#                    [--no-build]
#
# --sanitize builds with AddressSanitizer + UndefinedBehaviorSanitizer (what
# the test command uses). --fuzz builds the libFuzzer target with clang
# (ASan+UBSan too, no tests, no CLI). The default build dir is build/
# (build-asan/ with --sanitize, build-fuzz/ with --fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=OFF
fuzz=OFF
build_dir=""
build=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=ON ;;
    --fuzz) fuzz=ON ;;
    --build-dir) build_dir="$2"; shift ;;
    --target) targets+=(--target "$2"); shift ;;
    --no-build) build=0 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$build_dir" ]; then
  if [ "$fuzz" = ON ]; then build_dir=build-fuzz
  elif [ "$sanitize" = ON ]; then build_dir=build-asan
  else build_dir=build; fi
fi

# Build: compilers, CMake, the libraries. Tests: python3 and socat as
# independent peers, iproute2 for network namespaces, nftables for firewall
# rules inside them, util-linux (setpriv) to drop privileges, openssl to
# make the TLS tests' certificates at test time, docker-compose
# (installed without the Docker engine) to validate docker-compose.yml.
# python3-grpcio and python3-protobuf run the API's Python clients
# (scripts/gen_python_stubs.sh makes their stubs at test time).
# Fuzzing: clang with its libFuzzer/sanitizer runtime.
# Benchmarks (scripts/bench.sh): iperf3 as an absolute TCP reference.
# python3-yaml: tests/e2e/cli_output_test.cc reads sockctl -o yaml back.
# libyaml-cpp-dev: proto/yaml_proto.cc (config files onto the API's messages).
packages=(
  cmake ninja-build g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libc-ares-dev libasio-dev libcli11-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-h2 python3-grpcio python3-protobuf socat iproute2 nftables util-linux docker-compose openssl help2man
  clang libclang-rt-14-dev iperf3
  python3-yaml libyaml-cpp-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
# Node.js and npm (the npm registry's test tools below) from Debian, unless
# the machine already has an npm.
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: run as root to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Node packages, each pinned by a committed package-lock.json into a
# git-ignored node_modules/: the Kubernetes manifest validator (tools/k8s),
# buf (tools/buf, the API's lint and breaking-change tests) and the Node
# client example (examples/node). `npm ci` runs only when the lockfile
# changed since the last install, so reruns need no network; when it fails
# (offline) setup goes on and the tests that need the packages fail saying
# what is missing.
for dir in tools/k8s tools/buf examples/node; do
  [ -f "$dir/package-lock.json" ] || continue
  stamp="$dir/node_modules/.sockagent-installed-lock"
  cmp -s "$dir/package-lock.json" "$stamp" 2>/dev/null && continue
  echo "setup: npm ci in $dir"
  if (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error); then
    cp "$dir/package-lock.json" "$stamp"
  else
    echo "setup: npm ci in $dir failed; its tests will fail until it succeeds" >&2
  fi
done

[ "$build" = 1 ] || exit 0
if [ ! -f "$build_dir/build.ninja" ]; then
  if [ "$fuzz" = ON ]; then
    CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DSOCKAGENT_BUILD_FUZZ=ON \
      -DSOCKAGENT_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
  else
    cmake -S . -B "$build_dir" -G Ninja -DSOCKAGENT_SANITIZE="$sanitize" \
      -DCMAKE_BUILD_TYPE="$([ "$sanitize" = ON ] && echo Debug || echo RelWithDebInfo)"
  fi
fi
cmake --build "$build_dir" "${targets[@]}"
