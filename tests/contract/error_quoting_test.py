"""Status messages that quote caller input (ids, label keys, paths, host
names) show it escaped and bounded: an id holding NUL and ESC comes back
as \\x00 and \\x1b, never as raw control bytes, and a huge one is cut."""

import grpc

from contract_support import Agent, check, duration, fail, pb

HOSTILE = "conn-\x00\x1b[31m"  # NUL, then an ANSI colour escape.


def status_of(call, request):
    try:
        call(request, timeout=10)
    except grpc.RpcError as e:
        return e.code(), e.details()
    fail("%r was accepted" % (request,))


def check_printable(message, what):
    bad = [c for c in message if ord(c) < 0x20 or ord(c) >= 0x7f]
    check(not bad, "%s: raw control bytes %r in %r" % (what, bad, message))


def main():
    with Agent() as agent:
        stub = agent.stub
        cases = [
            ("Receive", stub.Receive,
             pb.ReceiveRequest(connection_id=HOSTILE, wait=duration(0)),
             grpc.StatusCode.NOT_FOUND, r"'conn-\x00\x1b[31m'"),
            ("Send", stub.Send, pb.SendRequest(connection_id=HOSTILE,
                                               data=b"x"),
             grpc.StatusCode.NOT_FOUND, r"'conn-\x00\x1b[31m'"),
            ("CloseConnection", stub.CloseConnection,
             pb.CloseConnectionRequest(id=HOSTILE),
             grpc.StatusCode.NOT_FOUND, r"'conn-\x00\x1b[31m'"),
            ("StopServer", stub.StopServer,
             pb.StopServerRequest(id="srv-\x00\x1b"),
             grpc.StatusCode.NOT_FOUND, r"'srv-\x00\x1b'"),
            ("ListConnections page_token", stub.ListConnections,
             pb.ListConnectionsRequest(page_token="\x00\x1b"),
             grpc.StatusCode.INVALID_ARGUMENT, r"'\x00\x1b'"),
            ("StartServer relative unix path", stub.StartServer,
             pb.StartServerRequest(transport=pb.TRANSPORT_UNIX,
                                   bind=pb.Endpoint(unix_path="a\x1b/b")),
             grpc.StatusCode.INVALID_ARGUMENT, r"'a\x1b/b'"),
            ("OpenClient source host", stub.OpenClient,
             pb.OpenClientRequest(remote=pb.Endpoint(host="127.0.0.1",
                                                     port=9),
                                  source=pb.Endpoint(host="h\x00\x1b")),
             grpc.StatusCode.INVALID_ARGUMENT, r"'h\x00\x1b'"),
        ]
        for what, call, request, code, escaped in cases:
            got_code, message = status_of(call, request)
            check(got_code == code, "%s: %s (%r), want %s" %
                  (what, got_code, message, code))
            check_printable(message, what)
            check(escaped in message, "%s: %r does not contain %r" %
                  (what, message, escaped))
        # Watch: the refusal comes as the stream's status.
        try:
            for event in stub.Watch(pb.WatchRequest(connection_id=HOSTILE),
                                    timeout=10):
                fail("Watch on a hostile id sent %r" % event)
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT,
                  "Watch: %s %r" % (e.code(), e.details()))
            check_printable(e.details(), "Watch")
            check(r"'conn-\x00\x1b[31m'" in e.details(), "Watch: %r" %
                  e.details())
        # Label keys are quoted too (labels.cc), and a long id is cut.
        code, message = status_of(stub.ListConnections,
                                  pb.ListConnectionsRequest(
                                      label_selector={"k\x00\x1b" * 40: "v"}))
        check(code == grpc.StatusCode.INVALID_ARGUMENT, "label: %s" % code)
        check_printable(message, "label key")
        huge = "conn-" + "\x1b" * 100000
        code, message = status_of(stub.Receive, pb.ReceiveRequest(
            connection_id=huge, wait=duration(0)))
        check(code == grpc.StatusCode.NOT_FOUND, "huge id: %s" % code)
        check_printable(message, "huge id")
        check(len(message) < 2048, "huge id: message of %d characters" %
              len(message))
        check("100005 bytes" in message, "huge id: %r" % message[:300])
    print("ok: %d refusals quote hostile input escaped" % (len(cases) + 3))


if __name__ == "__main__":
    main()
