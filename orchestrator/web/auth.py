"""Bearer tokens and roles, and the one authentication backend of API and console. A token is 32
random bytes shown once; only its SHA-256 is stored (a fast hash is right for a random secret of
that size: there is nothing to brute-force).

    intake    push orders, invoices and tracking numbers
    viewer    read: orders, their history, status, metrics
    operator  read, push, and retry or cancel orders

A request is authenticated by Starlette's `AuthenticationMiddleware` with `TokenBackend`: a
bearer token in the `Authorization` header, or a console session's cookie. Its scopes are the
role's permissions plus how it came (`API` or `CONSOLE`), and each route `requires` both: the API
takes no cookie (a cookie rides along on requests another site makes a browser send), and a page
takes no header (a browser cannot add one to a link).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from orchestrator.clock import utcnow
from orchestrator.store.store import Store
from orchestrator.store.tokens import TokenRecord
from orchestrator.web.session import COOKIE

ROLES = ("intake", "viewer", "operator")
PUSH, READ, OPERATE = "push", "read", "operate"
API, CONSOLE = "api", "console"  # how the caller came: a bearer header, or a console session
ALLOWED = {"intake": {PUSH}, "viewer": {READ}, "operator": {PUSH, READ, OPERATE}}
PREFIX = "vo_"  # recognisable in a secret scanner, and in a misplaced paste
TOUCH_EVERY = 60.0  # seconds between writes of a token's last use


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller(BaseUser):
    """Who is calling: the token's name and role."""

    name: str
    role: str

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def identity(self) -> str:
        return self.name

    @property
    def actor(self) -> str:
        """How the history names who did something through the API."""
        return f"api:{self.name}"

    def may(self, permission: str) -> bool:
        return permission in ALLOWED.get(self.role, set())


class Authenticator:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._touched: dict[str, float] = {}

    def caller(self, authorization: str | None) -> Caller | None:
        """The caller a `Bearer` header names, or None (missing, malformed, unknown or revoked)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = authorization.removeprefix("Bearer ").strip()
        if not token:
            return None
        return self._seen(self._store.token_by_hash(token_hash(token), utcnow()))

    def session_caller(self, session_id: str) -> Caller | None:
        """The caller a console session belongs to, or None (unknown, ended, expired, or its
        token revoked or expired)."""
        if not session_id:
            return None
        return self._seen(self._store.session_token(token_hash(session_id), utcnow()))

    def _seen(self, record: TokenRecord | None) -> Caller | None:
        if record is None:
            return None
        now = time.monotonic()
        if now - self._touched.get(record.name, -TOUCH_EVERY) >= TOUCH_EVERY:
            self._touched[record.name] = now
            self._store.touch_token(record.name, utcnow())
        return Caller(record.name, record.role)


class TokenBackend(AuthenticationBackend):
    """A bearer header, or else a console session's cookie, to a `Caller` with its scopes. Nothing
    (or an unknown, revoked or expired token) is no caller: the route's `requires` says what then
    (401 for the API, the login page for the console)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if header is not None:
            caller = await run_in_threadpool(self._authenticator.caller, header)
            way = API
        elif conn.cookies.get(COOKIE):
            caller = await run_in_threadpool(self._authenticator.session_caller, conn.cookies[COOKIE])
            way = CONSOLE
        else:
            return None
        if caller is None:
            return None
        return AuthCredentials([way, *sorted(ALLOWED.get(caller.role, ()))]), caller
