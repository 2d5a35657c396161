"""What a daemon says about itself and about VTEX, besides stepping orders: its heartbeat (who is
running, for `status`), one warning per 429 pause (a storm was visible only in a counter), and the
gauges refreshed every few seconds (orders per state, stuck orders by reason, pauses)."""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime
from typing import Any

from orchestrator import __version__
from orchestrator.ops.metrics import Metrics
from orchestrator.ops.stuck_rules import StuckRules
from orchestrator.store.daemons import HEARTBEAT_SECONDS, DaemonBeat

__all__ = ["HEARTBEAT_SECONDS", "Watch"]
from orchestrator.store.thread import DatabaseThread
from orchestrator.vtex.account import AccountGuard
from orchestrator.vtex.budget import RequestBudget
from orchestrator.vtex.client import Call
from orchestrator.vtex.errors import RateLimited, VtexError


class Watch:
    def __init__(
        self,
        worker: str,
        database: DatabaseThread,
        guard: AccountGuard,
        log: Any,
        *,
        metrics: Metrics | None = None,
        budget: RequestBudget | None = None,
        stuck_rules: StuckRules | None = None,
    ) -> None:
        self._worker = worker
        self._db = database
        self._guard = guard
        self._log = log
        self._metrics = metrics
        self._budget = budget
        self._stuck_rules = stuck_rules
        self._started_at: datetime | None = None
        self._quiet_until = 0.0  # 429s until then belong to a pause already reported
        self._unreported_429s = 0

    # -- the client's observer ------------------------------------------------------------------

    def observe_call(self, call: Call, error: VtexError | None) -> None:
        if self._metrics is not None:
            self._metrics.observe_call(call, error)
        if not isinstance(error, RateLimited):
            return
        now = time.monotonic()
        if now < self._quiet_until:
            self._unreported_429s += 1
            return
        pause = error.retry_after if error.retry_after is not None else 60.0
        self._quiet_until = now + pause
        self._log.warning(
            "VTEX answered 429 (rate limit): every call of the account waits",
            account=self._guard.account,
            pause_s=round(pause, 1),
            retry_after_given=error.retry_after is not None,
            operation=call.operation,
            order_id=call.order_id,
            more_429s_in_last_pause=self._unreported_429s,
        )
        self._unreported_429s = 0

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
        counts = await self._db.run(store.state_counts)
        oldest = await self._db.run(store.oldest_active_created_at)
        metrics.refresh_orders(counts, oldest, now)
        metrics.in_flight.set(in_flight)
        throttled = self._budget.paused_for if self._budget is not None else 0.0
        metrics.account_throttled.set(throttled)
        metrics.account_paused.set(1 if self._guard.is_paused(now) or throttled > 0 else 0)
        if self._stuck_rules is not None:
            stuck = await self._db.run(store.stuck_counts, now, self._stuck_rules)
            metrics.refresh_stuck(stuck)
