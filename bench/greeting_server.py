#!/usr/bin/env python3
"""The seed's own "Thank you for connecting" server (the Python socket
tutorial pattern), the reference for the accept-cost benchmark. Binds
127.0.0.1:0, prints "port P", then: accept, send the greeting, close."""
import socket
import sys

s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4096)
print("port", s.getsockname()[1], flush=True)
while True:
    c, addr = s.accept()
    c.send(b"Thank you for connecting")
    c.close()
