"""Console sessions without server-side state: the cookie carries the user's API token (HttpOnly,
SameSite=Strict, Secure over HTTPS), so every `serve` process on the database accepts it and a
revoked token ends its sessions at once. The CSRF token of a form is an HMAC of that token: a
page of another site can neither read the cookie nor compute the form's token."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "orchestrator_session"
MAX_AGE = 12 * 3600  # a working day


def csrf_token(api_token: str) -> str:
    return hmac.new(api_token.encode(), b"orchestrator-console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(api_token: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(csrf_token(api_token), given)


def start(response: Response, request: Request, api_token: str) -> None:
    response.set_cookie(
        COOKIE,
        api_token,
        max_age=MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def end(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")
