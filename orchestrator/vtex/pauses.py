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

A 403 is narrower: the app key lacks the License Manager resource of one kind of call (VTEX's
per-endpoint permissions, `orchestrator.vtex.permissions`). Only the calls needing that resource
pause; the account's other calls go on. When the pause ends, one call needing it goes first (the
probe) while the others wait for its answer; a 403 pauses again, anything else lifts the pause,
so a permission granted in VTEX Admin takes effect without a restart. These pauses are stored in
`vtex_permissions`, for `status` and for the other daemons.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.vtex.permissions import resource_of


@dataclass(frozen=True)
class AccountPause:
    account: str
    until: datetime
    reason: str
    since: datetime

    @property
    def by_operator(self) -> bool:
        """An operator's pause (`orchestrator pause`, the console): held until someone resumes
        it, whatever VTEX says of the credentials."""
        return self.reason.startswith(OPERATOR_PAUSE)


# An operator's pause is stored like the others, marked by its reason (`ops.pause.pause_account`).
OPERATOR_PAUSE = "paused by "


@dataclass(frozen=True)
class PermissionPause:
    """Calls needing `resource` wait until `until`: VTEX refused `operation` with 403 (`message`,
    VTEX's words) since `since`."""

    account: str
    resource: str
    until: datetime
    since: datetime
    operation: str
    message: str


PersistFn = Callable[[AccountPause | None], None]
PersistPermissionFn = Callable[[str, PermissionPause | None], None]  # resource, its pause or its end

# After a permission pause, the one call that goes first has this long to answer before another
# call needing the resource may go (a probe lost with a crashed step must not block it for ever).
PERMISSION_PROBE_TIMEOUT = timedelta(seconds=30)


ENDPOINT_FIRST_PAUSE = timedelta(seconds=15)
ENDPOINT_LONGEST_PAUSE = timedelta(minutes=5)


class AccountGuard:
    def __init__(
        self,
        account: str,
        pause_for: timedelta,
        log: Any,
        persist: PersistFn | None = None,
        persist_permission: PersistPermissionFn | None = None,
    ) -> None:
        self.account = account
        self.pause_for = pause_for
        self._log = log
        self.persist = persist
        self.persist_permission = persist_permission
        self.pause_state: AccountPause | None = None
        self.permissions: dict[str, PermissionPause] = {}  # by resource
        self._probing: dict[str, datetime] = {}
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

    def permission_missing(
        self, now: datetime, operation: str, message: str, **context: Any
    ) -> PermissionPause:
        """VTEX answered 403 to `operation`: the calls needing its resource pause (once per pause
        period; a 403 answering the probe starts the next period)."""
        resource = resource_of(operation)
        existing = self.permissions.get(resource)
        if existing is not None and now < existing.until:
            return existing
        self._probing.pop(resource, None)
        pause = PermissionPause(
            self.account,
            resource,
            now + self.pause_for,
            existing.since if existing else now,
            operation,
            message[:300],
        )
        self.permissions[resource] = pause
        self._log.error(
            "VTEX refused a call for a missing permission; calls needing it pause, the others go on",
            account=self.account,
            resource=resource,
            resume_at=pause.until.isoformat(),
            action=operation,
            **context,
        )
        if self.persist_permission:
            self.persist_permission(resource, pause)
        return pause

    def permission_wait(self, operation: str, now: datetime) -> datetime | None:
        """Until when a call of `operation` must wait for its resource's pause, or None when it
        may go now. Once the pause is over, the first call to ask is the probe: the others wait
        for its answer (at most PERMISSION_PROBE_TIMEOUT)."""
        resource = resource_of(operation)
        pause = self.permissions.get(resource)
        if pause is None:
            return None
        if now < pause.until:
            return pause.until
        probing = self._probing.get(resource)
        if probing is not None and now - probing < PERMISSION_PROBE_TIMEOUT:
            return probing + PERMISSION_PROBE_TIMEOUT
        self._probing[resource] = now
        return None

    def call_accepted(self, **context: Any) -> None:
        """A call went through: whatever pause there was is over, and the permission its kind of
        call needs (`action`) is there."""
        self._endpoint_strikes = 0
        resource = resource_of(str(context.get("action", "")))
        if self.permissions.pop(resource, None) is not None:
            self._probing.pop(resource, None)
            self._log.info(
                "VTEX accepts a call it refused for a missing permission; calls needing it go on",
                account=self.account,
                resource=resource,
                **context,
            )
            if self.persist_permission:
                self.persist_permission(resource, None)
        if self.pause_state is None:
            return
        self._log.info("VTEX accepts the credentials again; work resumes", account=self.account, **context)
        self.pause_state = None
        if self.persist:
            self.persist(None)

    def adopt(self, stored: AccountPause | None, permissions: list[PermissionPause] | None = None) -> None:
        """Take the stored state as the truth: a pause another daemon recorded, or its lifting."""
        self.pause_state = stored
        if permissions is not None:
            self.permissions = {p.resource: p for p in permissions}
