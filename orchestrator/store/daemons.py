"""The daemons' heartbeats as the store gives them, and how often they beat: one row per daemon
process, so `status` can say who is running, and say loudly when nobody is (a daemon that died
without a word leaves a heartbeat that ages)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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
