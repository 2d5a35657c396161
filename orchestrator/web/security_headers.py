"""The headers every answer of `serve` carries, pages and API alike.

- Framing is forbidden (`X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`): a console page
  framed by another page on the same host had its Cancel button clicked through an invisible frame.
- The Content-Security-Policy lets pages load scripts and styles from this server only, never
  inline (the console's are files under `/static/`): text that slipped past escaping could not
  run. Forms post only here.
- `Cache-Control: no-store` on everything but the static files: pages and API answers carry
  customer data and order state, which no shared or browser cache should keep.
- `X-Content-Type-Options: nosniff` and `Referrer-Policy: same-origin`: order ids in the URL never
  go to another site (`no-referrer` would make browsers send `Origin: null` on our own forms, which
  the login form's origin check must see).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import MutableHeaders

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
STATIC_PREFIX = "/static/"

ASGIApp = Any


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith(STATIC_PREFIX)

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Frame-Options"] = "DENY"
                headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)
