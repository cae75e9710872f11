#!/usr/bin/python3
"""Proxy benchmark: sockagent's proxy behaviour against socat, interleaved.

  bench/proxy_bench.py --build-dir build [--rounds 5] [--mib 1024]
                       [--pairs 1000] [--json OUT]

Lines (each a median over interleaved rounds, both tools in the same run):
  1. throughput: one client writes --mib MiB (1 MiB writes) through the
     proxy to a sink that reads with 1 MiB buffers; sockagent vs
     `socat TCP-LISTEN:P,fork,reuseaddr TCP:upstream` (as the issue says,
     socat's default 8 KiB buffer) and vs socat -b 1048576; ratio printed.
  2. added round-trip latency: 2,000 one-byte ping-pongs through the proxy
     to an echo upstream, p50 and p99, minus the direct round trip's p50.
  3. memory: --pairs concurrent proxied connections held open (upstream
     accepts and holds); the agent's RSS before and after, per pair.
     Use a RelWithDebInfo build (ASan's RSS says nothing).

Loopback only; the agent and socat run as children and are stopped at the
end. Python peers use big buffers so they are not the bottleneck on
throughput (the GIL is released in send/recv).
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading

from agent_util import start_agent
import time

MIB = 1 << 20


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


class Sink:
    """Accepts connections; reads and counts (or echoes, or holds)."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.done = threading.Event()
        self.received = 0
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.mode == "hold":
                self.held.append(conn)
                continue
            threading.Thread(target=self.serve, args=(conn,),
                             daemon=True).start()

    def serve(self, conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(MIB)
        view = memoryview(buf)
        while True:
            n = conn.recv_into(view)
            if n == 0:
                break
            if self.mode == "echo":
                conn.sendall(view[:n])
            else:
                self.received += n
        conn.close()
        self.done.set()


def throughput(port, total):
    c = socket.create_connection(("127.0.0.1", port))
    chunk = b"x" * MIB
    start = time.perf_counter()
    sent = 0
    while sent < total:
        c.sendall(chunk)
        sent += len(chunk)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)  # EOF once the sink closed: every byte went through.
    elapsed = time.perf_counter() - start
    c.close()
    return total / elapsed / 1e9


def round_trips(port, n=2000):
    c = socket.create_connection(("127.0.0.1", port))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for _ in range(n):
        t = time.perf_counter_ns()
        c.sendall(b"p")
        if c.recv(1) != b"p":
            raise RuntimeError("echo lost")
        times.append((time.perf_counter_ns() - t) / 1000.0)
    c.close()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def agent_proxy(build, address, upstream_port):
    out = subprocess.run(
        [os.path.join(build, "cli/sockctl"), "--agent", address, "-o", "addr",
         "proxy", "start", "--listen", "127.0.0.1:0", "--upstream",
         f"127.0.0.1:{upstream_port}"],
        check=True, capture_output=True, text=True).stdout.strip()
    return int(out.rsplit(":", 1)[1])


def socat_proxy(upstream_port, big):
    port = free_port()
    cmd = ["socat"] + (["-b", "1048576"] if big else []) + [
        f"TCP-LISTEN:{port},fork,reuseaddr,bind=127.0.0.1",
        f"TCP:127.0.0.1:{upstream_port}"]
    p = subprocess.Popen(cmd)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return p, port
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("socat did not listen")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--json")
    args = ap.parse_args()

    agent, address = start_agent(args.build_dir)
    results = {}
    try:
        sink = Sink("count")
        echo = Sink("echo")
        ours_sink = agent_proxy(args.build_dir, address, sink.port)
        ours_echo = agent_proxy(args.build_dir, address, echo.port)
        socat_sink, socat_sink_port = socat_proxy(sink.port, big=False)
        socat_big, socat_big_port = socat_proxy(sink.port, big=True)
        socat_echo, socat_echo_port = socat_proxy(echo.port, big=False)
        total = args.mib * MIB
        tp = {"sockagent": [], "socat": [], "socat -b 1M": []}
        lat = {"direct": [], "sockagent": [], "socat": []}
        for r in range(args.rounds):
            order = [("sockagent", ours_sink), ("socat", socat_sink_port),
                     ("socat -b 1M", socat_big_port)]
            if r % 2:
                order.reverse()
            for name, port in order:
                tp[name].append(throughput(port, total))
            lorder = [("direct", echo.port), ("sockagent", ours_echo),
                      ("socat", socat_echo_port)]
            if r % 2:
                lorder.reverse()
            for name, port in lorder:
                lat[name].append(round_trips(port))
        for name, v in tp.items():
            results[f"throughput {name} GB/s"] = statistics.median(v)
            print(f"throughput {args.mib} MiB via {name}: "
                  f"{statistics.median(v):.2f} GB/s (min {min(v):.2f}, "
                  f"max {max(v):.2f})")
        print(f"ratio sockagent/socat: "
              f"{results['throughput sockagent GB/s'] / results['throughput socat GB/s']:.2f}x; "
              f"sockagent/socat -b 1M: "
              f"{results['throughput sockagent GB/s'] / results['throughput socat -b 1M GB/s']:.2f}x")
        direct = statistics.median(p50 for p50, _ in lat["direct"])
        for name, v in lat.items():
            p50 = statistics.median(a for a, _ in v)
            p99 = statistics.median(b for _, b in v)
            results[f"rtt p50 {name} us"] = p50
            results[f"rtt p99 {name} us"] = p99
            print(f"round trip via {name}: p50 {p50:.1f} us, p99 {p99:.1f} us"
                  f", added p50 {p50 - direct:.1f} us")
        for p in (socat_sink, socat_big, socat_echo):
            p.terminate()
            p.wait()

        # Memory: pairs held open through the proxy, on a fresh agent (the
        # first one's heap kept what the throughput rounds freed, which new
        # pairs would reuse without growing RSS).
        agent.terminate()
        agent.wait()
        agent, address = start_agent(args.build_dir)
        hold = Sink("hold")
        ours_hold = agent_proxy(args.build_dir, address, hold.port)
        time.sleep(0.5)
        before = rss_bytes(agent.pid)
        clients = []
        for _ in range(args.pairs):
            clients.append(socket.create_connection(("127.0.0.1", ours_hold)))
        deadline = time.time() + 30
        while len(hold.held) < args.pairs and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        after = rss_bytes(agent.pid)
        per_pair = (after - before) / max(1, args.pairs)
        results["pairs"] = len(hold.held)
        results["rss per pair bytes"] = per_pair
        print(f"{len(hold.held)} proxied pairs held: RSS {before / MIB:.1f} -> "
              f"{after / MIB:.1f} MiB, {per_pair:.0f} bytes per pair "
              f"(two sockets, two connection records)")
        for c in clients:
            c.close()
    finally:
        agent.terminate()
        agent.wait()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
