"""Account-wide pauses: when VTEX rejects the credentials, all work for the account stops at once.

Failing every order one by one on a 401 would bury the real cause under thousands of failures and
send thousands of doomed requests. Instead the first 401/403 pauses the account: one clear log line,
one entry in `status`, no claims until the pause ends; then one order probes, and the first call
VTEX accepts lifts the pause. The pause is stored in `vtex_accounts`, so every daemon sharing the
database stops too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class AccountPause:
    account: str
    until: datetime
    reason: str
    since: datetime


PersistFn = Callable[[AccountPause | None], None]


class AccountGuard:
    def __init__(
        self,
        account: str,
        pause_for: timedelta,
        log: Any,
        persist: PersistFn | None = None,
    ) -> None:
        self.account = account
        self.pause_for = pause_for
        self._log = log
        self.persist = persist
        self.pause_state: AccountPause | None = None

    def is_paused(self, now: datetime) -> bool:
        return self.pause_state is not None and now < self.pause_state.until

    def paused_until(self) -> datetime | None:
        return self.pause_state.until if self.pause_state else None

    def credentials_rejected(self, now: datetime, http_status: int | None, **context: Any) -> datetime:
        """Pause the account (once per pause period); returns when work resumes."""
        if self.is_paused(now):
            assert self.pause_state is not None
            return self.pause_state.until
        since = self.pause_state.since if self.pause_state else now
        reason = (
            f"VTEX rejected the credentials (HTTP {http_status}): check VTEX_APP_KEY and VTEX_APP_TOKEN, "
            "and the app key's permissions"
        )
        self.pause_state = AccountPause(self.account, now + self.pause_for, reason, since)
        self._log.error(
            "VTEX rejected the credentials; pausing all work for the account",
            account=self.account,
            http_status=http_status,
            resume_at=self.pause_state.until.isoformat(),
            **context,
        )
        if self.persist:
            self.persist(self.pause_state)
        return self.pause_state.until

    def call_accepted(self, **context: Any) -> None:
        """A call went through: whatever pause there was is over."""
        if self.pause_state is None:
            return
        self._log.info("VTEX accepts the credentials again; work resumes", account=self.account, **context)
        self.pause_state = None
        if self.persist:
            self.persist(None)

    def adopt(self, stored: AccountPause | None) -> None:
        """Take the stored state as the truth: a pause another daemon recorded, or its lifting."""
        self.pause_state = stored
