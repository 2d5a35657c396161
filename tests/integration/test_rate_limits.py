"""Politeness against a rate-limited VTEX, in real time (a per-minute budget needs a real minute).

The sandbox allows fewer requests per minute than the client's budget and also injects 429s, so
the client both paces itself and gets throttled. Checked on both sides: the sandbox's arrival log
(never more than the client's budget in any 60 s window) and the client's own call log (after every
429, nothing is sent before its Retry-After has passed).
"""

from __future__ import annotations

import asyncio
import json
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.intake.importer import import_lines
from orchestrator.runner import run_daemon
from orchestrator.sandbox import FaultConfig, Sandbox, ServerThread
from orchestrator.store.open import open_store
from orchestrator.vtex.client import Call
from orchestrator.vtex.errors import RateLimited, VtexError
from tests.factories import import_lines as lines_of

CLIENT_RPM = 240
SANDBOX_RPM = 180
ORDERS = 50


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(i - bisect_left(times, t - window + 1e-9) + 1 for i, t in enumerate(times))


def test_budget_and_retry_after_are_honoured_and_every_order_finishes(
    make_sandbox: Callable[..., Sandbox],
    make_settings: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """All orders invoiced; no minute over the budget; every 429 followed by at least its Retry-After."""
    sandbox = make_sandbox(grace_seconds=1, rate_limit_rpm=SANDBOX_RPM)
    sandbox.faults.configure(FaultConfig(seed=4, rate_limit=0.03, retry_after_seconds=2))
    calls: list[tuple[Call, VtexError | None]] = []
    with ServerThread(sandbox) as server:
        settings = make_settings(
            sandbox, server.url, vtex_max_rpm=CLIENT_RPM, grace_period="1s", concurrency=16
        )
        store = open_store(settings.database_url)
        import_lines(lines_of(ORDERS), store, utcnow())
        observe: Any = lambda call, error: calls.append((call, error))  # noqa: E731
        asyncio.run(
            asyncio.wait_for(
                run_daemon(settings, store, until_done=True, install_signals=False, observer=observe),
                240,
            )
        )
        log = list(sandbox.oms.ledger.request_log)

    states = {c.state: c.count for c in store.state_counts()}
    assert states == {"invoiced": ORDERS}

    arrivals = [entry["at"] for entry in log]
    busiest_minute = max_in_window(arrivals, 60.0)
    assert busiest_minute <= CLIENT_RPM

    sends = sorted(call.sent_at for call, _ in calls)
    limited = [(call, error) for call, error in calls if isinstance(error, RateLimited)]
    assert limited, "the test must see 429s to prove anything about them"
    for call, error in limited:
        assert isinstance(error, RateLimited) and error.retry_after is not None
        answered = call.sent_at + call.duration_ms / 1000
        resume = answered + error.retry_after
        too_early = [t for t in sends if answered < t < resume - 0.01]
        assert too_early == [], (
            f"sent {len(too_early)} request(s) within Retry-After {error.retry_after}s of a 429"
        )

    failed_attempts = sum(1 for r in store.all_rows() if r.attempts)
    limiter_429s = sum(1 for entry in log if entry["status"] == 429)
    with capsys.disabled():
        print(
            "\nrate limits:",
            json.dumps(
                {
                    "clientBudgetPerMinute": CLIENT_RPM,
                    "sandboxLimitPerMinute": SANDBOX_RPM,
                    "busiestMinute": busiest_minute,
                    "requests": len(log),
                    "429s": limiter_429s,
                    "ordersWithAttemptsLeft": failed_attempts,
                }
            ),
        )
    assert failed_attempts == 0, "a 429 must never count as a failed attempt"


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """One real minute is enough for one backend; the shared budget is tested with several daemons."""
    return sqlite_url
