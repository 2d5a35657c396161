"""Liveness and readiness, and logs an outage cannot flood: the decisions, on a fake clock."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import structlog

from orchestrator import log
from orchestrator.engine.monitor.health import Health
from orchestrator.log import RepeatLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_readiness_fails_at_once_and_liveness_after_a_grace_when_the_database_fails() -> None:
    """A failing database: not ready at the first error; not alive once it lasts past the grace;
    both recover with the first success."""
    clock = FakeClock()
    health = Health(timedelta(seconds=1), database_grace=timedelta(seconds=60), clock=clock)
    health.ticked()
    assert health.liveness()[0] and health.readiness()[0]
    health.database_failed("the database is read-only")
    ready, body = health.readiness()
    assert not ready and body["databaseError"] == "the database is read-only"
    assert health.liveness()[0]
    clock.now += 61
    health.ticked()
    alive, body = health.liveness()
    assert not alive and body["status"] == "database unusable"
    health.database_ok()
    assert health.liveness()[0] and health.readiness()[0]


def test_not_ready_while_stopping() -> None:
    """SIGTERM received: still alive (finishing its steps), no longer ready."""
    health = Health(timedelta(seconds=1), clock=FakeClock())
    health.ticked()
    health.stopping = True
    assert health.liveness()[0] and health.readiness() == (
        False,
        {**health.liveness()[1], "status": "stopping"},
    )


def test_identical_lines_are_let_through_a_few_times_then_summarised() -> None:
    """An outage that fails every claim the same way writes five lines a minute, then says how many
    it dropped; a different line is never held back."""
    clock = FakeClock()
    limiter = RepeatLimiter(burst=5, window=60.0, clock=clock)
    kept = 0
    for _ in range(1000):
        try:
            limiter(None, "error", {"event": "claim failed", "error": "read-only", "timestamp": "t"})
            kept += 1
        except structlog.DropEvent:
            pass
    assert kept == 5
    assert limiter(None, "error", {"event": "claim failed", "error": "disk full"}) is not None
    clock.now += 61
    summary = limiter(None, "error", {"event": "claim failed", "error": "read-only"})
    assert summary["repeated_lines_dropped"] == 995


def test_library_log_floods_are_limited_too() -> None:
    """asyncio's "accept out of system resource" came through the standard library: limited as well."""
    previous = structlog.get_config()
    stream = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    try:
        log.configure("info", "json", stream=io.StringIO())
        for _ in range(500):
            logging.getLogger("asyncio").error("socket.accept() out of system resource")
    finally:
        root.removeHandler(handler)
        structlog.configure(**previous)
    assert stream.getvalue().count("out of system resource") <= 5
