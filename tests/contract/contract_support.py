"""Shared helpers of the contract tests: a real sockagentd, a gRPC stub made
from the stubs scripts/gen_python_stubs.sh generated at test time, plain
POSIX peers, and waiting for a condition with a deadline (never a sleep as
synchronisation).

Environment (set by tests/contract/CMakeLists.txt):
  SOCKAGENTD         path of the daemon under test
  PYTHONPATH         includes the generated stubs' folder
Run with Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf).
"""

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
from google.protobuf import duration_pb2

from sockagent.v1 import agent_pb2 as pb
from sockagent.v1 import agent_pb2_grpc as pb_grpc

__all__ = ["pb", "pb_grpc", "Agent", "wait_for", "fail", "duration",
           "hold_server", "connect_peer", "accepted_connection"]


def fail(message):
    print("FAIL: " + message, file=sys.stderr, flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def duration(seconds):
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def wait_for(predicate, timeout=20.0, what="condition"):
    """Polls `predicate` until it returns a truthy value; fails the test
    with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            fail("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.01)  # Poll interval, not synchronisation.


class Agent:
    """A sockagentd child process on 127.0.0.1 port 0 (--insecure: the test
    owns the machine's loopback for its duration)."""

    def __init__(self, extra_args=()):
        binary = os.environ.get("SOCKAGENTD")
        check(binary, "SOCKAGENTD is not set")
        self.proc = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", "--insecure"] + list(extra_args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.log = []
        self.address = self._read_address(timeout=30.0)
        # Keep draining both pipes so the daemon never blocks on a full one.
        for pipe in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._drain, args=(pipe,),
                             daemon=True).start()
        self.channel = grpc.insecure_channel(self.address)
        grpc.channel_ready_future(self.channel).result(timeout=20)
        self.stub = pb_grpc.SocketAgentStub(self.channel)

    def _read_address(self, timeout):
        deadline = time.monotonic() + timeout
        buffered = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buffered += chunk
            for line in buffered.decode(errors="replace").splitlines():
                marker = "serving on "
                if marker in line:
                    return line.split(marker, 1)[1].strip()
        self.proc.kill()
        fail("sockagentd did not report its address: %r" % buffered)

    def _drain(self, pipe):
        for line in iter(pipe.readline, b""):
            self.log.append(line)

    def stop(self):
        """SIGTERM; the daemon must exit 0 (under ASan a leak or a
        use-after-free makes it exit non-zero)."""
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("sockagentd did not exit within 30 s of SIGTERM")
        if code != 0:
            sys.stderr.write(b"".join(self.log[-60:]).decode(errors="replace"))
            fail("sockagentd exited %d" % code)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.stop()
        else:
            self.proc.kill()
            self.proc.wait()
        return False


def hold_server(stub):
    """A TCP hold server on 127.0.0.1 port 0; returns (server id, port)."""
    request = pb.StartServerRequest(
        transport=pb.TRANSPORT_TCP,
        bind=pb.Endpoint(host="127.0.0.1", port=0),
        behavior=pb.Behavior(hold=pb.HoldBehavior()))
    server = stub.StartServer(request, timeout=10).server
    return server.id, server.local_addresses[0].port


def connect_peer(port):
    """A plain POSIX client socket connected to 127.0.0.1:port."""
    peer = socket.create_connection(("127.0.0.1", port), timeout=10)
    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return peer


def accepted_connection(stub, server_id, local_port):
    """Waits until the server accepted the peer bound to `local_port`;
    returns the agent's Connection."""
    def find():
        listing = stub.ListConnections(
            pb.ListConnectionsRequest(server_id=server_id), timeout=10)
        for c in listing.connections:
            if c.remote.port == local_port:
                return c
        return None
    return wait_for(find, what="the accepted connection in ListConnections")


def get_connection(stub, connection_id):
    """The connection `connection_id` (open or in the closed history)."""
    listing = stub.ListConnections(
        pb.ListConnectionsRequest(include_closed=True), timeout=10)
    for c in listing.connections:
        if c.id == connection_id:
            return c
    return None


def peer_sees_no_eof(peer):
    """True when the peer's socket has neither EOF nor bytes pending."""
    ready, _, _ = select.select([peer], [], [], 0)
    if not ready:
        return True
    try:
        data = peer.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    return False if data == b"" else True


def recv_exactly(peer, n, timeout=10.0):
    peer.settimeout(timeout)
    out = b""
    while len(out) < n:
        chunk = peer.recv(n - len(out))
        if not chunk:
            fail("peer saw EOF after %d of %d bytes" % (len(out), n))
        out += chunk
    return out
