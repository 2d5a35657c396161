"""Listening sockets bound up front (port 0 picks a free one, and its URL is known before serving),
and uvicorn for the ASGI apps (the sandbox)."""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Any

from orchestrator.errors import Unavailable

if TYPE_CHECKING:
    import uvicorn


class ListenError(Unavailable):
    """A port cannot be listened on; the message names the port and the setting that chose it."""


def bind(host: str, port: int, *, setting: str = "the port", backlog: int = 2048) -> socket.socket:
    """A listening TCP socket, or ListenError saying in one line why there cannot be one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        reason = f"unknown host ({exc.strerror})"
        raise ListenError(f"cannot listen on {host}:{port} ({setting}): {reason}") from None
    family, _type, proto, _name, address = infos[0]
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say they are TCP, and
    # without it keep-alive responses stall ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = "the port is already in use (another orchestrator, or another program?)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = "this machine has no such address"
        elif exc.errno == errno.EACCES:
            reason = "not allowed (ports below 1024 need privileges)"
        else:
            reason = exc.strerror or type(exc).__name__
        raise ListenError(f"cannot listen on {host}:{port} ({setting}): {reason}") from None
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def server_for(
    app: Any, log_level: str = "warning", *, backlog: int = 2048, **options: Any
) -> uvicorn.Server:
    """uvicorn for `app`. `backlog` is also how many connections asyncio accepts in one go before
    any of them reaches the protocol, so a server that bounds its connections keeps it small."""
    import uvicorn  # noqa: PLC0415  (start-up: only `serve` and the sandbox need it)

    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="auto",  # `serve` closes its VTEX clients when it stops
        timeout_keep_alive=30,
        backlog=backlog,
        **options,
    )
    return uvicorn.Server(config)
