#!/bin/sh
# Writes a man page for PROGRAM with help2man, from its own --help and
# --version, plus INCLUDE (help2man's include format: [SECTION] then troff).
# With --verbs, also a VERBS section: every verb's `PROGRAM VERB... --help`,
# found by walking the "Subcommands:" lists of the help output.
#
#   gen_man.sh PROGRAM SECTION NAME INCLUDE OUT [--verbs]
set -eu
prog=$1 section=$2 name=$3 include=$4 out=$5 verbs=${6:-}
help2man=${HELP2MAN:-help2man}
extra=$(mktemp)
trap 'rm -f "$extra"' EXIT
cat "$include" > "$extra"

# Verbs listed under "Subcommands:" in the help of `prog "$@"`.
subcommands() {
  "$prog" "$@" --help 2>/dev/null |
    awk '/^Subcommands:/ { f = 1; next }
         f && /^  [a-z]/ { print $1; next }
         f && /^[^ ]/ { f = 0 }'
}

# Troff-safe text: backslashes, and lines starting with a control character.
escape() {
  sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

walk() {
  for verb in $(subcommands "$@"); do
    printf '.SS "%s"\n.nf\n' "$* $verb" | sed 's/" /"/'
    "$prog" "$@" "$verb" --help 2>/dev/null | escape
    printf '.fi\n'
    walk "$@" "$verb"
  done
}

if [ "$verbs" = --verbs ]; then
  printf '[VERBS]\nEach verb with its own options, as "%s VERB --help" prints them.\n' \
    "$(basename "$prog")" >> "$extra"
  walk >> "$extra"
fi

"$help2man" --no-info --section "$section" --name "$name" \
  --include "$extra" --output "$out" "$prog"
