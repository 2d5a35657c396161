"""Account-wide pauses: when the trouble is the account's, not an order's, all its work stops.

Two kinds. VTEX rejects the credentials (401/403). Or the URL does not answer like VTEX at all: an
HTML page, a redirect, a body without end (a proxy, a WAF, a storefront URL set by mistake).
Failing every order one by one would bury the real cause under thousands of failures, send
thousands of doomed requests, and spend the orders' attempts on something that is not theirs.
Instead the first such answer pauses the account: one clear log line, one entry in `status`, no
claims until the pause ends; then one order probes, and the first call VTEX accepts lifts the
pause. Credentials pause for a fixed time; a misbehaving endpoint for longer each time it is seen
again (15 s, 30 s, ... up to 5 minutes), since it may be a passing outage of a proxy. The pause is
stored in `vtex_accounts`, so every daemon sharing the database stops too.
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


ENDPOINT_FIRST_PAUSE = timedelta(seconds=15)
ENDPOINT_LONGEST_PAUSE = timedelta(minutes=5)


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
        self._endpoint_strikes = 0

    def is_paused(self, now: datetime) -> bool:
        return self.pause_state is not None and now < self.pause_state.until

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

    def endpoint_failed(self, now: datetime, problem: str, **context: Any) -> datetime:
        """The URL answered something that is not VTEX: pause, for longer each time it recurs."""
        if self.is_paused(now):
            assert self.pause_state is not None
            return self.pause_state.until
        self._endpoint_strikes += 1
        pause = min(ENDPOINT_LONGEST_PAUSE, ENDPOINT_FIRST_PAUSE * 2 ** (self._endpoint_strikes - 1))
        since = self.pause_state.since if self.pause_state else now
        reason = f"VTEX_BASE_URL does not answer like VTEX: {problem}"
        self.pause_state = AccountPause(self.account, now + pause, reason[:300], since)
        self._log.error(
            "the endpoint does not answer like VTEX; pausing all work for the account",
            account=self.account,
            problem=problem,
            resume_at=self.pause_state.until.isoformat(),
            **context,
        )
        if self.persist:
            self.persist(self.pause_state)
        return self.pause_state.until

    def call_accepted(self, **context: Any) -> None:
        """A call went through: whatever pause there was is over."""
        self._endpoint_strikes = 0
        if self.pause_state is None:
            return
        self._log.info("VTEX accepts the credentials again; work resumes", account=self.account, **context)
        self.pause_state = None
        if self.persist:
            self.persist(None)

    def adopt(self, stored: AccountPause | None) -> None:
        """Take the stored state as the truth: a pause another daemon recorded, or its lifting."""
        self.pause_state = stored
