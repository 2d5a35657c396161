"""Account-wide state every daemon shares: pauses (rejected credentials, an endpoint that does not
answer like VTEX), the request budget as a token bucket, and the pause after a 429."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from orchestrator.store.base import StoreBase
from orchestrator.store.tables import ACCOUNTS
from orchestrator.vtex.budget import Grant
from orchestrator.vtex.pauses import AccountPause
from orchestrator.vtex.recovery import PROBE_TIMEOUT, Recovery, allowance, answered, throttled, unanswered


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

    def take_budget(
        self, account: str, want: int, capacity: float, rate: float, probe_timeout: float = PROBE_TIMEOUT
    ) -> Grant:
        """Draw up to `want` request tokens from the account's shared bucket, as its recovery after
        429s allows (nothing while paused, the one probe, then the ramp).

        One row lock serialises all daemons on the bucket; the recovery's times are kept by the
        database server's clock, so every daemon sees the same pause, probe and ramp."""
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    now = self.hooks.now(conn)
                    row = self._locked_account(conn, account, now, capacity)
                    state, allow = allowance(_recovery(row), now.timestamp(), rate, probe_timeout)
                    values: dict[str, Any] = {**_recovery_values(state), "updated_at": now}
                    if allow.wait or allow.probe:  # nothing accrues until the ramp: it starts empty
                        values.update(budget_tokens=0.0, budget_refilled_at=now)
                        granted, wait = (1, 0.0) if allow.probe else (0, allow.wait)
                    else:
                        size = allow.capacity or capacity
                        speed = allow.rate or rate
                        tokens = capacity if row["budget_tokens"] is None else row["budget_tokens"]
                        refilled = row["budget_refilled_at"] or now
                        tokens = min(size, tokens + max(0.0, (now - refilled).total_seconds()) * speed)
                        granted = min(want, int(tokens + 1e-9))
                        tokens = max(0.0, tokens - granted)
                        values.update(budget_tokens=tokens, budget_refilled_at=now)
                        wait = 0.0 if granted else (1.0 - tokens) / speed
                    conn.execute(sa.update(ACCOUNTS).where(ACCOUNTS.c.account == account).values(**values))
                    return Grant(granted, wait, allow.probe, state, now.timestamp())
            except sa.exc.IntegrityError as exc:  # two daemons created the row at once: read it again
                if attempt == 2 or not self.hooks.is_duplicate_key(exc):
                    raise
        raise AssertionError("unreachable")

    def _locked_account(
        self, conn: sa.Connection, account: str, now: datetime, capacity: float = 0.0
    ) -> sa.RowMapping:
        """The account's row, locked for this transaction (created when there is none yet)."""
        select = sa.select(ACCOUNTS).where(ACCOUNTS.c.account == account).with_for_update()
        found = conn.execute(select).mappings().first()
        if found is not None:
            return found
        fresh = {"budget_tokens": capacity, "budget_refilled_at": now, "throttle_strikes": 0}
        conn.execute(sa.insert(ACCOUNTS).values(account=account, updated_at=now, **fresh))
        return conn.execute(select).mappings().one()

    def throttle_account(self, account: str, retry_after: float | None) -> None:
        """A 429: every daemon of the account pauses (longer for 429s in a row; never shortening a
        pause), then probes again."""
        self._change_recovery(account, lambda state, now: throttled(state, now, retry_after))

    def probe_done(self, account: str, was_answered: bool) -> None:
        """The probe after a pause was answered (not a 429): the ramp begins, for every daemon. It
        got no answer at all: it told nothing, and the next request, any daemon's, probes."""
        if was_answered:
            self._change_recovery(account, answered)
        else:
            self._change_recovery(account, lambda state, _now: unanswered(state))

    def save_recovery(self, account: str, recovery: Recovery) -> None:
        """One daemon's own recovery (SQLite), in epoch seconds: for `status` and the metrics."""
        self._change_recovery(account, lambda _state, _now: recovery)

    def _change_recovery(self, account: str, change: Callable[[Recovery, float], Recovery]) -> None:
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    now = self.hooks.now(conn)
                    row = self._locked_account(conn, account, now)
                    state = change(_recovery(row), now.timestamp())
                    values: dict[str, Any] = {**_recovery_values(state), "updated_at": now}
                    conn.execute(sa.update(ACCOUNTS).where(ACCOUNTS.c.account == account).values(**values))
                    return
            except sa.exc.IntegrityError as exc:
                if attempt == 2 or not self.hooks.is_duplicate_key(exc):
                    raise

    def account_recoveries(self) -> dict[str, tuple[Recovery, float]]:
        """Accounts recovering from 429s (paused, probing or ramping), each with the database's
        clock's now (epoch seconds) to read the recovery's phase by."""
        with self.engine.connect() as conn:
            now = self.hooks.now(conn)
            rows = conn.execute(sa.select(ACCOUNTS).where(ACCOUNTS.c.throttled_until.is_not(None))).mappings()
            return {row["account"]: (_recovery(row), now.timestamp()) for row in rows}

    def account_pause(self, account: str) -> AccountPause | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ACCOUNTS).where(ACCOUNTS.c.account == account)).mappings().first()
        return _pause(row)

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


def _stamp(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _when(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _recovery(row: sa.RowMapping) -> Recovery:
    return Recovery(
        strikes=row["throttle_strikes"] or 0,
        paused_until=_stamp(row["throttled_until"]),
        probe_at=_stamp(row["probe_at"]),
        ramp_from=_stamp(row["ramp_from"]),
    )


def _recovery_values(state: Recovery) -> dict[str, Any]:
    return {
        "throttle_strikes": state.strikes,
        "throttled_until": _when(state.paused_until),
        "probe_at": _when(state.probe_at),
        "ramp_from": _when(state.ramp_from),
    }
