"""Logs, secrets and metrics: what an operator (and an attacker reading logs) can see."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog
from structlog.testing import capture_logs
from typer.testing import CliRunner

from orchestrator import log
from orchestrator.cli import app
from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.engine.monitor.health import Health
from orchestrator.engine.monitor.metrics import Metrics, probe_handler
from orchestrator.intake.importer import import_lines
from orchestrator.runner import run_daemon
from orchestrator.sandbox import FaultConfig, Sandbox, ServerThread
from orchestrator.store.open import open_store
from tests.factories import import_lines as lines_of
from tests.factories import import_record

pytestmark = pytest.mark.sqlite_only  # logs, metrics and redaction, alike on both

SECRET_KEY = "vtexappkey-leakcheck-K3YS3CR3T"
SECRET_TOKEN = "T0K3NS3CR3T-leakcheck"
WRONG_TOKEN = "WR0NGT0K3N-leakcheck"
ENGINE_EVENTS = {
    "transition",
    "order failed",
    "outcome unknown, will reconcile",
    "lease lost before calling VTEX",
}


def test_logs_are_json_lines_off_a_terminal_and_readable_on_one() -> None:
    """JSON when the stream is not a terminal; key=value console lines when it is."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    previous = structlog.get_config()
    try:
        plain = io.StringIO()
        log.configure("info", "auto", stream=plain)
        log.get_logger().info("transition", order_id="ABC-1", state="created", action="place")
        assert json.loads(plain.getvalue())["order_id"] == "ABC-1"
        tty = Terminal()
        log.configure("info", "auto", stream=tty)
        log.get_logger().info("transition", order_id="ABC-1", state="created", action="place")
        readable = re.sub(r"\x1b\[[0-9;]*m", "", tty.getvalue())  # colours on a terminal
        assert "order_id=ABC-1" in readable and not readable.startswith("{")
    finally:
        structlog.configure(**previous)


def test_every_engine_line_carries_order_state_and_action(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings]
) -> None:
    """Through success, a refusal (FMT007) and injected faults: no engine line lacks its context."""
    sandbox = make_sandbox(grace_seconds=0.3)
    sandbox.faults.configure(FaultConfig(seed=3, drop_after=0.15, error_before=0.1))
    with ServerThread(sandbox) as server, capture_logs() as logs:
        settings = make_settings(sandbox, server.url, grace_period="0.3s")
        store = open_store(settings.database_url)
        lines = [*lines_of(8), json.dumps(import_record(50, value=1))]
        import_lines(lines, store, utcnow())
        asyncio.run(asyncio.wait_for(run_daemon(settings, store, until_done=True, install_signals=False), 60))
    engine_lines = [e for e in logs if e["event"] in ENGINE_EVENTS]
    assert {e["event"] for e in engine_lines} >= {
        "transition",
        "order failed",
        "outcome unknown, will reconcile",
    }
    for entry in [*engine_lines, *(e for e in logs if "order_id" in e)]:
        assert {"order_id", "state", "action"} <= set(entry), entry


