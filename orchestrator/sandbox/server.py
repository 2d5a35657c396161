"""Serving the sandbox over real HTTP on the loopback interface, in the foreground or in a thread.

`--port 0` picks a free port; the chosen URL is printed (and returned by `ServerThread.start`) so
scripts and tests can find it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import uvicorn

from orchestrator.sandbox.app import Sandbox
from orchestrator.sandbox.routes import create_app
from orchestrator.serving import bind, server_for, url_of


class _QuietDrops(logging.Filter):
    """A dropped connection is a fault we inject on purpose; uvicorn need not report it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


def _server(sandbox: Sandbox, log_level: str) -> uvicorn.Server:
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    return server_for(create_app(sandbox), log_level)


def serve_forever(
    sandbox: Sandbox, host: str, port: int, *, log_level: str = "warning", on_ready: Any = None
) -> None:
    sock = bind(host, port, setting="orchestrator sandbox --port")
    if on_ready is not None:
        on_ready(url_of(sock))
    server = _server(sandbox, log_level)
    asyncio.run(server.serve(sockets=[sock]))


class ServerThread:
    """The sandbox on a background thread of this process (for the demo and tests)."""

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        self._sock = bind(host, port)
        self.url = url_of(self._sock)
        # uvicorn installs signal handlers only on the main thread, so this server leaves the
        # host process's SIGINT/SIGTERM alone.
        self._server = _server(sandbox, "warning")
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
