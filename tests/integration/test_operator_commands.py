"""`orchestrator retry` and `orchestrator cancel`, through the real CLI against the sandbox."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.config.settings import load_settings
from orchestrator.runner import run_daemon
from orchestrator.sandbox import FaultConfig, Sandbox, ServerThread
from orchestrator.store.open import open_store
from tests.factories import import_lines as lines_of


@pytest.fixture
def served(make_sandbox: Callable[..., Sandbox], tmp_path: Path) -> Iterator[tuple[Sandbox, CliRunner, str]]:
    sandbox = make_sandbox(grace_seconds=0.5)
    server = ServerThread(sandbox)
    server.start()
    database_url = f"sqlite:///{tmp_path / 'ops.db'}"
    env = {
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "VTEX_BASE_URL": server.url,
        "VTEX_APP_KEY": sandbox.oms.config.app_key,
        "VTEX_APP_TOKEN": sandbox.oms.config.app_token,
        "ORCHESTRATOR_GRACE_PERIOD": "0.5s",
        "ORCHESTRATOR_TICK": "100ms",
        "ORCHESTRATOR_MAX_ATTEMPTS": "2",
        "COLUMNS": "200",
    }
    yield sandbox, CliRunner(env=env), database_url
    server.stop()


def run_until_authorized(runner: CliRunner, count: int) -> None:
    """Run the daemon in-process until `count` orders wait out a (long) grace period, then stop it."""
    env = dict(runner.env or {})
    settings = load_settings(
        None,
        database_url=env["ORCHESTRATOR_DATABASE_URL"],
        vtex_base_url=env["VTEX_BASE_URL"],
        vtex_app_key=env["VTEX_APP_KEY"],
        vtex_app_token=env["VTEX_APP_TOKEN"],
        grace_period=env["ORCHESTRATOR_GRACE_PERIOD"],
        invoice_timing=env.get("ORCHESTRATOR_INVOICE_TIMING", "after-grace"),
        tick_interval="100ms",
    )
    store = open_store(settings.database_url)

    async def scenario() -> None:
        holder: dict[str, Any] = {}
        task = asyncio.create_task(
            run_daemon(settings, store, install_signals=False, on_ready=lambda d: holder.update(d=d))
        )
        while True:
            rows = store.all_rows()
            done = [
                r
                for r in rows
                if r.state == "dispatch-authorized" and r.intent is None and r.lease_owner is None
            ]
            if len(done) == count and all(r.invoice_sent or settings.invoice_timing != "asap" for r in done):
                break
            await asyncio.sleep(0.05)
        holder["d"].request_stop()
        await task

    asyncio.run(asyncio.wait_for(scenario(), 30))


def states(database_url: str) -> dict[str, int]:
    store = open_store(database_url)
    return {c.state: c.count for c in store.state_counts()}


def test_retry_puts_failed_orders_back_and_reconciles_first(served: tuple[Sandbox, CliRunner, str]) -> None:
    """Place failed twice (VTEX unavailable); after `retry` the order is reconciled, then finishes."""
    sandbox, runner, database_url = served
    sandbox.faults.configure(FaultConfig(error_before=1.0, only_writes=True))
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(3)))
    assert runner.invoke(app, ["run", "--until-done"]).exit_code == 6  # done, with failures left
    assert states(database_url) == {"failed": 3}
    sandbox.faults.configure(FaultConfig())

    one = runner.invoke(app, ["retry", "ABC-100000"])
    assert one.exit_code == 0 and "back in imported, reconciling place-order first" in one.output
    rest = runner.invoke(app, ["retry", "--failed"])
    assert rest.exit_code == 0 and "2 order(s) back in the flow" in rest.output
    assert runner.invoke(app, ["run", "--until-done"]).exit_code == 0
    assert states(database_url) == {"invoiced": 3}

    history = json.loads(runner.invoke(app, ["show", "ABC-100000", "--json"]).output)["events"]
    resumed = next(i for i, e in enumerate(history) if e["action"] == "resume_imported")
    after = [e for e in history[resumed + 1 :] if e["kind"] in ("call", "reconcile")]
    assert (after[0]["action"], after[1]["kind"]) == ("get-order", "reconcile")


def test_retry_refuses_orders_that_did_not_fail(served: tuple[Sandbox, CliRunner, str]) -> None:
    """Only failed orders are retried; anything else is a clear error."""
    _sandbox, runner, _url = served
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(1)))
    result = runner.invoke(app, ["retry", "ABC-100000"])
    assert result.exit_code == 3 and "not failed" in result.output


def test_cancel_during_the_grace_period_cancels_in_vtex(served: tuple[Sandbox, CliRunner, str]) -> None:
    """`cancel` on an authorized order: VTEX cancels it, and so does the order here."""
    sandbox, runner, _database_url = served
    env = dict(runner.env or {})
    runner = CliRunner(env={**env, "ORCHESTRATOR_GRACE_PERIOD": "1h"})
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(2)))
    run_until_authorized(runner, 2)
    result = runner.invoke(app, ["cancel", "ABC-100001", "--reason", "customer changed their mind"])
    assert result.exit_code == 0, result.output
    assert "ABC-100001 canceled" in result.output
    assert sandbox.oms.find("ABC-100001").status == "canceled"  # type: ignore[union-attr]
    assert sandbox.oms.find("ABC-100001").cancel_reason == "customer changed their mind"  # type: ignore[union-attr]


def test_cancel_of_an_order_vtex_never_received_needs_no_call(served: tuple[Sandbox, CliRunner, str]) -> None:
    """An imported order is canceled locally; VTEX is not called."""
    sandbox, runner, database_url = served
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(1)))
    result = runner.invoke(app, ["cancel", "ABC-100000"])
    assert result.exit_code == 0 and "canceled" in result.output
    assert sandbox.oms.ledger.requests == 0
    assert states(database_url) == {"canceled": 1}


def test_cancel_refused_by_vtex_leaves_the_order_going_with_the_reason(
    served: tuple[Sandbox, CliRunner, str],
) -> None:
    """An order whose invoice VTEX already holds cannot be canceled: exit 3 and VTEX's reason, and
    the order is not failed: VTEX will take it to invoiced, and so does the daemon."""
    _sandbox, runner, database_url = served
    env = dict(runner.env or {})
    runner = CliRunner(env={**env, "ORCHESTRATOR_GRACE_PERIOD": "1h", "ORCHESTRATOR_INVOICE_TIMING": "asap"})
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(1)))
    run_until_authorized(runner, 1)
    result = runner.invoke(app, ["cancel", "ABC-100000"])
    assert result.exit_code == 3 and "VTEX refused to cancel ABC-100000" in result.output
    assert states(database_url) == {"dispatch-authorized": 1}
    history = json.loads(runner.invoke(app, ["show", "ABC-100000", "--json"]).output)["events"]
    assert any(e["action"] == "cancel-refused" for e in history)


def test_cancel_of_an_invoiced_order_is_refused_before_calling_vtex(
    served: tuple[Sandbox, CliRunner, str],
) -> None:
    """Invoiced orders cannot be canceled in VTEX; the command says so and calls nothing."""
    _sandbox, runner, _url = served
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(1)))
    runner.invoke(app, ["run", "--until-done"])
    result = runner.invoke(app, ["cancel", "ABC-100000"])
    assert result.exit_code == 3 and "Input invoice" in result.output


def test_admin_cancel_is_picked_up(served: tuple[Sandbox, CliRunner, str]) -> None:
    """Canceled in VTEX's Admin during the grace period: the order becomes canceled here too.
    Deterministic: the daemon stops with the order waiting out a long grace period, VTEX's Admin
    cancels it, and a daemon whose grace period is already over looks and finds it canceled."""
    sandbox, runner, database_url = served
    env = dict(runner.env or {})
    sandbox.oms.config.grace_seconds = 3600
    waiting = CliRunner(env={**env, "ORCHESTRATOR_GRACE_PERIOD": "1h"})
    waiting.invoke(app, ["import", "-"], input="\n".join(lines_of(1)))
    run_until_authorized(waiting, 1)
    assert sandbox.oms.find("ABC-100000").status == "window-to-cancel"  # type: ignore[union-attr]
    httpx.post(f"{env['VTEX_BASE_URL']}/_sandbox/orders/ABC-100000/cancel", json={"reason": "customer"})
    # The hour passes: the order is due again, as it would be when the stored grace period ends.
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
        db.execute("UPDATE orders SET next_run_at = '2000-01-01 00:00:00'")
    assert runner.invoke(app, ["run", "--until-done"]).exit_code == 0
    assert states(database_url) == {"canceled": 1}
    status = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert status["canceledInVtex"] == 1
    assert "1 order(s) were canceled in VTEX, not here" in runner.invoke(app, ["status"]).output
    listed = json.loads(runner.invoke(app, ["list", "--code", "canceled-in-vtex", "--json"]).output)
    assert [o["orderId"] for o in listed["orders"]] == ["ABC-100000"]
    assert "canceled in VTEX while dispatch-authorized" in listed["orders"][0]["lastError"]