def test_credentials_never_reach_a_log_line_an_error_or_the_database(
    make_sandbox: Callable[..., Sandbox],
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run with faults, a refusal and then bad credentials; every log line, every stored error, every
    column of every table, and the operator commands' output are searched for the key and tokens."""
    sandbox = make_sandbox(grace_seconds=0.3, app_key=SECRET_KEY, app_token=SECRET_TOKEN)
    sandbox.faults.configure(
        FaultConfig(seed=9, drop_after=0.1, error_after=0.1, rate_limit=0.02, retry_after_seconds=1)
    )
    caplog.set_level(logging.DEBUG)
    stream = io.StringIO()
    previous = structlog.get_config()
    try:
        log.configure("debug", "json", stream=stream)
        with ServerThread(sandbox) as server:
            settings = make_settings(sandbox, server.url, grace_period="0.3s")
            store = open_store(settings.database_url)
            import_lines([*lines_of(6), json.dumps(import_record(60, value=1))], store, utcnow())
            asyncio.run(
                asyncio.wait_for(run_daemon(settings, store, until_done=True, install_signals=False), 60)
            )
            import_lines(lines_of(2, start=70), store, utcnow())
            wrong = make_settings(sandbox, server.url, vtex_app_token=WRONG_TOKEN)
            asyncio.run(
                asyncio.wait_for(run_daemon(wrong, store, until_done=True, install_signals=False), 60)
            )
            env = {
                "ORCHESTRATOR_DATABASE_URL": settings.database_url,
                "VTEX_BASE_URL": server.url,
                "VTEX_APP_KEY": SECRET_KEY,
                "VTEX_APP_TOKEN": SECRET_TOKEN,
            }
            runner = CliRunner(env=env)
            outputs = [
                runner.invoke(app, args).output
                for args in (
                    ["config"],
                    ["config", "--json"],
                    ["status", "--stuck", "--json"],
                    ["show", "ABC-100060", "--vtex", "--json"],
                    ["check"],
                )
            ]
    finally:
        structlog.configure(**previous)
    with store.engine.connect() as conn:
        tables = [
            str(conn.execute(sa.text(f"SELECT * FROM {t}")).all())
            for t in ("orders", "order_events", "vtex_accounts")
        ]
    errors = [str(r.last_error) for r in store.all_rows()]
    haystacks = {
        "structlog": stream.getvalue(),
        "logging": caplog.text,
        "tables": "\n".join(tables),
        "errors": "\n".join(errors),
        "commands": "\n".join(outputs),
    }
    assert "rejected the credentials" in haystacks["structlog"], "the run must have gone through the 401 path"
    assert sum(c.count for c in store.state_counts()) == 9
    for name, text in haystacks.items():
        for secret in (SECRET_KEY, SECRET_TOKEN, WRONG_TOKEN, "K3YS3CR3T", "T0K3NS3CR3T", "WR0NGT0K3N"):
            assert secret not in text, f"{secret!r} leaked into {name}"


def test_metrics_after_a_run_show_the_expected_counts(
    sandbox_server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    """Scraped while the daemon still runs: orders per state, transitions, VTEX latency by operation."""
    settings = make_settings(sandbox_server.sandbox, sandbox_server.url, metrics_port=0)
    store = open_store(settings.database_url)
    import_lines([*lines_of(5), json.dumps(import_record(20, value=1))], store, utcnow())
    scraped: dict[str, str] = {}

    async def scenario() -> None:
        holder: dict[str, Any] = {}
        task = asyncio.create_task(
            run_daemon(settings, store, install_signals=False, on_ready=lambda d: holder.update(d=d))
        )
        while {c.state: c.count for c in store.state_counts()} != {"invoiced": 5, "failed": 1}:
            await asyncio.sleep(0.1)
        daemon = holder["d"]
        await daemon.refresh_metrics()
        async with httpx.AsyncClient() as client:
            scraped["metrics"] = (await client.get(f"{daemon.metrics_url}/metrics")).text
            scraped["health"] = (await client.get(f"{daemon.metrics_url}/healthz")).text
        daemon.request_stop()
        await task

    asyncio.run(asyncio.wait_for(scenario(), 60))
    metrics = scraped["metrics"]
    assert 'orchestrator_orders{state="invoiced"} 5.0' in metrics
    assert 'orchestrator_orders{state="failed"} 1.0' in metrics
    assert (
        'orchestrator_transitions_total{from_state="handling",to_state="invoiced",trigger="complete"} 5.0'
        in metrics
    )
    assert 'orchestrator_step_failures_total{state="imported"} 1.0' in metrics
    assert 'orchestrator_vtex_request_seconds_count{operation="place-order",status="200"} 5.0' in metrics
    assert 'orchestrator_vtex_request_seconds_count{operation="place-order",status="400"} 1.0' in metrics
    assert "orchestrator_oldest_active_order_age_seconds" in metrics
    assert json.loads(scraped["health"])["status"] == "ok"


def test_health_fails_when_the_scheduler_stopped_ticking() -> None:
    """No tick for three intervals (at least 10 s): 503, whatever else the process still does."""
    now = {"t": 1000.0}
    health = Health(timedelta(seconds=1), clock=lambda: now["t"])
    answer = probe_handler(Metrics(), health)
    assert answer("/healthz").status == 503
    health.ticked()
    now["t"] += 2
    assert answer("/healthz").status == 200
    now["t"] += 9
    stale = answer("/healthz")
    assert stale.status == 503 and json.loads(stale.body)["status"] == "stale"
