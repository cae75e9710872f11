#!/usr/bin/python3
"""`sockctl perf` against iperf3 on the same path (loopback), interleaved.

  bench/perf_vs_iperf3.py --build-dir build-rel [--rounds 5] [--time 5]
                          [--udp-rate 1G] [--udp-length 1460] [--json OUT]

Two sockagentd agents (A sends, B receives with a discard server) and one
iperf3 server, all on 127.0.0.1. Each round runs, back to back:
  1. TCP, 1 stream, --time seconds: iperf3 -c vs sockctl perf; the
     receiver's bit rate of each (iperf3: end.sum_received).
  2. UDP at --udp-rate in --udp-length datagrams: iperf3 -u -b vs sockctl
     perf --udp --rate; the receiver's loss % and jitter (iperf3: end.sum,
     its server's counts).
Lines (medians over the rounds, both tools measured in the same run):
  tcp: sockctl X Gbit/s, iperf3 Y Gbit/s, ratio X/Y
  udp R: loss sockctl a% iperf3 b%; jitter sockctl c ms iperf3 d ms
Use a Release build; say what else ran on the machine (load average).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_util import start_agent  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def seconds(text):
    return float(text.rstrip("s")) if text else 0.0


def iperf3(args, seconds_run):
    port = free_port()
    # --forceflush: iperf3 buffers its output in a pipe otherwise, and the
    # "listening" line would never come.
    server = subprocess.Popen(
        ["iperf3", "-s", "-1", "--forceflush", "-p", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in server.stdout:
        if "listening" in line:
            break
    threading.Thread(target=server.stdout.read, daemon=True).start()
    try:
        out = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-J",
             "-t", str(seconds_run)] + args,
            capture_output=True, text=True, check=True,
            timeout=seconds_run + 30).stdout
    finally:
        server.wait(timeout=30)
    return json.loads(out)


def sockctl(build, a, b, args):
    out = subprocess.run(
        [os.path.join(build, "cli/sockctl"), "--agent", a, "--agent", b,
         "--timeout", "10s", "perf", "-o", "json"] + args,
        capture_output=True, text=True, check=True, timeout=120).stdout
    return json.loads(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build-dir", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--time", type=float, default=5)
    p.add_argument("--udp-rate", default="1G")
    p.add_argument("--udp-length", type=int, default=1460)
    p.add_argument("--json")
    args = p.parse_args()

    agent_a, addr_a = start_agent(args.build_dir)
    agent_b, addr_b = start_agent(args.build_dir)
    t = f"{args.time:g}s"
    rows = []
    try:
        for r in range(args.rounds):
            row = {}
            ip = iperf3([], args.time)
            row["iperf3_tcp_bps"] = ip["end"]["sum_received"]["bits_per_second"]
            row["iperf3_tcp_retr"] = ip["end"]["sum_sent"].get("retransmits", 0)
            sp = sockctl(args.build_dir, addr_a, addr_b, ["--time", t])
            row["sockctl_tcp_bps"] = sp["receiver"]["bitsPerSecond"]
            row["sockctl_tcp_retr"] = int(sp["sender"].get("retransmits", 0))

            ip = iperf3(["-u", "-b", args.udp_rate, "-l",
                         str(args.udp_length)], args.time)
            row["iperf3_udp_loss"] = ip["end"]["sum"]["lost_percent"]
            row["iperf3_udp_jitter_ms"] = ip["end"]["sum"]["jitter_ms"]
            row["iperf3_udp_bps"] = ip["end"]["sum"]["bits_per_second"]
            sp = sockctl(args.build_dir, addr_a, addr_b,
                         ["--udp", "--rate", args.udp_rate, "--length",
                          str(args.udp_length), "--time", t])
            rx = sp["receiver"]
            row["sockctl_udp_loss"] = rx.get("lossPercent", 0.0)
            row["sockctl_udp_jitter_ms"] = seconds(rx.get("jitter", "")) * 1e3
            row["sockctl_udp_bps"] = rx.get("bitsPerSecond", 0.0)
            rows.append(row)
            print(f"round {r + 1}: " + ", ".join(
                f"{k}={v:.4g}" for k, v in row.items()), file=sys.stderr)
    finally:
        for agent in (agent_a, agent_b):
            agent.terminate()
            agent.wait(timeout=30)

    def med(key):
        return statistics.median(row[key] for row in rows)

    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; {args.rounds} interleaved rounds of {t}")
    s, i = med("sockctl_tcp_bps"), med("iperf3_tcp_bps")
    print(f"tcp 1 stream: sockctl perf {s / 1e9:.2f} Gbit/s, iperf3 "
          f"{i / 1e9:.2f} Gbit/s, ratio {s / i:.2f} (retransmits "
          f"{med('sockctl_tcp_retr'):.0f} vs {med('iperf3_tcp_retr'):.0f})")
    print(f"udp {args.udp_rate}bit/s x {args.udp_length} B: loss sockctl "
          f"{med('sockctl_udp_loss'):.3f}% iperf3 "
          f"{med('iperf3_udp_loss'):.3f}%; jitter sockctl "
          f"{med('sockctl_udp_jitter_ms'):.4f} ms iperf3 "
          f"{med('iperf3_udp_jitter_ms'):.4f} ms; received "
          f"{med('sockctl_udp_bps') / 1e6:.0f} vs "
          f"{med('iperf3_udp_bps') / 1e6:.0f} Mbit/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": rows, "load": load}, f, indent=1)


if __name__ == "__main__":
    main()
