"""A reverse proxy standing in for Render's edge in tests: it listens on loopback, connects to the service from
its own address (e.g. 127.0.0.2, so the service sees a peer that is not the reader) and forwards
X-Forwarded-For as Render's proxy does behind Cloudflare: `<what the reader sent, if anything>, <reader>,
<a Cloudflare edge address>`. One request per connection (Connection: close both ways); bounded reads."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

CLOUDFLARE_EDGE = "104.22.17.40"  # in 104.16.0.0/13, one of Cloudflare's published ranges
MAX_HEAD = 65536


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
        if len(data) > MAX_HEAD:
            raise ValueError("request head too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _forwarded_head(head: bytes, reader: str) -> tuple[bytes, int]:
    lines = head.split(b"\r\n")
    kept, forwarded, length = [lines[0]], b"", 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"x-forwarded-for":
            forwarded = value.strip()
        elif lowered == b"connection":
            continue
        else:
            if lowered == b"content-length":
                length = int(value.strip())
            kept.append(line)
    chain = (forwarded + b", " if forwarded else b"") + f"{reader}, {CLOUDFLARE_EDGE}".encode()
    kept += [b"X-Forwarded-For: " + chain, b"X-Forwarded-Proto: https", b"Connection: close"]
    return b"\r\n".join(kept) + b"\r\n\r\n", length


@contextmanager
def forwarding_proxy(upstream: tuple[str, int], source_address: str) -> Iterator[tuple[str, int]]:
    """Listen on 127.0.0.1:<free port>; forward each request to `upstream` from `source_address`."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            client: socket.socket = self.request
            client.settimeout(30)
            head, body = _read_head(client)
            if not head:
                return
            head, length = _forwarded_head(head, self.client_address[0])
            while len(body) < length:
                part = client.recv(65536)
                if not part:
                    break
                body += part
            with socket.create_connection(upstream, timeout=30, source_address=(source_address, 0)) as server:
                server.sendall(head + body)
                while part := server.recv(65536):
                    client.sendall(part)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[:2]
    finally:
        server.shutdown()
        server.server_close()
