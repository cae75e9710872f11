"""Stream attached to an existing connection, then the caller goes away in
each of the three ways the proto names -- it cancels, its deadline expires,
its process is killed -- and once more the way grpc-js cancels (END_STREAM
and RST_STREAM together, spoken in raw HTTP/2): the connection is detached
and stays open. The
peer (a plain POSIX socket) sees no EOF, ListConnections shows the
connection open and not attached, and bytes still flow both ways through
Send and Receive."""

import os
import queue
import signal
import subprocess
import sys
import time

import grpc

from h2_stream import RawStreamCall
from contract_support import (Agent, accepted_connection, check,
                              connect_peer, duration, fail, get_connection,
                              hold_server, pb, peer_sees_no_eof,
                              recv_exactly, wait_for)


def requests_from(q):
    """Stream requests taken from a queue; None ends them (never sent:
    each test ends the call without a half-close)."""
    while True:
        item = q.get()
        if item is None:
            return
        yield item


def attach(stub, conn_id, timeout=None):
    """Starts a Stream attached to conn_id; returns (call, request queue)
    after the first response (the Connection) arrived."""
    q = queue.Queue()
    q.put(pb.StreamRequest(start=pb.StreamStart(attach_connection_id=conn_id)))
    call = stub.Stream(requests_from(q), timeout=timeout)
    first = next(call)
    check(first.HasField("connection") and first.connection.id == conn_id,
          "first Stream response: %r" % first)
    check(first.connection.stream_attached,
          "the first response should say the stream is attached")
    return call, q


def exchange_through_stream(call, q, peer, tag):
    """Bytes flow both ways while attached."""
    q.put(pb.StreamRequest(data=b"to-peer " + tag))
    check(recv_exactly(peer, 8 + len(tag)) == b"to-peer " + tag,
          "%s: the peer did not get the stream's bytes" % tag)
    peer.sendall(b"from-peer " + tag)
    got = b""
    while len(got) < 10 + len(tag):
        response = next(call)
        check(response.HasField("data"), "%s: response %r" % (tag, response))
        got += response.data
    check(got == b"from-peer " + tag, "%s: stream got %r" % (tag, got))


def check_still_open(stub, conn_id, peer, tag):
    """After the caller went away: detached, open, no EOF, bytes flow."""
    btag = tag.encode()
    def detached():
        c = get_connection(stub, conn_id)
        check(c is not None, "%s: %s vanished" % (tag, conn_id))
        return c if not c.stream_attached else None
    c = wait_for(detached, what="%s: %s to be detached" % (tag, conn_id))
    check(c.state == pb.CONNECTION_STATE_OPEN,
          "%s: after the caller went away the connection is %s (%s, %r); "
          "the proto says an attached connection stays open" %
          (tag, pb.ConnectionState.Name(c.state),
           pb.CloseReason.Name(c.close_reason), c.close_detail))
    # The agent's side still writes: Send reaches the peer, and the peer
    # saw no FIN before those bytes (a FIN would have made Send fail).
    try:
        stub.Send(pb.SendRequest(connection_id=conn_id, data=b"after " + btag),
                  timeout=10)
    except grpc.RpcError as e:
        fail("%s: Send after the stream ended: %s: %s" %
             (tag, e.code(), e.details()))
    check(recv_exactly(peer, 6 + len(tag)) == b"after " + btag,
          "%s: the peer did not get the bytes sent after" % tag)
    check(peer_sees_no_eof(peer), "%s: the peer saw EOF" % tag)
    # And the peer's bytes come back through Receive.
    peer.sendall(b"reply " + btag)
    got = b""
    while len(got) < 6 + len(tag):
        answer = stub.Receive(pb.ReceiveRequest(connection_id=conn_id,
                                                wait=duration(5)),
                              timeout=10)
        check(answer.data, "%s: Receive after the stream got nothing" % tag)
        got += answer.data
    check(got == b"reply " + btag, "%s: Receive got %r" % (tag, got))
    c = get_connection(stub, conn_id)
    check(c.state == pb.CONNECTION_STATE_OPEN,
          "%s: connection ended %s" % (tag, pb.ConnectionState.Name(c.state)))


