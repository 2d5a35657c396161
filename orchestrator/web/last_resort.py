"""What `serve` answers when a page or route fails in a way nothing nearer handled.

Starlette's own answer is a bare "Internal Server Error", and uvicorn then logs the exception's
whole traceback, whose text may quote a database row. Here a database that fails is a 503 saying
so in one line (the client or the operator can retry), anything else a 500 whose log line names
the exception's type and the path, never its text. An API route gets the API's JSON error shape,
anything else plain text.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.log import get_logger
from orchestrator.store.errors import explain, is_database_error
from orchestrator.web.http import answers_json


class LastResort:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = get_logger(component="serve")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if is_database_error(exc):
                status, text = 503, f"database: {explain(exc)}"
            else:
                self.log.error("request failed", path=scope.get("path"), error=type(exc).__name__)
                status, text = 500, "internal error; the server's log has the details"
            if started:
                return  # the answer is on its way already: nothing more can be said on it
            if answers_json(scope):
                body, kind = json.dumps({"error": text}).encode(), b"application/json"
            else:
                body, kind = (text + "\n").encode(), b"text/plain; charset=utf-8"
            headers = [(b"content-type", kind), (b"content-length", b"%d" % len(body))]
            if status == 503:
                headers.append((b"retry-after", b"5"))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
