"""Helpers the bench scripts share (bench/proxy_bench.py, bench/tls_bench.py)."""
import os
import re
import subprocess
import threading


def start_agent(build):
    """Starts `sockagentd` of build dir `build` on 127.0.0.1, port 0, without
    auth; returns (process, "host:port"). Its stdout is drained after."""
    agent = subprocess.Popen(
        [os.path.join(build, "service/sockagentd"), "--listen",
         "127.0.0.1:0", "--insecure", "--log-level=warning"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in agent.stdout:
        m = re.search(r"serving on (\S+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in agent.stdout],
                             daemon=True).start()
            return agent, m.group(1)
    raise RuntimeError("sockagentd did not start")
