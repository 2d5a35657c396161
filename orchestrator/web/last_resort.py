"""What `serve` answers when a page or route fails in a way nothing nearer handled.

Starlette's own answer is a bare "Internal Server Error", and uvicorn then logs the exception's
whole traceback, whose text may quote a database row. Here a database that fails is a 503 saying
so in one line (the client or the operator can retry), anything else a 500 whose log line names
the exception's type and the path, never its text.
"""

from __future__ import annotations

from typing import Any

from orchestrator.log import get_logger
from orchestrator.store.errors import explain, is_database_error

ASGIApp = Any


class LastResort:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = get_logger(component="api")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if is_database_error(exc):
                status, text = 503, f"database: {explain(exc)}"
            else:
                self.log.error("page failed", path=scope.get("path"), error=type(exc).__name__)
                status, text = 500, "internal error; the server's log has the details"
            if started:
                return  # the answer is on its way already: nothing more can be said on it
            body = (text + "\n").encode()
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
            ]
            if status == 503:
                headers.append((b"retry-after", b"5"))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
