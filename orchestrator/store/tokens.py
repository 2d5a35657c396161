"""The HTTP API's bearer tokens (created with a role and an optional expiry, found by their hash,
revoked by name) and the console's sessions opened with them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from orchestrator.store.base import StoreBase
from orchestrator.store.tables import API_TOKENS, CONSOLE_SESSIONS


@dataclass(frozen=True)
class TokenRecord:
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None = None


class Tokens(StoreBase):
    def add_token(
        self, name: str, role: str, token_hash: str, now: datetime, expires_at: datetime | None = None
    ) -> bool:
        """False when a token of that name exists (revoked ones too: names stay unique for audit)."""
        with self.engine.begin() as conn:
            if conn.scalar(sa.select(API_TOKENS.c.name).where(API_TOKENS.c.name == name)) is not None:
                return False
            conn.execute(
                sa.insert(API_TOKENS).values(
                    name=name, role=role, token_hash=token_hash, created_at=now, expires_at=expires_at
                )
            )
        return True

    def token_by_hash(self, token_hash: str, now: datetime) -> TokenRecord | None:
        """The live token with this hash; None if unknown, revoked or expired."""
        with self.engine.connect() as conn:
            query = sa.select(API_TOKENS).where(API_TOKENS.c.token_hash == token_hash, *_live(now))
            row = conn.execute(query).mappings().first()
        return _record(row) if row is not None else None

    # -- console sessions ----------------------------------------------------------------------

    def start_session(self, id_hash: str, token_name: str, now: datetime, expires_at: datetime) -> None:
        """A console login; sessions ended or expired for a day are cleared on the way."""
        s = CONSOLE_SESSIONS.c
        with self.engine.begin() as conn:
            conn.execute(sa.delete(CONSOLE_SESSIONS).where(s.expires_at < now - timedelta(days=1)))
            conn.execute(sa.delete(CONSOLE_SESSIONS).where(s.ended_at < now - timedelta(days=1)))
            conn.execute(
                sa.insert(CONSOLE_SESSIONS).values(
                    id_hash=id_hash, token_name=token_name, created_at=now, expires_at=expires_at
                )
            )

    def session_token(self, id_hash: str, now: datetime) -> TokenRecord | None:
        """The token a live session was opened with: the session not ended nor expired, the token
        neither revoked nor expired (revoking a token ends its sessions at once)."""
        s = CONSOLE_SESSIONS.c
        query = (
            sa.select(API_TOKENS)
            .join(CONSOLE_SESSIONS, s.token_name == API_TOKENS.c.name)
            .where(s.id_hash == id_hash, s.ended_at.is_(None), s.expires_at > now, *_live(now))
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _record(row) if row is not None else None

    def end_session(self, id_hash: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(CONSOLE_SESSIONS)
                .where(CONSOLE_SESSIONS.c.id_hash == id_hash, CONSOLE_SESSIONS.c.ended_at.is_(None))
                .values(ended_at=now)
            )

    def touch_token(self, name: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(API_TOKENS).where(API_TOKENS.c.name == name).values(last_used_at=now))

    def revoke_token(self, name: str, now: datetime) -> bool:
        c = API_TOKENS.c
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(API_TOKENS).where(c.name == name, c.revoked_at.is_(None)).values(revoked_at=now)
            )
        return result.rowcount == 1

    def tokens(self) -> list[TokenRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(API_TOKENS).order_by(API_TOKENS.c.created_at)).mappings().all()
        return [_record(r) for r in rows]


def _live(now: datetime) -> list[sa.ColumnElement[bool]]:
    c = API_TOKENS.c
    return [c.revoked_at.is_(None), sa.or_(c.expires_at.is_(None), c.expires_at > now)]


def _record(row: sa.RowMapping) -> TokenRecord:
    return TokenRecord(
        row["name"], row["role"], row["created_at"], row["revoked_at"], row["last_used_at"], row["expires_at"]
    )
