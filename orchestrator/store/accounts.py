"""Account-wide state every daemon shares: pauses (rejected credentials, an endpoint that does not
answer like VTEX), the request budget as a token bucket, and the pause after a 429."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from orchestrator.store.base import StoreBase
from orchestrator.store.tables import ACCOUNTS
from orchestrator.vtex.account import AccountPause


class AccountState(StoreBase):
    # -- account-wide state ------------------------------------------------------------------------

    def save_account_pause(self, account: str, pause: AccountPause | None, now: datetime) -> None:
        values = {
            "paused_until": pause.until if pause else None,
            "pause_reason": pause.reason[:300] if pause else None,
            "paused_since": pause.since if pause else None,
            "updated_at": now,
        }
        with self.engine.begin() as conn:
            updated = conn.execute(sa.update(ACCOUNTS).where(ACCOUNTS.c.account == account).values(**values))
            if updated.rowcount == 0:
                conn.execute(sa.insert(ACCOUNTS).values(account=account, **values))

    def take_budget(self, account: str, want: int, capacity: float, rate: float) -> tuple[int, float]:
        """Draw up to `want` request tokens from the account's shared bucket.

        Returns (granted, wait): `wait` is how long until a token could be had, or how long the
        account is throttled after a 429. One row lock serialises all daemons on the bucket."""
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    now = self.hooks.now(conn)
                    select = sa.select(ACCOUNTS).where(ACCOUNTS.c.account == account).with_for_update()
                    found = conn.execute(select).mappings().first()
                    fresh = {"budget_tokens": capacity, "budget_refilled_at": now, "throttled_until": None}
                    row: Mapping[str, Any] = dict(found) if found is not None else fresh
                    if found is None:
                        conn.execute(sa.insert(ACCOUNTS).values(account=account, updated_at=now, **row))
                    throttled = row["throttled_until"]
                    if throttled is not None and throttled > now:
                        return 0, (throttled - now).total_seconds()
                    tokens = capacity if row["budget_tokens"] is None else row["budget_tokens"]
                    refilled = row["budget_refilled_at"] or now
                    tokens = min(capacity, tokens + max(0.0, (now - refilled).total_seconds()) * rate)
                    granted = min(want, int(tokens + 1e-9))
                    tokens = max(0.0, tokens - granted)
                    conn.execute(
                        sa.update(ACCOUNTS)
                        .where(ACCOUNTS.c.account == account)
                        .values(budget_tokens=tokens, budget_refilled_at=now, updated_at=now)
                    )
                    return granted, 0.0 if granted else (1.0 - tokens) / rate
            except sa.exc.IntegrityError as exc:  # two daemons created the row at once: read it again
                if attempt == 2 or not self.hooks.is_duplicate_key(exc):
                    raise
        raise AssertionError("unreachable")

    def throttle_account(self, account: str, seconds: float) -> None:
        """A 429: every daemon of the account holds its calls for `seconds` (never shortens a pause)."""
        with self.engine.begin() as conn:
            now = self.hooks.now(conn)
            until = now + timedelta(seconds=seconds)
            updated = conn.execute(
                sa.update(ACCOUNTS)
                .where(
                    ACCOUNTS.c.account == account,
                    sa.or_(ACCOUNTS.c.throttled_until.is_(None), ACCOUNTS.c.throttled_until < until),
                )
                .values(throttled_until=until, updated_at=now)
            )
            if (
                updated.rowcount == 0
                and conn.execute(sa.select(ACCOUNTS.c.account).where(ACCOUNTS.c.account == account)).first()
                is None
            ):
                conn.execute(
                    sa.insert(ACCOUNTS).values(account=account, throttled_until=until, updated_at=now)
                )

    def account_pause(self, account: str) -> AccountPause | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ACCOUNTS).where(ACCOUNTS.c.account == account)).mappings().first()
        return _pause(row)

    def account_throttles(self) -> dict[str, datetime]:
        """Accounts VTEX rate-limited (429), and until when their calls wait (the server's clock)."""
        with self.engine.connect() as conn:
            now = self.hooks.now(conn)
            rows = conn.execute(
                sa.select(ACCOUNTS.c.account, ACCOUNTS.c.throttled_until).where(
                    ACCOUNTS.c.throttled_until > now
                )
            ).all()
        return {account: until for account, until in rows}

    def account_pauses(self) -> list[AccountPause]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(sa.select(ACCOUNTS).where(ACCOUNTS.c.paused_until.is_not(None))).mappings().all()
            )
        return [p for p in (_pause(r) for r in rows) if p is not None]


def _pause(row: Any) -> AccountPause | None:
    if row is None or row["paused_until"] is None:
        return None
    return AccountPause(
        row["account"],
        row["paused_until"],
        row["pause_reason"] or "",
        row["paused_since"] or row["paused_until"],
    )
