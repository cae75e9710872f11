#!/usr/bin/env python3
"""A DNS server for tests that answers NXDOMAIN to every query.

Runs inside a test's own network namespace (never on the host's network), so
that "unknown name" gives the resolver's NOT_FOUND path without touching the
machine's real DNS server. Prints "ready" once bound.
"""
import socket
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1", 53))
print("ready", flush=True)
while True:
    query, peer = sock.recvfrom(4096)
    if len(query) < 12:
        continue
    # Same id; QR=1, the query's opcode and RD bit, RA=1, RCODE=3 (NXDOMAIN);
    # the question section is echoed, no answers.
    flags = 0x8000 | ((query[2] << 8) & 0x7900) | 0x0080 | 3
    reply = query[:2] + flags.to_bytes(2, "big") + query[4:6] + bytes(6)
    sock.sendto(reply + query[12:], peer)
