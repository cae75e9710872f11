#!/usr/bin/python3
"""Matrix scale benchmark: `sockctl matrix` over N agents in namespaces.

  bench/matrix_scale.py --build-dir build-bench [--agents 8,32,64,128]
                        [--timeout-per-probe 1s] [--json OUT]

For each N it builds N agent namespaces and a CLI namespace on one bridge
(its own namespace), with addresses in 198.18.9.0/24 that exist only inside
them and permanent neighbour entries (a fully meshed fleet would otherwise
overflow the kernel's shared ARP table at ~1,024 learned entries). Then:

  1. `matrix --tcp --udp` all OK: wall time of the sockctl run, its probing
     time (sockctl -v), sockctl's CPU and all agents' CPU;
  2. the same with one agent firewalled (nft drops the echo port): the extra
     probing time against one --timeout-per-probe;
  3. the same firewalled run with --expect '* LAST * TIMEOUT' (converges)
     and with an unmeetable --expect and --deadline 3s: how far past the
     deadline probing ended.

Targets (issue 18, 2 cores): 64 agents TCP+UDP (8,064 probes) <= 1.5 s, 128
agents <= 5 s, one firewalled agent adds <= 1 probe timeout, the deadline
within +-100 ms. Run as root on a Release build (RSS and CPU figures of an
ASan build say nothing). Everything it creates is removed on the way out,
also on Ctrl-C.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

SUBNET = "198.18.9."
PORT = 9100
TOKEN = "matrix-scale-bench-token-5d2c"


def sh(argv, stdin=None, check=True):
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r


def mac(i):
    return "02:5b:09:00:%02x:%02x" % (i >> 8, i & 0xFF)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


class Fleet:
    def __init__(self, build, n):
        self.build = build
        self.n = n
        self.tag = f"{os.getpid() % 100000}"
        self.bridge = f"smb-{self.tag}"
        self.nodes = [f"sm{self.tag}-{i}" for i in range(n + 1)]  # last: cli
        self.agents = []
        self.dir = tempfile.mkdtemp(prefix="matrix-scale-")
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(self.token_file, 0o600)

    def ip(self, i):
        return f"{SUBNET}{11 + i}"

    def ns(self, i):
        return ["ip", "netns", "exec", self.nodes[i]]

    def up(self):
        sh(["ip", "netns", "add", self.bridge])
        batch = "link add br0 type bridge\nlink set br0 up\n"
        for i, node in enumerate(self.nodes):
            sh(["ip", "netns", "add", node])
            inside, outside = f"smv{self.tag}x{i}", f"smb{self.tag}x{i}"
            sh(["ip", "link", "add", inside, "address", mac(i), "type", "veth",
                "peer", "name", outside])
            sh(["ip", "link", "set", inside, "netns", node])
            sh(["ip", "link", "set", outside, "netns", self.bridge])
            batch += f"link set {outside} master br0\nlink set {outside} up\n"
            lines = (f"link set lo up\nlink set {inside} name eth0\n"
                     f"addr add {self.ip(i)}/24 dev eth0\nlink set eth0 up\n")
            for j in range(len(self.nodes)):
                if j != i:
                    lines += (f"neigh replace {self.ip(j)} lladdr {mac(j)} "
                              "dev eth0 nud permanent\n")
            sh(self.ns(i) + ["ip", "-batch", "-"], stdin=lines)
        sh(["ip", "netns", "exec", self.bridge, "ip", "-batch", "-"],
           stdin=batch)
        daemon = os.path.join(self.build, "service/sockagentd")
        for i in range(self.n):
            p = subprocess.Popen(
                self.ns(i) + [daemon, f"--listen={self.ip(i)}:7878",
                              f"--token-file={self.token_file}",
                              "--log-level=warning"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.agents.append(p)
        for p in self.agents:
            for line in p.stdout:
                if "serving on" in line:
                    break
            else:
                raise RuntimeError("an agent did not start")
        self.inventory = os.path.join(self.dir, "inventory")
        with open(self.inventory, "w") as f:
            for i in range(self.n):
                f.write(f"agent-{i:03d} {self.ip(i)}:7878 "
                        f"token-file={self.token_file}\n")

    def agent_pids(self):
        # `ip netns exec` execs the daemon: the Popen pid is the agent's.
        return [p.pid for p in self.agents]

    def matrix(self, extra, per_probe):
        argv = self.ns(self.n) + [
            os.path.join(self.build, "cli/sockctl"), "--timeout", "30s",
            "--inventory", self.inventory, "matrix", "--tcp", "--udp",
            "--port", str(PORT), "--timeout-per-probe", per_probe,
            "-v"] + extra
        before_agents = sum(cpu_seconds(p) for p in self.agent_pids())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        agents_cpu = sum(cpu_seconds(p) for p in self.agent_pids()) - \
            before_agents
        m = re.search(r"probing took ([0-9.]+)s", r.stderr)
        return {
            "exit": r.returncode,
            "wall_s": round(wall, 3),
            "probing_s": float(m.group(1)) if m else None,
            "sockctl_cpu_s": round((after.ru_utime + after.ru_stime) -
                                   (before.ru_utime + before.ru_stime), 3),
            "agents_cpu_s": round(agents_cpu, 3),
            "stderr_tail": r.stderr.strip().splitlines()[-3:],
        }

    def firewall(self, on):
        last = self.ns(self.n - 1)
        if on:
            sh(last + ["nft", "add", "table", "inet", "msbench"])
            sh(last + ["nft", "add", "chain", "inet", "msbench", "input",
                       "{ type filter hook input priority 0; policy accept; }"])
            sh(last + ["nft", "add", "rule", "inet", "msbench", "input", "th",
                       "dport", str(PORT), "drop"])
        else:
            sh(last + ["nft", "delete", "table", "inet", "msbench"],
               check=False)

    def down(self):
        for p in self.agents:
            p.terminate()
        for p in self.agents:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for node in self.nodes + [self.bridge]:
            sh(["ip", "netns", "del", node], check=False)
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build-bench")
    ap.add_argument("--agents", default="8,32,64,128")
    ap.add_argument("--timeout-per-probe", default="1s")
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("matrix_scale.py: needs root (network namespaces)")
    per_probe = args.timeout_per_probe
    results = []
    for n in [int(x) for x in args.agents.split(",")]:
        fleet = Fleet(args.build_dir, n)
        try:
            t0 = time.monotonic()
            fleet.up()
            setup = time.monotonic() - t0
            ok = fleet.matrix([], per_probe)
            fleet.firewall(True)
            walled = fleet.matrix([], per_probe)
            expect = os.path.join(fleet.dir, "expect")
            with open(expect, "w") as f:
                f.write(f"* agent-{n - 1:03d} * TIMEOUT\n")
            converged = fleet.matrix(["--expect", expect, "--deadline", "30s"],
                                     per_probe)
            unmet = os.path.join(fleet.dir, "unmet")
            with open(unmet, "w") as f:
                f.write("# every cell OK\n")
            deadline = fleet.matrix(["--expect", unmet, "--deadline", "3s"],
                                    per_probe)
            fleet.firewall(False)
        finally:
            fleet.down()
        row = {"agents": n, "probes": n * (n - 1) * 2,
               "setup_s": round(setup, 1), "all_ok": ok, "firewalled": walled,
               "converged": converged, "deadline_3s": deadline}
        results.append(row)
        extra = (walled["probing_s"] or 0) - (ok["probing_s"] or 0)
        print(f"N={n:4d} probes={row['probes']:6d} all-OK exit={ok['exit']} "
              f"probing={ok['probing_s']}s wall={ok['wall_s']}s "
              f"sockctl-cpu={ok['sockctl_cpu_s']}s "
              f"agents-cpu={ok['agents_cpu_s']}s | firewalled "
              f"exit={walled['exit']} +{extra:.3f}s (probe timeout "
              f"{per_probe}) | converged exit={converged['exit']} "
              f"{converged['probing_s']}s | 3s deadline exit="
              f"{deadline['exit']} probing={deadline['probing_s']}s",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
