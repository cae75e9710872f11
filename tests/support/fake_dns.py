#!/usr/bin/env python3
"""A DNS server for tests that answers NXDOMAIN to every query, or with
--silent never answers at all (a resolver that hangs).

Runs inside a test's own network namespace (never on the host's network), so
that "unknown name" gives the resolver's NOT_FOUND path without touching the
machine's real DNS server. Prints "ready" once bound.
"""
import socket
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent = "--silent" in sys.argv[1:]
hosts = [a for a in sys.argv[1:] if not a.startswith("--")]
sock.bind((hosts[0] if hosts else "127.0.0.1", 53))
print("ready", flush=True)
while True:
    query, peer = sock.recvfrom(4096)
    if silent or len(query) < 12:
        continue
    # Same id; QR=1, the query's opcode and RD bit, RA=1, RCODE=3 (NXDOMAIN);
    # the question section is echoed, no answers.
    flags = 0x8000 | ((query[2] << 8) & 0x7900) | 0x0080 | 3
    reply = query[:2] + flags.to_bytes(2, "big") + query[4:6] + bytes(6)
    sock.sendto(reply + query[12:], peer)
