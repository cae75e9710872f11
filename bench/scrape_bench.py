#!/usr/bin/env python3
"""Benchmark 1a with Prometheus scraping the agent (issue 17).

Does a scrape of /metrics slow the data plane? One agent with
--metrics-listen holds a realistic amount of state (idle connections and
servers with per-server series), and benchmark 1a's writer (bench_load
tcp-write, 1 MiB writes into a `--discard` server) runs in interleaved rounds:
without a scraper, then with a scraper fetching /metrics every INTERVAL
seconds, then without, ... The line is the median of the per-round ratios
(scraped / unscraped) with their min-max, per interval; the issue's check is
the 1 s interval: its median must lie within the unscraped rounds' own spread.

  bench/scrape_bench.py [--build-dir build] [--rounds 5] [--bytes-mib 8192]
                        [--intervals 1,0.1] [--conns 1000] [--servers 16]

Needs sockagentd, sockctl and bench_load of one build (scripts/bench.sh
builds them in build-bench; `cmake --build build --target sockagentd sockctl
bench_load` works too). Loopback only.
"""
import argparse
import os
import socket
import statistics
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: Tools, Child, run_kv)

MiB = 1 << 20


class Scraper(threading.Thread):
    """GETs `url` every `interval` s until stopped; keeps each scrape's time."""

    def __init__(self, url, interval):
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.stop_event = threading.Event()
        self.seconds, self.sizes, self.errors = [], [], []

    def run(self):
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    body = r.read()
                self.sizes.append(len(body))
                self.seconds.append(time.monotonic() - t0)
            except OSError as e:
                self.errors.append(str(e))
            self.stop_event.wait(max(0.0, self.interval -
                                     (time.monotonic() - t0)))

    def stop(self):
        self.stop_event.set()
        self.join(15)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(run.REPO, "build"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bytes-mib", type=int, default=8192)
    ap.add_argument("--intervals", default="1,0.1")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--servers", type=int, default=16)
    args = ap.parse_args()
    t = run.Tools(args.build_dir)
    intervals = [float(x) for x in args.intervals.split(",")]

    # Both lines come at once: read them with one reader (Child's select()
    # would not see the second one, already in Python's buffer).
    agent = run.Child([t.agentd, "--listen", "127.0.0.1:0", "--insecure",
                       "--log-level=warning", "--metrics-listen",
                       "127.0.0.1:0"], "sockagentd metrics on")
    url = agent.line.split()[-1]
    addr = None
    for line in agent.proc.stdout:
        if line.startswith("sockagentd serving on"):
            addr = line.split()[-1]
            break
    if addr is None:
        raise run.BenchError("sockagentd exited before serving")
    held = []
    try:
        ctl = run.Agent.__new__(run.Agent)  # run.Agent's calls, our process.
        ctl.tools, ctl.child, ctl.addr = t, agent, addr
        # State for the scrape to describe: servers with per-server series,
        # each holding its share of idle connections.
        ports = []
        for i in range(args.servers):
            _, port = ctl.start_server("--tcp", "--hold", "--metrics",
                                       "--name", f"held-{i}")
            ports.append(port)
        for i in range(args.conns):
            s = socket.create_connection(("127.0.0.1", ports[i % len(ports)]))
            held.append(s)
        _, sink_port = ctl.start_server("--tcp", "--discard")
        size = args.bytes_mib * MiB
        writer = [t.load, "tcp-write", "127.0.0.1", str(sink_port), "--bytes",
                  str(size), "--chunk", str(MiB)]
        plain, scraped = [], {iv: [] for iv in intervals}
        scrapes = {iv: [] for iv in intervals}
        sizes = {iv: [] for iv in intervals}
        for r in range(args.rounds):
            for iv in intervals:
                plain.append(run.run_kv(writer)["bytes_per_sec"])
                sc = Scraper(url, iv)
                sc.start()
                rate = run.run_kv(writer)["bytes_per_sec"]
                sc.stop()
                if sc.errors:
                    raise run.BenchError(f"scrape failed: {sc.errors[0]}")
                if not sc.seconds:
                    raise run.BenchError("no scrape completed in a round")
                scraped[iv].append((rate, plain[-1]))
                scrapes[iv] += sc.seconds
                sizes[iv] += sc.sizes
            run.log(f"round {r + 1}/{args.rounds} done")
        lo, hi = min(plain), max(plain)
        print(f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — "
              "benchmark 1a under a metrics scrape")
        print()
        print(f"- agent: `{os.path.relpath(t.agentd, run.REPO)}` with "
              f"`--metrics-listen 127.0.0.1:0`, holding {args.conns} idle "
              f"connections on {args.servers} `--hold --metrics` servers")
        print(f"- writer: `bench_load tcp-write --bytes {size} --chunk "
              f"{MiB}` into a `--discard` server, {args.rounds} rounds, "
              "interleaved: unscraped, scraped, unscraped, ...")
        print(f"- unscraped: median {statistics.median(plain) / 1e9:.2f} GB/s "
              f"(min-max {lo / 1e9:.2f}-{hi / 1e9:.2f})")
        print()
        print("| scrape interval | scraped GB/s median (min-max) | ratio "
              "scraped/unscraped median (min-max) | within the unscraped "
              "spread | scrapes | scrape time median (max) | body bytes |")
        print("|---|---|---|---|---|---|---|")
        ok = True
        for iv in intervals:
            rates = [a for a, _ in scraped[iv]]
            ratios = [a / b for a, b in scraped[iv]]
            med = statistics.median(rates)
            within = med >= lo  # Not slower than the slowest unscraped round.
            if iv == 1.0:
                ok = within
            print(f"| {iv:g} s | {med / 1e9:.2f} ({min(rates) / 1e9:.2f}-"
                  f"{max(rates) / 1e9:.2f}) | {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f}) | "
                  f"{'yes' if within else 'NO'} | {len(scrapes[iv])} | "
                  f"{statistics.median(scrapes[iv]) * 1e3:.1f} ms "
                  f"({max(scrapes[iv]) * 1e3:.1f} ms) | "
                  f"{statistics.median(sizes[iv]):.0f} |")
        return 0 if ok else 1
    finally:
        for s in held:
            s.close()
        agent.stop()


if __name__ == "__main__":
    sys.exit(main())
