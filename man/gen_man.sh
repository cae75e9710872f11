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

# Verbs listed under "Subcommands:" in help text on stdin.
subcommands() {
  awk '/^Subcommands:/ { f = 1; next }
       f && /^  [a-z]/ { print $1; next }
       f && /^[^ ]/ { f = 0 }'
}

# Troff-safe text: backslashes, and lines starting with a control character.
escape() {
  sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

# Every verb below "$@", given the help text of "$@": one --help run per
# verb (a sanitizer build starts in ~0.5 s), its text both printed and
# searched for the verb's own subcommands. (sh has no locals: each variable
# is used before the recursive call.)
walk() {
  text=$1
  shift
  for verb in $(printf '%s\n' "$text" | subcommands); do
    printf '.SS "%s"\n.nf\n' "$* $verb" | sed 's/" /"/'
    sub=$("$prog" "$@" "$verb" --help 2>/dev/null)
    printf '%s\n' "$sub" | escape
    printf '.fi\n'
    walk "$sub" "$@" "$verb"
  done
}

if [ "$verbs" = --verbs ]; then
  printf '[VERBS]\nEach verb with its own options, as "%s VERB --help" prints them.\n' \
    "$(basename "$prog")" >> "$extra"
  walk "$("$prog" --help 2>/dev/null)" >> "$extra"
fi

"$help2man" --no-info --section "$section" --name "$name" \
  --include "$extra" --output "$out" "$prog"
