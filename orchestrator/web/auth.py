"""Bearer tokens and roles. A token is 32 random bytes shown once; only its SHA-256 is stored
(a fast hash is right for a random secret of that size: there is nothing to brute-force).

    intake    push orders, invoices and tracking numbers
    viewer    read: orders, their history, status, metrics
    operator  read, push, and retry or cancel orders
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from orchestrator.clock import utcnow
from orchestrator.store.store import Store
from orchestrator.store.tokens import TokenRecord

ROLES = ("intake", "viewer", "operator")
PUSH, READ, OPERATE = "push", "read", "operate"
ALLOWED = {"intake": {PUSH}, "viewer": {READ}, "operator": {PUSH, READ, OPERATE}}
PREFIX = "vo_"  # recognisable in a secret scanner, and in a misplaced paste
TOUCH_EVERY = 60.0  # seconds between writes of a token's last use


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    name: str
    role: str

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
