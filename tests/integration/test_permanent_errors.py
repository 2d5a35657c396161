"""Permanent errors put the order in `failed` with VTEX's code and message; bad credentials pause the
whole account instead of failing orders one by one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.config.stuck_rules import StuckRules
from orchestrator.intake.importer import import_lines
from orchestrator.ops.status import report
from orchestrator.runner import run_daemon
from orchestrator.sandbox import Sandbox, ServerThread
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from tests.factories import import_lines as lines_of
from tests.factories import import_record


def drive(settings: Settings, store: Store, timeout: float = 60) -> Any:
    return asyncio.run(
        asyncio.wait_for(run_daemon(settings, store, until_done=True, install_signals=False), timeout)
    )


def run_one(
    make_sandbox: Callable[..., Sandbox],
    make_settings: Callable[..., Settings],
    record: dict[str, Any],
    **sandbox_config: Any,
) -> tuple[Store, Sandbox]:
    sandbox = make_sandbox(grace_seconds=0.5, **sandbox_config)
    with ServerThread(sandbox) as server:
        settings = make_settings(sandbox, server.url)
        store = open_store(settings.database_url)
        import_lines([json.dumps(record)], store, utcnow())
        drive(settings, store)
    return store, sandbox


@pytest.mark.parametrize(
    ("change", "code", "in_message"),
    [
        (lambda o: o["items"][0].update(id="5000"), "FMT005", "5000"),
        (lambda o: o.update(marketplacePaymentValue=999), "FMT007", "(999)"),
    ],
)
@pytest.mark.sqlite_only
def test_vtex_validation_errors_fail_the_order_at_once_with_vtex_code(
    make_sandbox: Callable[..., Sandbox],
    make_settings: Callable[..., Settings],
    change: Any,
    code: str,
    in_message: str,
) -> None:
    """FMTxxx refusals only VTEX can tell (its catalog, its prices): failed after one Place, with
    VTEX's code and message, visible in status. (Those the import can tell never reach VTEX.)"""
    record = import_record(1, with_invoice=False)
    change(record["order"])
    store, sandbox = run_one(make_sandbox, make_settings, record)
    row = store.find("ABC-100001")
    assert row is not None and (row.state, row.last_error_code) == ("failed", code)
    assert row.last_error is not None and in_message in row.last_error
    assert sandbox.oms.ledger.requests_by_operation["place-order"] == 1
    [stuck] = report(store, utcnow(), StuckRules.parse("", timedelta(minutes=30)), timedelta(minutes=30))[
        "stuck"
    ]
    assert (stuck["state"], stuck["lastErrorCode"]) == ("failed", code)


@pytest.mark.sqlite_only
def test_affiliate_with_seller_payment_methods_fails_with_a_hint(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings]
) -> None:
    """VTEX answers 500 to every Place for such an affiliate: after a few quick tries the order fails,
    saying what VTEX does in that case, and never was created twice."""
    record = import_record(2, affiliate="SPM", with_invoice=False)
    store, sandbox = run_one(
        make_sandbox, make_settings, record, seller_payment_affiliates=frozenset({"SPM"})
    )
    row = store.find("SPM-100002")
    assert row is not None and row.state == "failed"
    assert row.last_error is not None and "seller's payment methods" in row.last_error
    assert sandbox.oms.ledger.requests_by_operation["place-order"] == 3
    assert sandbox.oms.find("SPM-100002") is None


def test_bad_credentials_pause_the_account_with_one_log_line_and_a_status_entry(
    sandbox_server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    """401: no order fails; all work stops; one error line; `status` says the account is paused."""
    settings = make_settings(sandbox_server.sandbox, sandbox_server.url, vtex_app_token="wrong-token")
    store = open_store(settings.database_url)
    import_lines(lines_of(20), store, utcnow())
    with capture_logs() as logs:
        daemon = drive(settings, store, timeout=30)
    assert daemon.stop_reason is not None and "credentials" in daemon.stop_reason
    assert {c.state: c.count for c in store.state_counts()} == {"imported": 20}
    rejected = [e for e in logs if e["event"].startswith("VTEX rejected the credentials")]
    assert len(rejected) == 1 and rejected[0]["log_level"] == "error"
    data = report(store, utcnow(), settings.stuck_rules, settings.grace_period)
    [account] = data["accounts"]
    assert "rejected the credentials (HTTP 401)" in account["reason"]
    requests = sandbox_server.sandbox.oms.ledger.requests
    assert requests <= settings.concurrency, f"{requests} doomed requests were sent"


def test_the_pause_lifts_once_vtex_accepts_the_credentials_again(
    sandbox_server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    """After fixing the credentials, the next run clears the pause and finishes the orders."""
    bad = make_settings(sandbox_server.sandbox, sandbox_server.url, vtex_app_token="wrong-token")
    store = open_store(bad.database_url)
    import_lines(lines_of(3), store, utcnow())
    drive(bad, store, timeout=30)
    assert store.account_pauses()
    with store.engine.begin() as conn:  # the operator waits out the pause (here: ends it)
        conn.exec_driver_sql("UPDATE vtex_accounts SET paused_until = '2000-01-01 00:00:00.000000'")
        conn.exec_driver_sql("UPDATE orders SET next_run_at = '2000-01-01 00:00:00.000000'")
    good = make_settings(sandbox_server.sandbox, sandbox_server.url)
    drive(good, store)
    assert {c.state: c.count for c in store.state_counts()} == {"invoiced": 3}
    assert store.account_pauses() == []
