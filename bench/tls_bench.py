#!/usr/bin/python3
"""TLS benchmark (issue 16): the agent's TLS servers against plain OpenSSL.

  bench/tls_bench.py --build-dir build [--rounds 3] [--mib 1024]
                     [--seconds 5] [--json OUT]

Lines (medians over interleaved rounds, both sides in the same run, the
same P-256 key and certificate):
  1. discard throughput: `bench_tls send` writes --mib MiB in 1 MiB
     SSL_writes (TLS 1.3, AES-128-GCM) to the agent's TLS discard server
     and to `bench_tls sink` (a blocking SSL_read loop, one connection at a
     time, for the whole run); ratio agent/sink.
  2. full handshakes per second: `openssl s_time -new` against the agent's
     TLS greeting server and against `openssl s_server`, connections per
     wall-clock second of the run; ratio, and each server's CPU per
     handshake (utime+stime from /proc/PID/stat).

Loopback only. Use a RelWithDebInfo build (--build-dir build).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from agent_util import start_agent

TLS_CIPHER = "TLS_AES_128_GCM_SHA256"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agent_server(build, address, cert, key, behaviour):
    out = subprocess.run(
        [os.path.join(build, "cli/sockctl"), "--agent", address, "-o", "addr",
         "server", "start", "--host", "127.0.0.1", "--ssl-cert", cert,
         "--ssl-key", key] + behaviour,
        check=True, capture_output=True, text=True).stdout.strip()
    return int(out.rsplit(":", 1)[1])


def send(build, port, mib):
    out = subprocess.run(
        [os.path.join(build, "bench/bench_tls"), "send", str(port), str(mib)],
        check=True, capture_output=True, text=True).stdout
    return float(re.search(r"([\d.]+) GB/s", out).group(1))


def sink(build, cert, key):
    p = subprocess.Popen(
        [os.path.join(build, "bench/bench_tls"), "sink", cert, key],
        stdout=subprocess.PIPE, text=True)
    port = int(re.search(r"port (\d+)", p.stdout.readline()).group(1))
    return p, port


def s_time(port, seconds):
    """Runs `openssl s_time -new` for `seconds`; returns (connections, wall
    seconds, client user seconds).

    The rate is connections per wall-clock second, timed here around the
    run. s_time's own headline, "connections/user sec", divides by the
    CLIENT's user CPU time: it measures s_time itself, not the server (the
    client is busy ~75 % of the wall time, waiting on the server the rest),
    and its "real seconds" line is whole seconds only."""
    start = time.monotonic()
    out = subprocess.run(
        ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
         "-time", str(seconds), "-ciphersuites", TLS_CIPHER],
        capture_output=True, text=True).stdout
    wall = time.monotonic() - start
    m = re.search(r"(\d+) connections in ([\d.]+)s", out)
    if not m:
        raise RuntimeError("s_time: " + out[-300:])
    return int(m.group(1)), wall, float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tls-bench-")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True)
    agent, address = start_agent(a.build_dir)
    results = {}
    try:
        discard = agent_server(a.build_dir, address, cert, key, ["--discard"])
        greeting = agent_server(a.build_dir, address, cert, key,
                                ["--greeting", "hi", "--close-after"])
        agent_rate, sink_rate = [], []
        ref_sink, sink_port = sink(a.build_dir, cert, key)
        threading.Thread(target=lambda: [None for _ in ref_sink.stdout],
                         daemon=True).start()
        try:
            for _ in range(a.rounds):
                agent_rate.append(send(a.build_dir, discard, a.mib))
                sink_rate.append(send(a.build_dir, sink_port, a.mib))
        finally:
            ref_sink.terminate()
            ref_sink.wait()
        results["discard_gbps"] = statistics.median(agent_rate)
        results["sink_gbps"] = statistics.median(sink_rate)
        print(f"1. TLS discard ({a.mib} MiB, 1 MiB writes, AES-128-GCM): "
              f"agent {results['discard_gbps']:.2f} GB/s, OpenSSL sink "
              f"{results['sink_gbps']:.2f} GB/s, ratio "
              f"{results['discard_gbps'] / results['sink_gbps']:.2f}",
              flush=True)
        agent_hs, ref_hs, agent_cpu, ref_cpu = [], [], [], []
        agent_client, ref_client = [], []
        for _ in range(a.rounds):
            before = cpu_seconds(agent.pid)
            n, secs, user = s_time(greeting, a.seconds)
            agent_hs.append(n / secs)
            agent_client.append(n / user)
            agent_cpu.append((cpu_seconds(agent.pid) - before) / max(n, 1))
            ref = subprocess.Popen(
                ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert",
                 cert, "-key", key, "-rev"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            port = None
            for line in ref.stdout:
                m = re.search(r"ACCEPT .*:(\d+)", line)
                if m:
                    port = int(m.group(1))
                    break
            threading.Thread(target=lambda: [None for _ in ref.stdout],
                             daemon=True).start()
            before = cpu_seconds(ref.pid)
            n, secs, user = s_time(port, a.seconds)
            ref_hs.append(n / secs)
            ref_client.append(n / user)
            ref_cpu.append((cpu_seconds(ref.pid) - before) / max(n, 1))
            ref.terminate()
            ref.wait()
        results["agent_handshakes_per_s"] = statistics.median(agent_hs)
        results["s_server_handshakes_per_s"] = statistics.median(ref_hs)
        results["agent_handshakes_per_s_min_max"] = [min(agent_hs),
                                                      max(agent_hs)]
        results["s_server_handshakes_per_s_min_max"] = [min(ref_hs),
                                                         max(ref_hs)]
        # s_time's own "connections/user sec" (per second of the client's
        # user CPU), for comparison with earlier runs.
        results["agent_s_time_per_user_s"] = statistics.median(agent_client)
        results["s_server_s_time_per_user_s"] = statistics.median(ref_client)
        results["agent_cpu_ms_per_handshake"] = 1e3 * statistics.median(
            agent_cpu)
        results["s_server_cpu_ms_per_handshake"] = 1e3 * statistics.median(
            ref_cpu)
        print(f"2. full handshakes (s_time -new, P-256): agent "
              f"{results['agent_handshakes_per_s']:.0f}/s "
              f"({results['agent_cpu_ms_per_handshake']:.2f} ms CPU each), "
              f"openssl s_server {results['s_server_handshakes_per_s']:.0f}/s "
              f"({results['s_server_cpu_ms_per_handshake']:.2f} ms CPU each), "
              f"ratio {results['agent_handshakes_per_s'] / results['s_server_handshakes_per_s']:.2f}"
              f" (per wall second; min-max agent "
              f"{min(agent_hs):.0f}-{max(agent_hs):.0f}, s_server "
              f"{min(ref_hs):.0f}-{max(ref_hs):.0f}; s_time's per client "
              f"user second: {results['agent_s_time_per_user_s']:.0f} vs "
              f"{results['s_server_s_time_per_user_s']:.0f})",
              flush=True)
    finally:
        agent.terminate()
        agent.wait()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
