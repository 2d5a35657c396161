"""Console sessions, kept server-side, and the forms' protection against other sites.

A login opens a session: a random id in an HttpOnly, SameSite=Strict cookie (Secure over HTTPS),
only its SHA-256 in `console_sessions`. Logging out ends the session there, so a copied cookie is
worth nothing afterwards; revoking or expiring the token it was opened with ends it too, on every
`serve` process at once. The cookie never holds the API token itself.

Forms carry a CSRF token, an HMAC of the session id: a page of another site can neither read the
cookie nor compute it. The login form, before any session exists, is protected the same way by a
short-lived cookie whose value the form must repeat (another site can neither set nor read it, and
SameSite=Strict keeps it off cross-site posts), and by refusing a post whose Origin is another
site's. The success banner after an action shows only a message signed for this session, so a
link cannot make the console say what it did not.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "orchestrator_session"
LOGIN_COOKIE = "orchestrator_login"
MAX_AGE = 12 * 3600  # a working day
LOGIN_MAX_AGE = 600  # seconds a login form stays usable


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def _mac(session_id: str, purpose: bytes) -> str:
    return hmac.new(session_id.encode(), purpose, hashlib.sha256).hexdigest()


def csrf_token(session_id: str) -> str:
    return _mac(session_id, b"orchestrator-console-csrf")


def csrf_ok(session_id: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(csrf_token(session_id), given)


def sign(session_id: str, message: str) -> str:
    """The signature that lets `message` show in this session's success banner."""
    return _mac(session_id, b"orchestrator-console-banner:" + message.encode())


def signed_ok(session_id: str, message: str, signature: str | None) -> bool:
    return signature is not None and hmac.compare_digest(sign(session_id, message), signature)


def _cookie(response: Response, request: Request, name: str, value: str, *, max_age: int, path: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=path,
    )


def start(response: Response, request: Request, session_id: str) -> None:
    _cookie(response, request, COOKIE, session_id, max_age=MAX_AGE, path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/login")


def end(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")


def offer_login(response: Response, request: Request, nonce: str) -> None:
    """The login form's own cookie; the form repeats `nonce`."""
    _cookie(response, request, LOGIN_COOKIE, nonce, max_age=LOGIN_MAX_AGE, path="/login")


def login_form_ok(request: Request, given: str | None) -> bool:
    """The login post comes from our own form: its nonce matches the cookie set with it, and its
    Origin (when the browser says) is this server."""
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or given is None or not hmac.compare_digest(expected, given):
        return False
    return same_origin(request)


def same_origin(request: Request) -> bool:
    """The request's Origin, when the browser sends one, is this server (a client that is not a
    browser sends none)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")
