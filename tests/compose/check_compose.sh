#!/usr/bin/env bash
# docker-compose.yml must pass Debian's docker-compose 1.29 validation (no
# Docker engine runs on these machines, so the file is validated, not run;
# tests/multihost exercises the same topology in network namespaces).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v docker-compose >/dev/null; then
  echo "SKIPPED: docker-compose is not installed (scripts/setup.sh installs it)"
  exit 77
fi
docker-compose -f docker-compose.yml config -q
# The services the README documents are there.
services=$(docker-compose -f docker-compose.yml config --services | sort | tr '\n' ' ')
[ "$services" = "agent-a agent-b agent-c sockctl " ] || {
  echo "unexpected services: $services" >&2
  exit 1
}
echo "docker-compose.yml is valid: $services"
