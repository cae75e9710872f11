#!/usr/bin/env python3
"""A/B: the same benchmarks on two builds, interleaved, to tell a change from noise.

  bench/ab.py --a build-old --b build-new [--only 1,4,5,6] [--rounds 5]
              [--quick] [--markdown PATH]

Each round runs bench/run.py once (one round) on build A and once on build B,
alternating which goes first (A B, B A, A B, ...), so drift over the run hits
both alike. For every benchmark line it reports our figure on A and on B
(median and min-max over the rounds) and says "within noise" when B's median
lies inside A's min-max (the refactoring rule of issue 14), else "better" or
"worse" by the line's direction. Our figure is compared, not the ratio to the
reference: both builds face the same reference in the same round; the
ratios are printed too.

Build the old commit with a worktree, e.g.:
  git worktree add /tmp/ab-old OLD && cmake -S /tmp/ab-old -B /tmp/ab-old/b \\
      -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/ab-old/b
(scripts/bench.sh builds build-bench/ the same way for the current tree.)

Exit code 0 when every run ran (whatever the figures), 1 otherwise.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run_once(build, only, quick, out):
    cmd = [sys.executable, os.path.join(HERE, "run.py"), "--build-dir", build,
           "--rounds", "1", "--only", only, "--json", out]
    if quick:
        cmd.append("--quick")
    print(f"[ab] {' '.join(cmd)}", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL)
    with open(out) as f:
        result = json.load(f)
    return done.returncode, result


def spread(values):
    return (statistics.median(values), min(values), max(values))


def higher_is_better(line):
    return line.get("higher_is_better", True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="build dir of the old commit")
    ap.add_argument("--b", required=True, help="build dir of the new commit")
    ap.add_argument("--only", default="1,4,5,6")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markdown", help="append the table to this file")
    args = ap.parse_args()

    figures = {"a": {}, "b": {}}  # side -> line num -> [ours], [ratio]
    meta = {}
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("a", "b") if r % 2 == 0 else ("b", "a")
            for side in order:
                build = args.a if side == "a" else args.b
                code, result = run_once(build, args.only, args.quick,
                                        os.path.join(tmp, f"{side}{r}.json"))
                failed |= code != 0
                for line in result["lines"]:
                    if line.get("skipped") or not line["ours"]:
                        continue
                    meta[line["num"]] = line
                    ours, ratios = figures[side].setdefault(
                        line["num"], ([], []))
                    ours.extend(line["ours"])
                    ratios.extend(line["ratios"])

    rows = [("line", "what", "A ours median (min-max)", "B ours median",
             "B/A", "verdict", "ratio to reference A | B")]
    for num in sorted(meta):
        if num not in figures["a"] or num not in figures["b"]:
            continue
        line = meta[num]
        a_med, a_min, a_max = spread(figures["a"][num][0])
        b_med = statistics.median(figures["b"][num][0])
        if a_min <= b_med <= a_max:
            verdict = "within noise"
        elif (b_med > a_max) == higher_is_better(line):
            verdict = "better"
        else:
            verdict = "worse"
        ra = statistics.median(figures["a"][num][1])
        rb = statistics.median(figures["b"][num][1])
        rows.append((num, line["name"],
                     f"{a_med:.4g} ({a_min:.4g}-{a_max:.4g}) {line['unit']}",
                     f"{b_med:.4g} {line['unit']}",
                     f"{b_med / a_med:.2f}" if a_med else "-", verdict,
                     f"{ra:.2f} | {rb:.2f}"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(f"\nA = `{args.a}`, B = `{args.b}`, {args.rounds} rounds "
                    "alternating A B / B A.\n\n")
            f.write("| " + " | ".join(rows[0]) + " |\n")
            f.write("|" + "---|" * len(rows[0]) + "\n")
            for row in rows[1:]:
                f.write("| " + " | ".join(str(c) for c in row) + " |\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
