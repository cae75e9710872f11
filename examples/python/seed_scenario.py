#!/usr/bin/python3
"""The seed's scenario over the sockagent API, from Python.

What scripts/demo.sh shows with sockctl, done here with plain gRPC stubs:
the host's name, getaddrinfo forwards and backwards, then the classic
"Thank you for connecting" server and its one-shot client -- both on the
agent's host, driven from here -- then the connections it saw, and cleanup.
Copy it as the start of your own client.

Stubs (never committed; Debian's protoc + grpc_python_plugin):

    scripts/gen_python_stubs.sh /tmp/sockagent-py
    PYTHONPATH=/tmp/sockagent-py /usr/bin/python3 \
        examples/python/seed_scenario.py --agent 127.0.0.1:7878 \
        --token-file /path/to/token

Exit status: 0 when every step worked, 1 when a call failed (the gRPC status
and the agent's message are printed), 2 for bad arguments.
"""

import argparse
import os
import sys

import grpc
from google.protobuf import duration_pb2

from sockagent.v1 import agent_pb2 as pb
from sockagent.v1 import agent_pb2_grpc as pb_grpc


def default_agent_address():
    """Where sockagentd listens without --listen (proto/local_agent_socket.h).

    SOCKAGENT_ADDR wins, as for sockctl.
    """
    if os.environ.get("SOCKAGENT_ADDR"):
        return os.environ["SOCKAGENT_ADDR"]
    if os.geteuid() == 0:
        directory = "/run/sockagent"
    elif os.environ.get("XDG_RUNTIME_DIR", "").startswith("/"):
        directory = os.environ["XDG_RUNTIME_DIR"] + "/sockagent"
    else:
        directory = "/tmp/sockagent-%d" % os.geteuid()
    return "unix:" + directory + "/sockagentd.sock"


def read_token(path):
    """The bearer token: --token-file, else $SOCKAGENT_TOKEN, else none.

    An agent on its default UNIX socket needs none (the socket is 0600).
    """
    if path:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    return os.environ.get("SOCKAGENT_TOKEN", "")


def seconds(s):
    return duration_pb2.Duration(seconds=int(s), nanos=int((s % 1) * 1e9))


def address_text(a):
    if a.family == pb.FAMILY_UNIX:
        return "unix:" + a.unix_path
    if a.family == pb.FAMILY_IPV6:
        return "[%s]:%d" % (a.ip, a.port)
    return "%s:%d" % (a.ip, a.port)


def enum_word(enum, value, prefix):
    """CLOSE_REASON_PEER_CLOSED -> "peer closed", as sockctl's tables say."""
    return enum.Name(value)[len(prefix):].lower().replace("_", " ")


def main():
    parser = argparse.ArgumentParser(
        description="The seed's 'Thank you for connecting' scenario over "
        "the sockagent gRPC API.")
    parser.add_argument(
        "--agent", default=default_agent_address(),
        help="agent address: HOST:PORT or unix:/PATH (default: "
        "$SOCKAGENT_ADDR, else the agent's default UNIX socket)")
    parser.add_argument(
        "--token-file",
        help="file holding the agent's bearer token (default: "
        "$SOCKAGENT_TOKEN; none on the default UNIX socket)")
    parser.add_argument(
        "--greeting", default="Thank you for connecting",
        help="what the server sends each client (default: %(default)r)")
    parser.add_argument(
        "--label", default="demo=seed",
        help="KEY=VALUE put on everything this run starts, and used to "
        "list and clean it up (default: %(default)s)")
    parser.add_argument(
        "--timeout", type=float, default=10.0,
        help="deadline of each call in seconds (default: %(default)s)")
    args = parser.parse_args()
    key, sep, value = args.label.partition("=")
    if not sep or not key:
        parser.error("--label must be KEY=VALUE")
    labels = {key: value}

    # Every call carries the token as `authorization: Bearer ...` metadata.
    token = read_token(args.token_file)
    metadata = [("authorization", "Bearer " + token)] if token else []

    # TLS: grpc.secure_channel(args.agent, grpc.ssl_channel_credentials(
    #     root_certificates=open("ca.pem", "rb").read())) instead.
    with grpc.insecure_channel(args.agent) as channel:
        agent = pb_grpc.SocketAgentStub(channel)

        def call(method, request):
            return method(request, timeout=args.timeout, metadata=metadata)

        # socket.gethostname(), and which agent answered.
        host = call(agent.GetHostInfo, pb.GetHostInfoRequest())
        print("hostname: %s (sockagentd %s, pid %d)" %
              (host.hostname, host.agent_version, host.pid))

        # socket.getaddrinfo('localhost', 'www')
        answer = call(agent.Resolve,
                      pb.ResolveRequest(host="localhost", service="www"))
        for e in answer.entries:
            print("resolve localhost www: %s %s port %d (%s)" %
                  (enum_word(pb.Family, e.family, "FAMILY_"), e.address,
                   e.port, e.protocol_name))

        # socket.getnameinfo(('127.0.0.1', 80), 0)
        answer = call(agent.Resolve, pb.ResolveRequest(
            host="127.0.0.1", service="80", reverse=True))
        print("reverse 127.0.0.1 80: %s %s" %
              (answer.reverse_host, answer.reverse_service))

        try:
            run_greeting_server(agent, call, args.greeting, labels)
        finally:
            # Clean up by label, even after a failure: a selector that
            # matches nothing is not an error.
            stopped = call(agent.StopServer, pb.StopServerRequest(
                label_selector=labels, close_connections=True))
            closed = call(agent.CloseConnection, pb.CloseConnectionRequest(
                label_selector=labels))
            print("cleanup: %d server(s) stopped, %d connection(s) closed" %
                  (stopped.servers_stopped, closed.connections_closed))


