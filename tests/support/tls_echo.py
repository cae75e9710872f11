#!/usr/bin/env python3
"""A TLS echo server for tests, independent of the engine: Python's ssl
module (OpenSSL underneath, but none of our code). Listens on HOST port 0,
prints the port on one line, then serves each connection in a thread: the
handshake, then every byte back until the peer closes. A failed handshake
just closes that connection.

    tls_echo.py CERT KEY [HOST]
"""
import socket
import ssl
import sys
import threading


def serve(ctx, conn):
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                tls.sendall(data)
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def main():
    cert, key = sys.argv[1], sys.argv[2]
    host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(ctx, conn), daemon=True).start()


if __name__ == "__main__":
    main()