def new_connection(stub, server_id, port):
    peer = connect_peer(port)
    conn = accepted_connection(stub, server_id, peer.getsockname()[1])
    return peer, conn.id


def go_away_by_cancel(agent, server_id, port):
    stub = agent.stub
    peer, conn_id = new_connection(stub, server_id, port)
    call, q = attach(stub, conn_id)
    exchange_through_stream(call, q, peer, b"cancel")
    call.cancel()
    q.put(None)
    check_still_open(stub, conn_id, peer, "cancel")
    peer.close()


def go_away_by_deadline(agent, server_id, port):
    stub = agent.stub
    peer, conn_id = new_connection(stub, server_id, port)
    start = time.monotonic()
    call, q = attach(stub, conn_id, timeout=3)
    exchange_through_stream(call, q, peer, b"deadline")
    try:
        for response in call:
            fail("deadline: unexpected response %r" % response)
        fail("deadline: the call ended OK; expected DEADLINE_EXCEEDED")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED,
              "deadline: the call ended %s: %s" % (e.code(), e.details()))
    check(time.monotonic() - start < 20, "deadline: took too long")
    q.put(None)
    check_still_open(stub, conn_id, peer, "deadline")
    peer.close()


CHILD = r"""
import os, queue, sys
import grpc
from sockagent.v1 import agent_pb2 as pb, agent_pb2_grpc as pb_grpc
address, conn_id = sys.argv[1], sys.argv[2]
stub = pb_grpc.SocketAgentStub(grpc.insecure_channel(address))
q = queue.Queue()
q.put(pb.StreamRequest(start=pb.StreamStart(attach_connection_id=conn_id)))
def requests():
    while True:
        yield q.get()
call = stub.Stream(requests())
first = next(call)
assert first.connection.id == conn_id, first
q.put(pb.StreamRequest(data=b"from the child"))
print("attached", flush=True)
for response in call:
    pass
"""


def go_away_by_kill(agent, server_id, port):
    stub = agent.stub
    peer, conn_id = new_connection(stub, server_id, port)
    child = subprocess.Popen([sys.executable, "-c", CHILD, agent.address,
                              conn_id], stdout=subprocess.PIPE,
                             env=dict(os.environ))
    line = child.stdout.readline()
    check(line.strip() == b"attached", "kill: the child said %r" % line)
    check(recv_exactly(peer, 14) == b"from the child",
          "kill: the peer did not get the child's bytes")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    check_still_open(stub, conn_id, peer, "kill")
    peer.close()


def go_away_by_grpc_js_cancel(agent, server_id, port):
    stub = agent.stub
    peer, conn_id = new_connection(stub, server_id, port)
    call = RawStreamCall(agent.address)
    call.send(pb.StreamRequest(
        start=pb.StreamStart(attach_connection_id=conn_id)))
    first = call.read_response()
    check(first.connection.id == conn_id, "grpc-js cancel: %r" % first)
    call.send(pb.StreamRequest(data=b"raw h2"))
    check(recv_exactly(peer, 6) == b"raw h2",
          "grpc-js cancel: the peer did not get the bytes")
    call.cancel_like_grpc_js()
    check_still_open(stub, conn_id, peer, "grpc-js cancel")
    call.close()
    peer.close()


def main():
    with Agent() as agent:
        server_id, port = hold_server(agent.stub)
        go_away_by_grpc_js_cancel(agent, server_id, port)
        go_away_by_cancel(agent, server_id, port)
        go_away_by_deadline(agent, server_id, port)
        go_away_by_kill(agent, server_id, port)
    print("ok: cancel, deadline and a killed caller each left the attached "
          "connection open")


if __name__ == "__main__":
    main()
