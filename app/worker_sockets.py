"""Each uvicorn worker listens on a socket of its own (SO_REUSEPORT), so the kernel spreads connections over them.

uvicorn binds one socket in the supervisor and hands it to every worker. Then whichever worker wakes first accepts
a whole burst of connections: a client that opens its keep-alive connections at once (a proxy, a load generator)
ends up with all of them on one worker, and the other workers idle (measured: 8 connections, 2 workers, 400
requests: 400 and 0). With one listening socket per worker on the same address, the kernel assigns each new
connection to one of them by its address and port.
"""

from __future__ import annotations

import socket
from typing import Any


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) that other processes may bind too (every one with SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class WorkerSocket:
    """Stands in the supervisor for the socket it hands to each worker: unpickled in the worker (uvicorn starts
    workers with spawn), it is that worker's own `reuse_port_socket`."""

    def __init__(self, host: str, port: int) -> None:
        reuse_port_socket(host, port).close()  # the address is free to bind: fail here, not in every worker
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return reuse_port_socket, (self.host, self.port)

    def close(self) -> None:
        """Nothing is open in the supervisor."""
