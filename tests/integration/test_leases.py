"""Leases between daemons on PostgreSQL: one clock for all (the server's), one identity per process.

With one host's clock three minutes ahead, two daemons stepped every order at the same time; two
daemons sharing `ORCHESTRATOR_WORKER_ID` released each other's leases on shutdown. Both run here
in one process (two daemons, each with its own client, writer and database thread) against one
PostgreSQL database and the sandbox over a real socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings, load_settings
from orchestrator.engine.daemon import Daemon
from orchestrator.intake.importer import import_lines
from orchestrator.runner import run_daemon
from orchestrator.sandbox import Sandbox, SandboxConfig, SandboxOms, ServerThread
from orchestrator.sandbox.faults import FaultConfig
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from tests import backends
from tests.factories import import_lines as lines_of


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name, url = backends.create_database()
    yield url
    backends.drop_database(name)


@pytest.fixture
def served() -> Iterator[ServerThread]:
    sandbox = Sandbox(SandboxOms(SandboxConfig(grace_seconds=1.0)))
    with ServerThread(sandbox) as server:
        yield server


def settings_for(url: str, server: ServerThread, worker_id: str) -> Settings:
    config = server.sandbox.oms.config
    return load_settings(
        None,
        database_url=url,
        vtex_base_url=server.url,
        vtex_app_key=config.app_key,
        vtex_app_token=config.app_token,
        grace_period="1s",
        tick_interval="100ms",
        worker_id=worker_id,
        concurrency=8,
    )


def skewed(by: timedelta) -> Callable[[], datetime]:
    return lambda: utcnow() + by


async def start(settings: Settings, store: Store, **kw: Any) -> tuple[asyncio.Task[Daemon], Daemon]:
    holder: dict[str, Daemon] = {}
    task = asyncio.create_task(
        run_daemon(settings, store, install_signals=False, on_ready=lambda d: holder.update(d=d), **kw)
    )
    while "d" not in holder:
        await asyncio.sleep(0.01)
    return task, holder["d"]


def test_a_host_clock_minutes_ahead_never_steps_another_daemons_orders(
    postgres_url: str, served: ServerThread
) -> None:
    """Daemon B's clock is 3 minutes ahead: leases still hold (the server's clock decides), so no
    daemon takes an order another one holds, VTEX never sees two daemons on one order at once,
    and every order finishes."""
    served.sandbox.faults.configure(FaultConfig(latency_ms=100))
    store = open_store(settings_for(postgres_url, served, "a").database_url)
    import_lines(lines_of(40), store, utcnow())

    async def scenario() -> None:
        a_task, _a = await start(
            settings_for(postgres_url, served, "a"),
            open_store(settings_for(postgres_url, served, "a").database_url),
        )
        b_task, _b = await start(
            settings_for(postgres_url, served, "b"),
            open_store(settings_for(postgres_url, served, "b").database_url),
            clock=skewed(timedelta(minutes=3)),
        )
        while {c.state: c.count for c in store.state_counts()} != {"invoiced": 40}:
            await asyncio.sleep(0.1)
        for daemon in (_a, _b):
            daemon.request_stop()
        await asyncio.gather(a_task, b_task)

    with capture_logs() as logs:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    assert [e for e in logs if e["event"].startswith("lease lost")] == []
    summary = served.sandbox.oms.ledger.summary()
    assert summary["ordersWithConcurrentRequests"] == 0
    assert summary["ordersWithDuplicatePlace"] == 0 and summary["ordersWithDuplicateStartHandling"] == 0


def test_a_daemon_sharing_another_ones_worker_id_releases_only_its_own_leases(
    postgres_url: str, served: ServerThread
) -> None:
    """Two replicas with the same ORCHESTRATOR_WORKER_ID: stopping one leaves the other's step alone,
    and that step's outcome is saved."""
    store = open_store(settings_for(postgres_url, served, "replica").database_url)
    import_lines(lines_of(1), store, utcnow())
    control = f"{served.url}/_sandbox"
    httpx.post(
        f"{control}/holds", json={"orderId": "ABC-100000", "operation": "place-order", "when": "after"}
    )

    async def scenario() -> None:
        first_task, first = await start(settings_for(postgres_url, served, "replica"), store)
        while not httpx.get(f"{control}/holds").json()[0]["arrived"]:
            await asyncio.sleep(0.02)
        other = open_store(settings_for(postgres_url, served, "replica").database_url)
        second_task, second = await start(settings_for(postgres_url, served, "replica"), other)
        while second.ticks < 2:
            await asyncio.sleep(0.02)
        second.request_stop()
        await second_task
        httpx.post(
            f"{control}/holds/release",
            json={"orderId": "ABC-100000", "operation": "place-order", "when": "after", "then": "respond"},
        )
        row = store.find("ABC-100000")
        while row is not None and row.state == "imported" and row.lease_owner is not None:
            await asyncio.sleep(0.02)
            row = store.find("ABC-100000")
        first.request_stop()
        await first_task

    with capture_logs() as logs:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [e for e in logs if e["event"].startswith("lease lost")] == []
    row = store.find("ABC-100000")
    assert row is not None and row.state != "imported"
    events = [e for e in store.events(row.id) if e["kind"] == "transition"]
    assert events[0]["action"] == "place"
