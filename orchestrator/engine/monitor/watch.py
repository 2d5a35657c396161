"""What a daemon says about itself and about VTEX, besides stepping orders: its heartbeat (who is
running, for `status`), one warning per 429 pause (a storm was visible only in a counter), and the
gauges refreshed every few seconds (orders per state, stuck orders by reason, pauses)."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator import __version__
from orchestrator.config.stuck_rules import StuckRules
from orchestrator.engine.monitor.metrics import Metrics
from orchestrator.store.daemons import HEARTBEAT_SECONDS, DaemonBeat

__all__ = ["HEARTBEAT_SECONDS", "Watch"]
from orchestrator.config.account_tables import DEFAULT_ACCOUNT
from orchestrator.store.thread import DatabaseThread
from orchestrator.vtex.budget import RequestBudget
from orchestrator.vtex.client import Call
from orchestrator.vtex.errors import RateLimited, VtexError
from orchestrator.vtex.pauses import AccountGuard


class Watch:
    def __init__(
        self,
        worker: str,
        database: DatabaseThread,
        log: Any,
        *,
        metrics: Metrics | None = None,
        stuck_rules: StuckRules | None = None,
    ) -> None:
        self._worker = worker
        self._db = database
        self._log = log
        self._metrics = metrics
        self._stuck_rules = stuck_rules
        self._started_at: datetime | None = None
        self._accounts: dict[str, _Watched] = {}

    @property
    def metrics(self) -> Metrics | None:
        return self._metrics

    def watch_account(self, name: str, guard: AccountGuard, budget: RequestBudget | None) -> None:
        self._accounts[name] = _Watched(guard, budget)

    # -- the client's observer ------------------------------------------------------------------

    def observe_call(self, call: Call, error: VtexError | None, account: str = DEFAULT_ACCOUNT) -> None:
        if self._metrics is not None:
            self._metrics.observe_call(call, error, account)
        watched = self._accounts.get(account)
        if not isinstance(error, RateLimited) or watched is None:
            return
        now = time.monotonic()
        if now < watched.quiet_until:
            watched.unreported_429s += 1
            return
        # The budget has paused by now: its pause, lengthened for 429s in a row, is the real one.
        budget = watched.budget
        pause = budget.paused_for if budget is not None else (error.retry_after or 60.0)
        watched.quiet_until = now + pause
        self._log.warning(
            "VTEX answered 429 (rate limit): every call of the account waits, then one goes first",
            account=watched.guard.account,
            pause_s=round(pause, 1),
            retry_after=error.retry_after,
            throttles_in_a_row=budget.recovery.strikes if budget is not None else None,
            operation=call.operation,
            order_id=call.order_id,
            more_429s_in_last_pause=watched.unreported_429s,
        )
        watched.unreported_429s = 0

    # -- scheduled ------------------------------------------------------------------------------

    async def heartbeat(self, now: datetime, *, stopped: bool = False) -> None:
        if self._started_at is None:
            self._started_at = now
        beat = DaemonBeat(
            self._worker,
            socket.gethostname(),
            os.getpid(),
            __version__,
            self._started_at,
            now,
            now if stopped else None,
        )
        await self._db.run(self._db.store.beat, beat)

    async def refresh_metrics(self, now: datetime, in_flight: int) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        store = self._db.store
        counts = await self._db.run(store.account_state_counts)
        oldest = await self._db.run(store.oldest_active_created_at)
        metrics.refresh_orders(counts, oldest, now)
        metrics.in_flight.set(in_flight)
        feeds = {f["account"]: f for f in await self._db.run(store.feeds)}
        for name, watched in self._accounts.items():
            budget = watched.budget
            throttled = budget.paused_for if budget is not None else 0.0
            phase, ramp = budget.recovery_phase() if budget is not None else ("normal", None)
            metrics.refresh_account(name, watched.guard.is_paused(now), throttled, phase, ramp)
            metrics.refresh_permissions(name, len(watched.guard.permissions))
            feed = feeds.get(watched.guard.account)
            if feed is not None and not feed["declined"]:  # a feed `auto` chose not to use is not read
                event_at = feed["event_at"]
                metrics.refresh_feed(
                    name,
                    (now - feed["updated_at"]).total_seconds(),
                    (now - event_at).total_seconds() if event_at is not None else None,
                    feed["problem"] is not None,
                )
        if self._stuck_rules is not None:
            stuck = await self._db.run(store.stuck_counts, now, self._stuck_rules)
            metrics.refresh_stuck(stuck)


@dataclass
class _Watched:
    """What is watched of one account: its pause, its budget, and its 429 warnings' quiet time."""

    guard: AccountGuard
    budget: RequestBudget | None
    quiet_until: float = 0.0  # 429s until then belong to a pause already reported
    unreported_429s: int = 0