def run_greeting_server(agent, call, greeting, labels):
    # The seed's server: bind port 0 (the agent picks one), send the
    # greeting to every client, then close.
    server = call(agent.StartServer, pb.StartServerRequest(
        transport=pb.TRANSPORT_TCP,
        bind=pb.Endpoint(host="127.0.0.1", port=0),
        behavior=pb.Behavior(greeting=pb.GreetingBehavior(
            data=greeting.encode(), close_after=True)),
        labels=labels)).server
    bound = server.local_addresses[0]
    print("server %s: greeting on %s" % (server.id, address_text(bound)))

    # The seed's one-shot client, opened by the agent on its own host (so
    # this works for a remote agent too): connect, read until the server
    # closes, close.
    conn = call(agent.OpenClient, pb.OpenClientRequest(
        transport=pb.TRANSPORT_TCP,
        remote=pb.Endpoint(host=bound.ip, port=bound.port),
        connect_timeout=seconds(5),
        labels=labels)).connection
    print("client %s: %s -> %s" % (conn.id, address_text(conn.local),
                                   address_text(conn.remote)))
    received = b""
    while True:
        # Waits up to 2 s for bytes; end_of_stream once the server closed
        # and every byte was taken.
        chunk = call(agent.Receive, pb.ReceiveRequest(
            connection_id=conn.id, wait=seconds(2)))
        received += chunk.data
        if chunk.end_of_stream:
            break
        if not chunk.data:
            raise RuntimeError("no end of stream within 2 s")
    print("client %s received: %s" % (conn.id, received.decode()))
    call(agent.CloseConnection, pb.CloseConnectionRequest(id=conn.id))

    # Both ends, closed, stay listable (with why) in a bounded history.
    listing = call(agent.ListConnections, pb.ListConnectionsRequest(
        label_selector=labels, include_closed=True))
    for c in listing.connections:
        print("connection %s %s %s -> %s: %s, %d bytes in, %d out" % (
            c.id, enum_word(pb.Origin, c.origin, "ORIGIN_"),
            address_text(c.local), address_text(c.remote),
            enum_word(pb.CloseReason, c.close_reason, "CLOSE_REASON_")
            if c.close_reason else "open",
            c.counters.bytes_received, c.counters.bytes_sent))

    listing = call(agent.ListServers,
                   pb.ListServersRequest(label_selector=labels))
    for s in listing.servers:
        print("server %s: %d accepted, %d bytes sent" %
              (s.id, s.counters.connections_accepted, s.counters.bytes_sent))


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as e:
        # e.code() is a grpc.StatusCode; e.details() the agent's message,
        # e.g. "bind 0.0.0.0:80: permission denied".
        print("%s: %s: %s" % (os.path.basename(sys.argv[0]), e.code().name,
                              e.details()), file=sys.stderr)
        sys.exit(1)
    except (OSError, RuntimeError) as e:
        print("%s: %s" % (os.path.basename(sys.argv[0]), e), file=sys.stderr)
        sys.exit(1)
