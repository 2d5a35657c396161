"""Waiting out a database that is away, and only when waiting can help."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from orchestrator.store.patience import is_passing, patiently


class Driver(Exception):
    pass


def failure(said: str) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, Driver(said))


class Log:
    def __init__(self) -> None:
        self.lines: list[dict[str, object]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.lines.append({"event": event, **fields})


@pytest.mark.parametrize(
    ("said", "passes"),
    [
        ("terminating connection due to administrator command", True),
        ("server closed the connection unexpectedly", True),
        ('connection to server at "127.0.0.1", port 5432 failed: Connection refused', True),
        ("FATAL:  the database system is starting up", True),
        ("database is locked", True),
        ('password authentication failed for user "postgres"', False),
        ('database "orders" does not exist', False),
        ('could not translate host name "db.invalid" to address', False),
        ("attempt to write a readonly database", False),
    ],
)
def test_only_failures_that_pass_by_waiting_are_waited_out(said: str, passes: bool) -> None:
    """A restart, an ended connection or a lock passes; wrong credentials or a missing database do not."""
    assert is_passing(failure(said)) is passes


def test_a_passing_failure_is_retried_with_a_growing_pause_and_one_line_each() -> None:
    """Two ended connections, then it works: two log lines, pauses 0.25 s then 0.5 s."""
    slept: list[float] = []
    outcomes: list[Exception | None] = [
        failure("server closed the connection"),
        failure("server closed the connection"),
        None,
    ]
    log = Log()

    def work() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "done"

    assert patiently(work, what="start-up", log=log, sleep=slept.append) == "done"
    assert slept == [0.25, 0.5]
    assert [line["during"] for line in log.lines] == ["start-up", "start-up"]


def test_patience_runs_out_and_other_failures_are_raised_at_once() -> None:
    """A server that stays away is given up on after `patience`; a wrong password at once."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def away() -> None:
        raise failure("Connection refused")

    with pytest.raises(sa.exc.OperationalError):
        patiently(away, what="x", log=Log(), patience=3.0, sleep=sleep, clock=lambda: now[0])
    assert 1.0 <= now[0] <= 3.0

    calls = []

    def wrong() -> None:
        calls.append(1)
        raise failure("password authentication failed")

    with pytest.raises(sa.exc.OperationalError):
        patiently(wrong, what="x", log=Log(), sleep=sleep)
    assert calls == [1]
