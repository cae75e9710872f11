#!/usr/bin/python3
"""Runs every ```sh block of README.md verbatim, against real binaries.

    readme_blocks.py README.md BIN_DIR   (BIN_DIR/service/sockagentd, BIN_DIR/cli/sockctl)

Each block runs with `bash -euo pipefail` in a private mount and network
namespace (unshare), so the README's fixed ports (5000, 7878, ...) and the
agent's default socket (/run/sockagent/sockagentd.sock, on a private tmpfs)
belong to this test alone, and nothing leaves the namespace's loopback.
Before each block a fresh sockagentd serves the default socket, as after
`bash scripts/demo.sh`; /etc/sockagent is a private tmpfs holding
agent.token, the token file the README's examples name.

An HTML comment on the line just before a block's fence steers it:
    <!-- readme-test: skip: REASON -->   not run here; REASON says where it is covered
    <!-- readme-test: serves -->         the block ends in a daemon in the foreground:
                                         it must print "sockagentd serving on", then is stopped
    <!-- readme-test: expect=TEXT -->    the block's output must contain TEXT (repeatable,
                                         several in one comment separated by " | ")
Blocks fenced without `sh` (usage lines, logs, messages) are examples of
output and are not run. Exit 0 when every block passed, 1 otherwise, 77 when
not root (namespaces need it).
"""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MARKER = "SOCKAGENT_README_NS"
BLOCK_TIMEOUT_S = 120
START_TIMEOUT_S = 30


def parse_blocks(text):
    """[(line_number, directives dict, code)] for each ```sh block."""
    blocks = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start = i
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j == len(lines):
                raise SystemExit(f"README line {start + 1}: unterminated ```sh block")
            directives = {"skip": None, "serves": False, "expect": []}
            k = start - 1
            while k >= 0 and lines[k].startswith("<!-- readme-test:"):
                body = lines[k][len("<!-- readme-test:"):].rstrip()
                if not body.endswith("-->"):
                    raise SystemExit(f"README line {k + 1}: unterminated directive")
                body = body[:-3].strip()
                if body.startswith("skip:"):
                    directives["skip"] = body[len("skip:"):].strip() or "no reason"
                elif body == "serves":
                    directives["serves"] = True
                elif body.startswith("expect="):
                    directives["expect"] += [
                        t.strip() for t in body[len("expect="):].split(" | ")]
                else:
                    raise SystemExit(f"README line {k + 1}: unknown directive {body!r}")
                k -= 1
            blocks.append((start + 1, directives, "\n".join(lines[start + 1:j]) + "\n"))
            i = j
        i += 1
    return blocks


def wait_for_line(path, needle, proc, deadline):
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            if needle in f.read():
                return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)  # Polling a file with a deadline, not synchronising.
    return False


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_agent(workdir, env):
    out = os.path.join(workdir, "agent.out")
    with open(out, "w") as f:
        agent = subprocess.Popen(["sockagentd"], stdout=f, stderr=subprocess.STDOUT,
                                 env=env, cwd=workdir, start_new_session=True)
    if not wait_for_line(out, "sockagentd serving on", agent,
                         time.monotonic() + START_TIMEOUT_S):
        stop(agent)
        raise SystemExit("sockagentd did not start:\n" + open(out).read())
    return agent


def run_block(line, directives, code, workdir, env):
    label = f"README line {line}"
    if directives["skip"]:
        print(f"SKIP {label}: {directives['skip']}")
        return True
    out_path = os.path.join(workdir, "block.out")
    agent = start_agent(workdir, env)
    try:
        with open(out_path, "w") as out:
            proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", code],
                                    stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=workdir, start_new_session=True,
                                    stdin=subprocess.DEVNULL)
        if directives["serves"]:
            ok = wait_for_line(out_path, "sockagentd serving on", proc,
                               time.monotonic() + START_TIMEOUT_S)
            stop(proc)
            why = "" if ok else "never printed 'sockagentd serving on'"
        else:
            try:
                rc = proc.wait(timeout=BLOCK_TIMEOUT_S)
                why = "" if rc == 0 else f"exit {rc}"
            except subprocess.TimeoutExpired:
                stop(proc)
                why = f"still running after {BLOCK_TIMEOUT_S} s"
        output = open(out_path, errors="replace").read()
        if not why:
            missing = [t for t in directives["expect"] if t not in output]
            if missing:
                why = f"output lacks {missing!r}"
    finally:
        stop(agent)
    print(f"{'FAIL' if why else 'OK  '} {label}{': ' + why if why else ''}")
    if why:
        print("--- block:\n" + code + "--- output:\n" + output + "---")
    return not why


def inside(readme, bin_dir):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # A private /run (the agent's default socket lives under it) and a
    # private /etc/sockagent (created, and removed again, if missing).
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"], check=True)
    made_etc = not os.path.isdir("/etc/sockagent")
    if made_etc:
        os.mkdir("/etc/sockagent", 0o755)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs",
                        "/etc/sockagent"], check=True)
        with open("/etc/sockagent/agent.token", "w") as f:
            f.write(secrets.token_hex(24) + "\n")
        os.chmod("/etc/sockagent/agent.token", 0o600)
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join(
            [os.path.join(bin_dir, "service"), os.path.join(bin_dir, "cli"), env["PATH"]])
        for k in ("SOCKAGENT_ADDR", "SOCKAGENT_TOKEN", "SOCKAGENT_LISTEN"):
            env.pop(k, None)
        blocks = parse_blocks(open(readme).read())
        if not blocks:
            raise SystemExit("no ```sh block found in " + readme)
        failed = 0
        for line, directives, code in blocks:
            workdir = tempfile.mkdtemp(prefix="readme-block-")
            try:
                failed += not run_block(line, directives, code, workdir, env)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        print(f"{len(blocks)} blocks, {failed} failed")
        return 1 if failed else 0
    finally:
        subprocess.run(["umount", "/etc/sockagent"], check=False)
        if made_etc:
            os.rmdir("/etc/sockagent")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    readme, bin_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    if os.environ.get(MARKER) == "1":
        return inside(readme, bin_dir)
    if os.geteuid() != 0:
        print("SKIPPED: running README blocks needs root (private mount and network namespaces)")
        return 77
    env = dict(os.environ, **{MARKER: "1"})
    return subprocess.run(["unshare", "--mount", "--net", "--fork", sys.executable,
                           os.path.abspath(__file__), readme, bin_dir], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
