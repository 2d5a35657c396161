"""Serving the sandbox over real HTTP on the loopback interface, in the foreground or in a thread.

`--port 0` picks a free port; the chosen URL is printed (and returned by `ServerThread.start`) so
scripts and tests can find it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import uvicorn

from orchestrator.sandbox.app import Sandbox, create_app


class _QuietDrops(logging.Filter):
    """A dropped connection is a fault we inject on purpose; uvicorn need not report it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say they are TCP, and
    # without it keep-alive responses stall ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _config(sandbox: Sandbox, log_level: str) -> uvicorn.Config:
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    return uvicorn.Config(
        create_app(sandbox),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        backlog=2048,
    )


def serve_forever(
    sandbox: Sandbox, host: str, port: int, *, log_level: str = "warning", on_ready: Any = None
) -> None:
    sock = _bind(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    if on_ready is not None:
        on_ready(url)
    server = uvicorn.Server(_config(sandbox, log_level))
    asyncio.run(server.serve(sockets=[sock]))


class ServerThread:
    """The sandbox on a background thread of this process (for the demo and tests)."""

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        self._sock = _bind(host, port)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        # uvicorn installs signal handlers only on the main thread, so this server leaves the
        # host process's SIGINT/SIGTERM alone.
        self._server = uvicorn.Server(_config(sandbox, "warning"))
        self._thread = threading.Thread(target=self._run, name="vtex-sandbox", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self) -> str:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the sandbox server failed to start")
            threading.Event().wait(0.01)
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
