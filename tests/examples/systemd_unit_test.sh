#!/usr/bin/env bash
# examples/systemd/sockagentd.service passes `systemd-analyze verify` with no
# complaint at all (unknown keys and bad values are only warnings there, so
# any output fails the test). verify wants ExecStart's binary to exist: the
# built sockagentd is put at /usr/local/bin inside a private mount namespace
# (a tmpfs there), so the host's /usr/local/bin is untouched. --man=no: the
# man pages need not be installed on the test machine.
#
#   systemd_unit_test.sh SOCKAGENTD_BINARY
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
unit="$root/examples/systemd/sockagentd.service"
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIPPED: systemd-analyze is not installed (package systemd)"; exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: needs root for a private mount namespace"; exit 77
fi
out=$(unshare --mount --fork bash -c '
  mount -t tmpfs tmpfs /usr/local/bin && cp "$1" /usr/local/bin/sockagentd &&
  systemd-analyze verify --man=no "$2" 2>&1' _ "$1" "$unit") || {
  echo "$out"; echo "FAIL: systemd-analyze verify failed"; exit 1; }
if [ -n "$out" ]; then
  echo "$out"; echo "FAIL: systemd-analyze verify complained"; exit 1
fi
grep -q '^ExecStart=/usr/local/bin/sockagentd ' "$unit"
echo "OK: $unit verifies cleanly"
