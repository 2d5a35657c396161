"""The HTTP API's bearer tokens: created with a role, found by their hash, revoked by name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from orchestrator.store.base import StoreBase
from orchestrator.store.tables import API_TOKENS


@dataclass(frozen=True)
class TokenRecord:
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class Tokens(StoreBase):
    def add_token(self, name: str, role: str, token_hash: str, now: datetime) -> bool:
        """False when a token of that name exists (revoked ones too: names stay unique for audit)."""
        with self.engine.begin() as conn:
            if conn.scalar(sa.select(API_TOKENS.c.name).where(API_TOKENS.c.name == name)) is not None:
                return False
            conn.execute(
                sa.insert(API_TOKENS).values(name=name, role=role, token_hash=token_hash, created_at=now)
            )
        return True

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        """The live token with this hash; None if unknown or revoked."""
        c = API_TOKENS.c
        with self.engine.connect() as conn:
            query = sa.select(API_TOKENS).where(c.token_hash == token_hash, c.revoked_at.is_(None))
            row = conn.execute(query).mappings().first()
        return _record(row) if row is not None else None

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


def _record(row: sa.RowMapping) -> TokenRecord:
    return TokenRecord(row["name"], row["role"], row["created_at"], row["revoked_at"], row["last_used_at"])
