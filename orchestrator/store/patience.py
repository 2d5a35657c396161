"""Riding through a database that is briefly away: which failures pass, and waiting them out.

A PostgreSQL server restarts, fails over, or has a connection ended under it
(`pg_terminate_backend`); a SQLite file stays locked by another writer a little too long. None of
that is a reason for a daemon to exit: under systemd an exit is a restart loop, in CI a red build.
But a wrong password, a missing database or a URL that points nowhere will not pass by waiting,
and saying so at once is kinder than retrying for a minute.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from orchestrator.store.errors import explain, is_connection_lost

T = TypeVar("T")

FIRST_PAUSE = 0.25  # seconds before the first retry; doubles each time
LONGEST_PAUSE = 5.0
# How long a starting daemon waits out a database that is away: a daemon for as long as it takes
# (it would wait the same way once running), a batch run (`run --until-done`) a minute.
DAEMON_PATIENCE = math.inf
BATCH_PATIENCE = 60.0
COMMAND_PATIENCE = 2.0  # a command retries only a connection that was ended, and briefly

# What drivers say when the server is there but not (yet, or for a moment) taking work.
_PASSING = (
    "terminating connection",
    "server closed the connection",
    "connection refused",  # a server restarting; also a wrong port, which patience runs out on
    "timeout expired",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "too many clients",
    "is not currently accepting connections",  # ALTER DATABASE ... ALLOW_CONNECTIONS false, for maintenance
    "database is locked",
    "could not receive data from server",
    "connection reset",
    "broken pipe",
)


def is_passing(exc: BaseException) -> bool:
    """A failure that waiting can fix: the connection was lost or the server is not taking work
    for a moment. Wrong credentials, a missing database, a host that does not resolve, a
    read-only or full disk, a corrupt file: none of these pass."""
    if is_connection_lost(exc):
        return True
    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    said = str(getattr(exc, "orig", exc)).lower()
    return any(fragment in said for fragment in _PASSING)


def patiently(
    work: Callable[[], T],
    *,
    what: str,
    log: Any | None,
    patience: float = BATCH_PATIENCE,
    passes: Callable[[BaseException], bool] = is_passing,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`work()`, tried again after a growing pause while the database fails in a way that passes,
    one log line per failure (when there is a `log`), for up to `patience` seconds; any other
    failure at once."""
    deadline = clock() + patience
    pause = FIRST_PAUSE
    while True:
        try:
            return work()
        except Exception as exc:
            if not passes(exc) or clock() + pause > deadline:
                raise
            if log is not None:
                log.warning(
                    "the database is away; trying again", during=what, error=explain(exc), retry_in_s=pause
                )
            sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)
