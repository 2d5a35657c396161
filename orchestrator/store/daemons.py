"""The daemons' heartbeats: one row per daemon process, so `status` can say who is running, and
say loudly when nobody is (a daemon that died without a word leaves a heartbeat that ages)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from orchestrator.store.base import StoreBase
from orchestrator.store.tables import DAEMONS

FORGET_AFTER = timedelta(days=7)  # rows of daemons gone that long are deleted
HEARTBEAT_SECONDS = 10.0
# `status` calls a daemon gone when it has not beaten for this long (three beats missed).
SEEN_WITHIN_SECONDS = 3 * HEARTBEAT_SECONDS


@dataclass(frozen=True)
class DaemonBeat:
    worker: str
    host: str
    pid: int
    version: str
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None


class Heartbeats(StoreBase):
    def beat(self, beat: DaemonBeat) -> None:
        """Record that this daemon is alive now (its row created on the first beat)."""
        values = {
            "host": beat.host[:255],
            "pid": beat.pid,
            "version": beat.version[:40],
            "started_at": beat.started_at,
            "last_seen_at": beat.last_seen_at,
            "stopped_at": beat.stopped_at,
        }
        with self.engine.begin() as conn:
            updated = conn.execute(sa.update(DAEMONS).where(DAEMONS.c.worker == beat.worker).values(**values))
            if updated.rowcount == 0:
                conn.execute(sa.insert(DAEMONS).values(worker=beat.worker, **values))
            conn.execute(
                sa.delete(DAEMONS).where(
                    DAEMONS.c.last_seen_at < beat.last_seen_at - FORGET_AFTER, DAEMONS.c.worker != beat.worker
                )
            )

    def daemons(self) -> list[DaemonBeat]:
        """Every daemon seen in the last week, the most recently seen first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(DAEMONS).order_by(DAEMONS.c.last_seen_at.desc())).mappings().all()
        return [DaemonBeat(**dict(r)) for r in rows]
