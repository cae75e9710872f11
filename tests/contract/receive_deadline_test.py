"""Receive's promise, read from the proto alone: `wait` never goes beyond
the call's deadline, and the call then ends OK with what there is (the
agent answers a safety margin before the deadline); a parked Receive whose
caller went away (deadline, cancel) never makes the next Receive on that
connection FAILED_PRECONDITION."""

import time

import grpc

from contract_support import (Agent, accepted_connection, check,
                              connect_peer, duration, fail, hold_server, pb,
                              wait_for)

TRIES = 20
ROUNDS = 10
DEADLINE = 0.5  # Seconds; the Receive asks to wait 10 s.


def receive_request(conn_id, wait, min_bytes=0):
    return pb.ReceiveRequest(connection_id=conn_id, wait=duration(wait),
                             min_bytes=min_bytes)


def refused_as_waiting(stub, conn_id):
    """True when a Receive is parked on conn_id (a zero-wait Receive is
    refused FAILED_PRECONDITION)."""
    try:
        # min_bytes: takes nothing when nothing is parked. The short
        # deadline also shortens how long it waits for the parked one to
        # give way (at most kReceiveGiveWay, 0.5 s).
        stub.Receive(receive_request(conn_id, 0, min_bytes=4096),
                     timeout=0.3)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return False  # A loaded machine; ask again.
        if e.code() != grpc.StatusCode.FAILED_PRECONDITION:
            fail("probe: %s: %s" % (e.code(), e.details()))
        return True
    return False


def main():
    with Agent() as agent:
        stub = agent.stub
        server_id, port = hold_server(stub)
        peer = connect_peer(port)
        conn = accepted_connection(stub, server_id, peer.getsockname()[1])

        # 1. wait (10 s) longer than the deadline (0.5 s): OK, empty,
        # before the deadline, every time; and the next Receive, issued at
        # once, is never refused because the previous one is still parked.
        latest = 0.0
        for i in range(TRIES):
            start = time.monotonic()
            try:
                answer = stub.Receive(receive_request(conn.id, 10),
                                      timeout=DEADLINE)
            except grpc.RpcError as e:
                fail("try %d: Receive(wait=10s, deadline=%.1fs) ended %s: %s"
                     % (i, DEADLINE, e.code(), e.details()))
            elapsed = time.monotonic() - start
            check(answer.data == b"" and not answer.end_of_stream,
                  "try %d: expected an empty answer, got %r" % (i, answer))
            # Generous one-sided bounds: it did wait, and not past the
            # deadline (it answered OK, so the client's timer had not fired).
            check(elapsed >= DEADLINE / 4,
                  "try %d: answered after %.3f s, expected it to wait" %
                  (i, elapsed))
            check(elapsed < DEADLINE,
                  "try %d: answered after %.3f s" % (i, elapsed))
            latest = max(latest, elapsed)

        # 2. A parked Receive whose caller cancels, followed at once by a
        # new Receive: the new one is not refused and gets the bytes. The
        # peer's bytes are buffered first and the cancelled Receive waits
        # for more than there is (min_bytes), so it can never take them
        # whenever the agent learns of the cancel.
        slowest = 0.0
        for i in range(ROUNDS):
            payload = b"round %d" % i
            peer.sendall(payload)
            parked = stub.Receive.future(
                receive_request(conn.id, 10, min_bytes=4096), timeout=30)
            wait_for(lambda: refused_as_waiting(stub, conn.id),
                     what="the first Receive to be parked")
            parked.cancel()
            start = time.monotonic()
            try:
                answer = stub.Receive(receive_request(conn.id, 10),
                                      timeout=20)
            except grpc.RpcError as e:
                fail("round %d: Receive right after a cancelled one ended "
                     "%s: %s" % (i, e.code(), e.details()))
            elapsed = time.monotonic() - start
            check(answer.data == payload, "round %d: got %r, want %r" %
                  (i, answer.data, payload))
            check(elapsed < 5, "round %d: took %.1f s" % (i, elapsed))
            slowest = max(slowest, elapsed)
        peer.close()
    print("ok: %d deadline-bounded Receives (latest answer after %.3f s of "
          "%.1f s), %d cancel-then-Receive rounds (slowest %.3f s)"
          % (TRIES, latest, DEADLINE, ROUNDS, slowest))


if __name__ == "__main__":
    main()
