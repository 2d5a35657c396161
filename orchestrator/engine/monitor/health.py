"""What the daemon's `/healthz` (liveness) and `/readyz` (readiness) say, and why.

Liveness answers "is this process still doing its job, or should it be restarted?": the scheduler
ticks, and the database has not been unusable for longer than `database_grace`. A read-only file,
a full disk or a corrupt database makes every claim fail the same way for ever; the process is up
but does nothing, and only an outside check can notice.

Readiness answers "can it do work right now?": started, not stopping, and the last database
operation succeeded. It fails at once on a database error and recovers with the first success,
so it shows a short outage that liveness (rightly) tolerates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any


class Health:
    def __init__(
        self,
        tick_interval: timedelta,
        *,
        database_grace: timedelta = timedelta(seconds=60),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stale_after = max(10.0, 3 * tick_interval.total_seconds())
        self.database_grace = database_grace.total_seconds()
        self._clock = clock
        self.last_tick: float | None = None
        self.database_failing_since: float | None = None
        self.database_error: str | None = None
        self.stopping = False

    def ticked(self) -> None:
        self.last_tick = self._clock()

    def database_ok(self) -> None:
        self.database_failing_since = None
        self.database_error = None

    def database_failed(self, error: str) -> None:
        if self.database_failing_since is None:
            self.database_failing_since = self._clock()
        self.database_error = error

    def _facts(self) -> dict[str, Any]:
        now = self._clock()
        tick_age = None if self.last_tick is None else round(now - self.last_tick, 1)
        failing = None if self.database_failing_since is None else now - self.database_failing_since
        return {
            "lastTickSecondsAgo": tick_age,
            "databaseFailingForSeconds": None if failing is None else round(failing, 1),
            "databaseError": self.database_error,
        }

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        facts = self._facts()
        tick_age = facts["lastTickSecondsAgo"]
        if tick_age is None or tick_age > self.stale_after:
            return False, {"status": "stale", **facts}
        failing = facts["databaseFailingForSeconds"]
        if failing is not None and failing > self.database_grace:
            return False, {"status": "database unusable", **facts}
        return True, {"status": "ok", **facts}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        live, facts = self.liveness()
        if self.stopping:
            return False, {**facts, "status": "stopping"}
        if not live:
            return False, facts
        if self.database_error is not None:
            return False, {**facts, "status": "database failing"}
        return True, facts
