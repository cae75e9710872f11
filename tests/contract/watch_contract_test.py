"""Watch, read from the proto alone: `seq` is agent-wide and increasing,
and snapshot events all carry the seq of the snapshot point (live events
after it have larger ones); a filter naming an unknown server or
connection id is NOT_FOUND naming the id, like every other RPC, instead of
a watch that stays silent forever."""

import grpc

from contract_support import (Agent, accepted_connection, check,
                              connect_peer, fail, hold_server, pb)


def expect_refused(stub, request, code, needle):
    call = stub.Watch(request, timeout=10)
    try:
        event = next(call)
        fail("Watch(%s) was accepted; first event %r" % (request, event))
    except grpc.RpcError as e:
        check(e.code() == code, "Watch(%s) ended %s: %s, want %s" %
              (request, e.code(), e.details(), code))
        check(needle in e.details(), "Watch(%s): message %r does not name %r"
              % (request, e.details(), needle))


def main():
    with Agent() as agent:
        stub = agent.stub
        server_id, port = hold_server(stub)
        peer = connect_peer(port)
        conn = accepted_connection(stub, server_id, peer.getsockname()[1])

        # Snapshot, then live events.
        watch = stub.Watch(pb.WatchRequest(snapshot=True), timeout=60)
        snapshot = []
        for event in watch:
            snapshot.append(event)
            if event.kind == pb.EVENT_KIND_SNAPSHOT_END:
                break
        kinds = [e.kind for e in snapshot]
        check(pb.EVENT_KIND_SNAPSHOT_SERVER in kinds and
              pb.EVENT_KIND_SNAPSHOT_CONNECTION in kinds,
              "snapshot lacks the server or the connection: %r" % kinds)
        point = snapshot[0].seq
        check(point > 0, "snapshot seq is 0; the agent had events before")
        check(all(e.seq == point for e in snapshot),
              "snapshot events carry different seqs: %r" %
              [e.seq for e in snapshot])
        # Live events after the snapshot: larger seqs, increasing. The
        # bytes are read on the agent's loop thread, the second server
        # starts inline on a gRPC thread: their events may come in either
        # order, so wait for both (the Watch call's timeout bounds it).
        peer.sendall(b"live")
        second_id, _ = hold_server(stub)
        live = []
        started = received = False
        for event in watch:
            live.append(event)
            started = started or (event.kind == pb.EVENT_KIND_SERVER_STARTED
                                  and event.server_id == second_id)
            received = received or (
                event.kind == pb.EVENT_KIND_DATA_RECEIVED and
                event.connection_id == conn.id)
            if started and received:
                break
        seqs = [e.seq for e in live]
        check(seqs and seqs[0] > point,
              "first live seq %r is not above the snapshot's %d" %
              (seqs[:1], point))
        check(all(a < b for a, b in zip(seqs, seqs[1:])),
              "live seqs do not increase: %r" % seqs)
        check(any(e.kind == pb.EVENT_KIND_DATA_RECEIVED and
                  e.connection_id == conn.id for e in live),
              "no DATA_RECEIVED for %s among %r" % (conn.id, live))
        watch.cancel()

        # Unknown ids in the filter: NOT_FOUND naming them, at once.
        expect_refused(stub, pb.WatchRequest(server_id="srv-999999"),
                       grpc.StatusCode.NOT_FOUND, "srv-999999")
        expect_refused(stub, pb.WatchRequest(connection_id="conn-999999"),
                       grpc.StatusCode.NOT_FOUND, "conn-999999")
        expect_refused(stub, pb.WatchRequest(server_id=server_id,
                                             connection_id="conn-999999"),
                       grpc.StatusCode.NOT_FOUND, "conn-999999")
        # Malformed ids stay INVALID_ARGUMENT.
        expect_refused(stub, pb.WatchRequest(server_id="web"),
                       grpc.StatusCode.INVALID_ARGUMENT, "web")

        # Known ids are accepted, a stopped server's too (its connections
        # go on, and the history still knows it).
        stub.StopServer(pb.StopServerRequest(id=server_id), timeout=10)
        for request in (pb.WatchRequest(server_id=server_id, snapshot=True),
                        pb.WatchRequest(connection_id=conn.id,
                                        snapshot=True)):
            call = stub.Watch(request, timeout=10)
            for event in call:
                if event.kind == pb.EVENT_KIND_SNAPSHOT_END:
                    break
            call.cancel()
        peer.close()
    print("ok: snapshot seq %d, %d live events above it, unknown ids "
          "NOT_FOUND" % (point, len(live)))


if __name__ == "__main__":
    main()
