#!/usr/bin/env bash
# The image's build stage must configure with only what it copies: the paths
# its COPY lines name, and the cmake flags of its RUN line. (No Docker engine
# runs in the test suite; this catches a build stage that references a folder
# it never copied, e.g. bench/ with SOCKAGENT_BUILD_BENCH on; and a COPY
# source the whitelist .dockerignore keeps out of the build context.
# tests/compose/compose_up.sh builds the image for real, after the suite.)
set -euo pipefail
top="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# COPY lines of the build stage (up to the second FROM), "COPY SRC... DEST".
stage="$(awk '/^FROM /{n++} n==1' "$top/Dockerfile")"
copies=0
while read -r _ args; do
  read -r -a words <<<"$args"
  dest="${words[-1]}"
  for src in "${words[@]:0:${#words[@]}-1}"; do
    case "$src" in --*) continue ;; esac
    if [ "$dest" = "./" ] || [ "$dest" = "." ]; then
      cp -a "$top/$src" "$work/"
    else
      mkdir -p "$work/$(dirname "$dest")"
      cp -a "$top/$src" "$work/$dest"
    fi
    copies=$((copies + 1))
  done
done < <(grep -E '^COPY ' <<<"$stage")
[ "$copies" -gt 0 ] || { echo "no COPY line found in the build stage" >&2; exit 1; }
# .dockerignore excludes everything but what is listed with '!': every COPY
# source of the build stage must be listed, or the build context lacks it.
while read -r _ args; do
  read -r -a words <<<"$args"
  for src in "${words[@]:0:${#words[@]}-1}"; do
    case "$src" in --*) continue ;; esac
    grep -qxE "!${src%/}/?" "$top/.dockerignore" || {
      echo ".dockerignore does not let '$src' (a COPY source) into the build context: add '!$src'" >&2
      exit 1
    }
  done
done < <(grep -E '^COPY ' <<<"$stage")
# The -D flags of its cmake configure line.
flags=$(grep -oE -- '-D[A-Z_]+=[A-Za-z0-9_]+' <<<"$stage" | tr '\n' ' ')
echo "configuring a copy of $copies path(s) with: $flags"
# shellcheck disable=SC2086
cmake -S "$work" -B "$work/build" -G Ninja $flags >"$work/configure.log" 2>&1 || {
  cat "$work/configure.log" >&2
  echo "the Dockerfile's build stage does not configure with what it copies" >&2
  exit 1
}
echo "the Dockerfile's build stage configures"
