"""What VTEX is doing, and who is running, shown where operators look: a 429 storm is one warning
per pause, an entry in `status` and a gauge; every daemon beats a heartbeat that `status` reads,
and says loudly when none runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from structlog.testing import capture_logs
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.engine.daemon import Daemon
from orchestrator.intake.importer import import_lines
from orchestrator.runner import run_daemon
from orchestrator.sandbox import FaultConfig, Sandbox, ServerThread
from orchestrator.store.open import open_store
from tests.factories import import_lines as lines_of


def test_a_429_storm_shows_in_the_log_status_and_gauges_and_the_daemon_in_status(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings]
) -> None:
    """A 429 storm is one warning per pause, an entry in `status` and the throttle gauges; the running daemon
    shows in `status` with its heartbeat."""
    sandbox = make_sandbox(grace_seconds=0.3)
    sandbox.faults.configure(
        FaultConfig(rate_limit=1.0, retry_after_seconds=90)
    )  # beyond a quarter lease: steps reschedule
    with ServerThread(sandbox) as server:
        settings = make_settings(sandbox, server.url, metrics_port=0)
        store = open_store(settings.database_url)
        ids = import_lines(lines_of(20), store, utcnow()).imported
        runner = CliRunner(env={"ORCHESTRATOR_DATABASE_URL": settings.database_url, "COLUMNS": "300"})
        seen: dict[str, Any] = {}

        async def scenario() -> None:
            holder: dict[str, Daemon] = {}
            task = asyncio.create_task(
                run_daemon(settings, store, install_signals=False, on_ready=lambda d: holder.update(d=d))
            )

            def all_met_the_pause() -> bool:  # every order tried, and met the same pause
                rows = [store.find(order_id) for order_id in ids]
                waits = [(r.wait_reason or "") if r is not None else "" for r in rows]
                return all("rate limit" in w or "request budget" in w for w in waits)

            while not store.account_recoveries() or "d" not in holder or not all_met_the_pause():
                await asyncio.sleep(0.05)
            daemon = holder["d"]
            await daemon.heartbeat()
            await daemon.refresh_metrics()
            assert daemon.metrics is not None
            seen["throttled"] = daemon.metrics.account_throttled._value.get()
            seen["paused"] = daemon.metrics.account_paused._value.get()
            seen["status"] = json.loads(runner.invoke(app, ["status", "--json"]).output)
            seen["text"] = runner.invoke(app, ["status"]).output
            daemon.request_stop()
            await task

        with capture_logs() as logs:
            asyncio.run(asyncio.wait_for(scenario(), 30))

    warnings = [e for e in logs if e["event"].startswith("VTEX answered 429")]
    assert len(warnings) == 1 and warnings[0]["pause_s"] == 90  # one line per pause, not one per 429
    assert 80 < seen["throttled"] <= 90 and seen["paused"] == 1
    [throttle] = seen["status"]["throttled"]
    assert throttle["account"] == settings.account().key and 80 < throttle["secondsLeft"] <= 90
    assert (throttle["phase"], throttle["throttlesInARow"]) == ("paused", 1)
    assert "rate limited by VTEX (429); every call waits" in seen["text"]
    assert "then one request goes first" in seen["text"]
    [daemon] = seen["status"]["daemons"]
    assert daemon["running"] is True and daemon["stoppedAt"] is None and daemon["version"]
    assert "Daemons running: 1" in seen["text"]

    after = json.loads(runner.invoke(app, ["status", "--json"]).output)
    [stopped] = after["daemons"]
    assert stopped["running"] is False and stopped["stoppedAt"] is not None
    assert "NO DAEMON RUNNING" in runner.invoke(app, ["status"]).output


def test_stuck_orders_by_reason_for_the_gauge(make_settings: Callable[..., Settings]) -> None:
    """The stuck-orders gauge counts each stuck order under its reason."""
    from orchestrator.engine.monitor.metrics import Metrics

    store = open_store(make_settings().database_url)
    import_lines(lines_of(3), store, utcnow())
    with store.engine.begin() as conn:
        from orchestrator.store.tables import ORDERS

        conn.execute(ORDERS.update().where(ORDERS.c.order_id == "ABC-100000").values(state="failed"))
        conn.execute(
            ORDERS.update()
            .where(ORDERS.c.order_id == "ABC-100001")
            .values(intent="place", intent_at=utcnow().replace(year=2020))
        )
    counts = store.stuck_counts(utcnow(), make_settings().stuck_rules)
    assert counts["failed"] == 1 and counts["open-intent"] == 1 and counts["slow-imported"] == 0
    metrics = Metrics()
    metrics.refresh_stuck(counts)
    assert metrics.stuck.labels("failed")._value.get() == 1


def test_orders_canceled_in_vtex_are_counted() -> None:
    """Orders canceled in VTEX (not by us) are counted apart from our own cancellations."""
    from orchestrator.engine.monitor.metrics import Metrics

    metrics = Metrics()
    metrics.observe_transition("canceled", "canceling", "canceled")  # ours: not counted
    metrics.observe_transition("notice_canceled", "handling", "canceled")
    assert metrics.canceled_in_vtex._value.get() == 1
