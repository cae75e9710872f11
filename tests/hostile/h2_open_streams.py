#!/usr/bin/python3
"""Open (not reset) HTTP/2 streams without a token against a gRPC server.

An independent HTTP/2 client (python3-h2, not gRPC): CONNS connections, each
acknowledging the server's SETTINGS and then opening STREAMS calls of
/grpc.health.v1.Health/Watch (no token needed) at once, each with its request
and END_STREAM, so the server keeps every stream open (a Watch ends only
when the client cancels it). The streams are held HOLD seconds, then
everything is closed.

  h2_open_streams.py HOST PORT CONNS STREAMS HOLD

Environment H2_FLOOD_TLS=1: every connection is TLS (ALPN h2, the agent's
certificate not verified).

Prints one JSON line:
  {"requested": CONNS*STREAMS, "sent": streams whose HEADERS were written,
   "answered": streams that got response HEADERS,
   "closed_by_server": connections the server closed,
   "open_at_end": streams answered and neither ended nor reset, on
                  connections still open at the end,
   "max_open": the most such streams seen at once, "errors": [...]}
"""

import json
import os
import select
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
CLOSED = (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError,
          ssl.SSLZeroReturnError)


class Conn:
    def __init__(self, host, port):
        sock = socket.create_connection((host, port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if os.environ.get("H2_FLOOD_TLS") == "1":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True,
                                             header_encoding=None))
        self.h2.initiate_connection()
        self.out = bytearray(self.h2.data_to_send())
        self.closed = False
        self.answered = set()
        self.ended = set()
        self.sent = 0
        self.host = host
        # The server's SETTINGS first (h2 acknowledges them).
        deadline = time.monotonic() + 5
        self.flush()
        got_settings = False
        while not got_settings and time.monotonic() < deadline:
            data = sock.recv(1 << 16)
            if not data:
                self.closed = True
                break
            for e in self.h2.receive_data(data):
                if isinstance(e, h2.events.RemoteSettingsChanged):
                    got_settings = True
            self.out += self.h2.data_to_send()
        self.flush()
        sock.setblocking(False)

    def open_streams(self, n):
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/grpc.health.v1.Health/Watch"),
            (b":authority", self.host.encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
        for _ in range(n):
            if self.closed:
                return
            sid = self.h2.get_next_available_stream_id()
            try:
                self.h2.send_headers(sid, headers)
                # An empty HealthCheckRequest: gRPC's 5-byte prefix only.
                self.h2.send_data(sid, b"\0\0\0\0\0", end_stream=True)
            except h2.exceptions.TooManyStreamsError:
                return
            self.sent += 1
            self.out += self.h2.data_to_send()
        self.flush()

    def flush(self):
        while self.out and not self.closed:
            try:
                n = self.sock.send(self.out)
                del self.out[:n]
            except WOULD_BLOCK:
                return
            except CLOSED:
                self.closed = True
            except OSError:
                self.closed = True

    def pump(self):
        while not self.closed:
            try:
                data = self.sock.recv(1 << 16)
            except WOULD_BLOCK:
                break
            except (CLOSED + (OSError,)):
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
                break
            for e in events:
                if isinstance(e, h2.events.ResponseReceived):
                    self.answered.add(e.stream_id)
                elif isinstance(e, (h2.events.StreamEnded,
                                    h2.events.StreamReset)):
                    self.ended.add(e.stream_id)
                elif isinstance(e, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(
                        e.flow_controlled_length, e.stream_id)
                elif isinstance(e, h2.events.ConnectionTerminated):
                    self.closed = True
            self.out += self.h2.data_to_send()
        self.flush()

    def open_now(self):
        if self.closed:
            return 0
        return len(self.answered - self.ended)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    conns, streams, hold = int(sys.argv[3]), int(sys.argv[4]), float(
        sys.argv[5])
    errors = []
    live = []
    max_open = 0
    for _ in range(conns):
        try:
            c = Conn(host, port)
            c.open_streams(streams)
            live.append(c)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            if not isinstance(e, CLOSED):
                errors.append(f"{type(e).__name__}: {e}")
        for c in live:
            c.pump()
        max_open = max(max_open, sum(c.open_now() for c in live))
    end = time.monotonic() + hold
    while time.monotonic() < end:
        socks = [c.sock for c in live if not c.closed]
        if socks:
            select.select(socks, [], [], 0.1)
        else:
            time.sleep(0.1)  # Nothing open to select on: poll again (the loop has a deadline).
        for c in live:
            c.pump()
        max_open = max(max_open, sum(c.open_now() for c in live))
    print(json.dumps({
        "requested": conns * streams,
        "sent": sum(c.sent for c in live),
        "answered": sum(len(c.answered) for c in live),
        "closed_by_server": sum(c.closed for c in live),
        "open_at_end": sum(c.open_now() for c in live),
        "max_open": max_open,
        "errors": errors,
    }))
    sys.stdout.flush()
    for c in live:
        try:
            c.sock.close()
        except OSError:
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
