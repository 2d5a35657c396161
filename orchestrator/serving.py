"""Serving an ASGI app over real HTTP with uvicorn: a socket bound up front (port 0 picks a free
one and its URL is known before serving), used by the sandbox and by the daemon's metrics."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say they are TCP, and
    # without it keep-alive responses stall ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


class _EmbeddedServer(uvicorn.Server):
    """Runs inside another program's event loop (the daemon's), which owns SIGTERM and SIGINT."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server_for(app: Any, log_level: str = "warning", *, embedded: bool = False) -> uvicorn.Server:
    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, lifespan="off", timeout_keep_alive=30, backlog=2048
    )
    return _EmbeddedServer(config) if embedded else uvicorn.Server(config)
