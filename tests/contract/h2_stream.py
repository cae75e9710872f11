"""A Stream call spoken in raw HTTP/2 (python3-h2), to end it the way
grpc-js's cancel() and deadline do: an empty DATA frame with END_STREAM
(which alone would be the caller's half-close, WritesDone) followed at once
by RST_STREAM(CANCEL). grpcio (gRPC's C core) sends only the RST_STREAM."""

import socket
import os
import struct
import time

import h2.config
import h2.connection
import h2.events

from contract_support import fail, pb

GAP = float(os.environ.get("GAP", "0.001"))
PATH = "/sockagent.v1.SocketAgent/Stream"


def grpc_frame(message):
    body = message.SerializeToString()
    return struct.pack(">BI", 0, len(body)) + body


class RawStreamCall:
    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=20)
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.stream_id, [
            (":method", "POST"), (":scheme", "http"), (":path", PATH),
            (":authority", address), ("content-type", "application/grpc"),
            ("te", "trailers")])
        self.sock.sendall(self.conn.data_to_send())
        self.buffer = b""

    def send(self, request):
        self.conn.send_data(self.stream_id, grpc_frame(request))
        self.sock.sendall(self.conn.data_to_send())

    def read_response(self):
        """The next StreamResponse."""
        while True:
            if len(self.buffer) >= 5:
                length = struct.unpack(">I", self.buffer[1:5])[0]
                if len(self.buffer) >= 5 + length:
                    body = self.buffer[5:5 + length]
                    self.buffer = self.buffer[5 + length:]
                    response = pb.StreamResponse()
                    response.ParseFromString(body)
                    return response
            data = self.sock.recv(1 << 16)
            if not data:
                fail("raw h2: the agent closed the connection")
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id)
                    self.buffer += event.data
                elif isinstance(event, (h2.events.StreamEnded,
                                        h2.events.StreamReset)):
                    fail("raw h2: the call ended early: %r" % event)
            self.sock.sendall(self.conn.data_to_send())

    def cancel_like_grpc_js(self):
        """END_STREAM, then RST_STREAM(CANCEL) in a separate write, as
        Node's http2 does for grpc-js's cancel() (its stream.close() ends
        the writable side first, the reset follows on a later tick)."""
        self.conn.end_stream(self.stream_id)
        self.sock.sendall(self.conn.data_to_send())
        time.sleep(GAP)
        self.conn.reset_stream(self.stream_id, error_code=0x8)
        self.sock.sendall(self.conn.data_to_send())

    def close(self):
        self.conn.close_connection()
        try:
            self.sock.sendall(self.conn.data_to_send())
        except OSError:
            pass
        self.sock.close()
