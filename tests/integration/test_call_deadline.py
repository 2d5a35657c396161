"""VTEX_TIMEOUT bounds a whole call, and no call outlives its step's lease.

VTEX (or a proxy before it) answering one byte at a time defeats a timeout on each read: every
read sees progress. Before, such a call stayed open for minutes, far past its lease; the order was
claimed again and four requests for it were in flight at once, none of them in its history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.intake.importer import import_lines
from orchestrator.sandbox import FaultConfig, ServerThread
from orchestrator.store.open import open_store
from orchestrator.vtex.client import VtexClient
from orchestrator.vtex.errors import AmbiguousError, RetryableError
from tests.daemon_runs import run_until
from tests.factories import import_lines as lines_of
from tests.factories import place_body


def test_a_dripping_answer_is_abandoned_at_the_timeout(sandbox_server: ServerThread) -> None:
    """An answer sent a byte every 0.2 s: the call ends after VTEX_TIMEOUT (1 s), a write as an
    unknown outcome (VTEX applied it), a read as a failed read."""
    sandbox = sandbox_server.sandbox
    sandbox.faults.configure(FaultConfig(drip=1.0, drip_seconds=0.2))
    config = sandbox.oms.config

    async def calls() -> tuple[float, BaseException | None, BaseException | None]:
        async with VtexClient(
            sandbox_server.url, app_key=config.app_key, app_token=config.app_token, timeout=1.0
        ) as client:
            started = time.monotonic()
            with pytest.raises(AmbiguousError) as write:
                await client.place_order("ABC", place_body("100001"), None)
            with pytest.raises(RetryableError) as read:
                await client.get_order("ABC-100001")
            return time.monotonic() - started, write.value, read.value

    took, write, read = asyncio.run(asyncio.wait_for(calls(), 10))
    assert took < 3.0
    assert "VTEX_TIMEOUT bounds the whole call" in str(write)
    assert not isinstance(read, AmbiguousError)
    entry = sandbox.oms.ledger.get("ABC-100001")
    assert entry is not None and entry.places_accepted == 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_no_call_outlives_its_lease_and_every_call_is_in_the_history(
    sandbox_server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    """Every answer drips for a while (a call would take minutes); the lease is 3 s. One request
    for the order is in flight at a time, each request VTEX saw is in the order's history, and
    once VTEX answers normally the order finishes with one Place."""
    sandbox = sandbox_server.sandbox
    sandbox.faults.configure(FaultConfig(drip=1.0, drip_seconds=0.2))
    settings = make_settings(
        sandbox, sandbox_server.url, lease=timedelta(seconds=3), vtex_timeout=timedelta(seconds=1)
    )
    store = open_store(settings.database_url)
    import_lines(lines_of(1, start=1), store, utcnow())

    def heal(elapsed: float) -> None:
        if elapsed > 7:
            sandbox.faults.configure(FaultConfig())

    run_until(settings, store, lambda: store.find("ABC-100001").state == "invoiced", timeout=40, during=heal)

    row = store.find("ABC-100001")
    assert row is not None and row.state == "invoiced"
    entry = sandbox.oms.ledger.get("ABC-100001")
    assert entry is not None
    assert (entry.most_requests_at_once, entry.places_accepted) == (1, 1)
    seen_by_vtex = [r for r in sandbox.oms.ledger.request_log if r["orderId"] == "ABC-100001"]
    calls = [e for e in store.events(row.id) if e["kind"] == "call"]
    assert len(calls) == len(seen_by_vtex) > 3
    assert max(e["duration_ms"] or 0 for e in calls) < 1500
