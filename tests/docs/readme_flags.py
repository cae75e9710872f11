#!/usr/bin/python3
"""README's sockagentd flag table says what `sockagentd --help` says.

    readme_flags.py README.md SOCKAGENTD

Every flag --help lists has a row in the table under "## sockagentd" and
every flag of the table exists; where the README's default is a number, a
size (4 MiB), a duration (60s, 30m) or a boolean, it equals --help's
default. Words such as "none", "unset (anything)" or "owner-only UNIX
socket" describe an empty default and are not compared. Exit 0 or 1 with
every difference listed.
"""

import re
import subprocess
import sys

SIZE_UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def help_flags(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True,
                         check=True).stdout
    flags = {}
    for line in out.splitlines():
        m = re.match(r"^  (--[a-z0-9-]+) \(default (.*)\)$", line)
        if m:
            flags[m.group(1)] = m.group(2).strip('"')
    if not flags:
        raise SystemExit("no flag found in `sockagentd --help`:\n" + out)
    return flags


def readme_rows(path):
    text = open(path).read()
    start = text.index("\n## sockagentd\n")
    end = text.index("\n## ", start + 1)
    rows = []
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `--") or len(cells) < 3:
            continue
        names = re.findall(r"`(--[a-z0-9-]+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(",")]
        rows.append((names, defaults))
    return rows


def normalize(value):
    """A comparable form of a default, or None when it is words."""
    v = value.strip().strip("`")
    if v in ("true", "false"):
        return v
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)?", v)
    if m:
        return float(m.group(1)) * SIZE_UNITS[m.group(2) or ""]
    m = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:ms|s|m|h))+)", v)
    if m:
        return sum(float(n) * DURATION_UNITS[u]
                   for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", v))
    return None


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    flags = help_flags(sys.argv[2])
    problems = []
    documented = set()
    for names, defaults in readme_rows(sys.argv[1]):
        for i, name in enumerate(names):
            documented.add(name)
            if name not in flags:
                problems.append(f"README documents {name}, which sockagentd does not have")
                continue
            readme_default = defaults[i] if len(defaults) == len(names) else defaults[0]
            want = normalize(readme_default)
            have = normalize(flags[name]) if flags[name] else None
            if want is not None and want != have:
                problems.append(f"{name}: README says the default is {readme_default!r}, "
                                f"--help says {flags[name]!r}")
    for name in sorted(set(flags) - documented):
        problems.append(f"{name} (default {flags[name]!r}) has no row in README's flag table")
    for p in problems:
        print("FAIL", p)
    print(f"{len(flags)} flags in --help, {len(documented)} in README, {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
