#!/bin/sh
# `cmake --install` into a temporary prefix: both binaries, both man pages
# (rendered by man -l, so a broken troff page fails) and the completion
# scripts land where packagers and bash-completion expect them.
#   check_install.sh BUILD_DIR
set -eu
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! command -v help2man >/dev/null; then
  echo "help2man is not installed (scripts/setup.sh installs it)" >&2
  exit 77
fi
# No build here: a test must not relink binaries other tests are running
# (the targets are part of ALL, so a full build made them).
cmake --install "$build" --prefix "$prefix" >/dev/null

for f in bin/sockctl sbin/sockagentd; do
  [ -x "$prefix/$f" ] || fail "$f not installed"
done
man1=$prefix/share/man/man1/sockctl.1
man8=$prefix/share/man/man8/sockagentd.8
[ -f "$man1" ] || fail "sockctl.1 not installed"
[ -f "$man8" ] || fail "sockagentd.8 not installed"
head -20 "$man1" | grep -q '^\.TH SOCKCTL "1"' || fail "sockctl.1 has no .TH header"
head -20 "$man8" | grep -q '^\.TH SOCKAGENTD "8"' || fail "sockagentd.8 has no .TH header"

# Rendered: the sections help2man and our includes add, and the verbs.
render() { MANWIDTH=100 man -l "$1" 2>&1; }
out=$(render "$man1")
for want in NAME SYNOPSIS OPTIONS VERBS EXAMPLES "SEE ALSO" "server start" \
            "listen" "--keep-open" "sockctl 0."; do
  printf '%s' "$out" | grep -q -- "$want" || fail "sockctl(1) lacks '$want'"
done
out=$(render "$man8")
for want in NAME SYNOPSIS "--listen" "--insecure" SIGNALS "SEE ALSO" \
            "sockagentd 0."; do
  printf '%s' "$out" | grep -q -- "$want" || fail "sockagentd(8) lacks '$want'"
done
# man warns about troff it cannot handle.
for page in "$man1" "$man8"; do
  warnings=$(MANWIDTH=100 man --warnings -l "$page" 2>&1 >/dev/null || true)
  [ -z "$warnings" ] || fail "$page: $warnings"
done

bash_completion=$prefix/share/bash-completion/completions/sockctl
[ -f "$bash_completion" ] || fail "bash completion not installed"
[ -f "$prefix/share/zsh/vendor-completions/_sockctl" ] || fail "zsh completion not installed"
bash -c ". '$bash_completion' && complete -p sockctl" | grep -q '_sockctl' \
  || fail "the bash completion does not register for sockctl"
echo "install OK: $prefix"
