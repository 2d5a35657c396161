"""The daemon against VTEX beyond the happy path (the sandbox over a real socket): statuses the flow
does not drive, answers that are not VTEX's, cancellation as VTEX does it, refused tracking
updates, and the per-order request guard. No order may loop, strand or fail for VTEX's reasons."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings, load_settings
from orchestrator.config.stuck_rules import StuckRules
from orchestrator.intake.importer import import_lines
from orchestrator.ops.operations import attach_invoice, attach_tracking, request_cancel, retry
from orchestrator.ops.status import report
from orchestrator.sandbox import FaultConfig, Sandbox, SandboxConfig, SandboxOms, ServerThread
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from tests.daemon_runs import run_until, states
from tests.factories import import_lines as lines_of
from tests.factories import import_record, invoice_for


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(Sandbox(SandboxOms(SandboxConfig(grace_seconds=1.0)))) as served:
        yield served


def settings_for(server: ServerThread, database_url: str, **overrides: Any) -> Settings:
    config = server.sandbox.oms.config
    values: dict[str, Any] = {
        "database_url": database_url,
        "vtex_base_url": server.url,
        "vtex_app_key": config.app_key,
        "vtex_app_token": config.app_token,
        "grace_period": "1s",
        "tick_interval": "100ms",
        **overrides,
    }
    return load_settings(None, **values)


def requests_per_order(sandbox: Sandbox) -> Counter[str]:
    return Counter(entry["orderId"] for entry in sandbox.oms.ledger.request_log if entry["orderId"])


def history(store: Store, order_id: str) -> list[dict[str, Any]]:
    row = store.find(order_id)
    assert row is not None
    return store.events(row.id)


HELD = {
    "ABC-100900": "waiting-for-manual-authorization",
    "ABC-100901": "cancellation-requested",
    "ABC-100902": "payment-pending",
    "ABC-100903": "on-order-completed-ffm",
    "ABC-100904": "waiting-ffmt-authorization",
}


@pytest.mark.slow
def test_orders_vtex_holds_in_statuses_the_flow_does_not_drive_wait_politely(
    server: ServerThread, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Five orders held by VTEX for 40 seconds, each in another such status: a dozen requests at most
    each, `status --stuck` says where VTEX holds them and what to do, and 30 other orders of the
    account finish at full speed beside them."""
    sandbox = server.sandbox
    held_lines = []
    for number, (order_id, status) in enumerate(HELD.items(), 900):
        record = import_record(number)
        sandbox.oms.place("ABC", None, [record["order"]])  # VTEX already has it, and holds it
        sandbox.oms.pin(order_id, status)
        held_lines.append(json.dumps(record))
    settings = settings_for(server, sqlite_url, stuck_after="20s")
    store = open_store(settings.database_url)
    import_lines([*lines_of(30), *held_lines], store, utcnow())
    finished: dict[str, float] = {}

    def watch(elapsed: float) -> None:
        if "others" not in finished and states(store).get("invoiced") == 30:
            finished["others"] = elapsed

    run_until(settings, store, lambda: False, timeout=40, during=watch)

    counts = requests_per_order(sandbox)
    with capsys.disabled():
        held = ", ".join(f"{status} {counts[order_id]}" for order_id, status in HELD.items())
        print(f"\nheld 40 s, requests per order: {held}; 30 others invoiced in {finished['others']:.1f} s")
    assert finished["others"] < 10, "the other orders must not wait behind the held ones"
    for order_id in HELD:
        assert counts[order_id] <= 12, (order_id, counts[order_id])
    data = report(store, utcnow(), StuckRules.parse("20s", timedelta(seconds=1)), timedelta(seconds=1))
    reasons = {entry["orderId"]: entry["reason"] for entry in data["stuck"]}
    for order_id, status in HELD.items():
        assert f"VTEX holds the order in {status}" in reasons[order_id], reasons.get(order_id)
    assert "approve it in VTEX Admin" in reasons["ABC-100900"]
    assert all(e["action"] != "fail" for order_id in HELD for e in history(store, order_id))


@pytest.mark.slow
def test_an_endpoint_answering_html_pauses_the_account_then_every_order_finishes(
    server: ServerThread, sqlite_url: str
) -> None:
    """A WAF answers 200 HTML to everything, then goes away: no order fails (for "no such order" or
    anything else), none needs a manual retry, and all end invoiced."""
    sandbox = server.sandbox
    sandbox.faults.configure(FaultConfig(html=1.0))
    settings = settings_for(server, sqlite_url)
    store = open_store(settings.database_url)
    import_lines(lines_of(20), store, utcnow())
    seen: dict[str, Any] = {}

    def heal(elapsed: float) -> None:
        pauses = [p for p in store.account_pauses() if p.until > utcnow()]
        if pauses and "pause" not in seen:
            seen["pause"] = pauses[0].reason
            sandbox.faults.configure(FaultConfig())

    run_until(settings, store, lambda: states(store) == {"invoiced": 20}, timeout=90, during=heal)

    assert states(store) == {"invoiced": 20}
    assert "does not answer like VTEX" in seen["pause"] and "text/html" in seen["pause"]
    for number in range(20):
        assert all(e["action"] != "fail" for e in history(store, f"ABC-{100000 + number}"))
    summary = sandbox.oms.ledger.summary()
    assert summary["ordersWithDuplicatePlace"] == 0 and summary["ordersWithSeveralInvoiceNumbers"] == 0


def handling_without_invoice(server: ServerThread, sqlite_url: str) -> tuple[Settings, Store, dict[str, Any]]:
    settings = settings_for(server, sqlite_url)
    store = open_store(settings.database_url)
    record = import_record(1, with_invoice=False)
    import_lines([json.dumps(record)], store, utcnow())
    run_until(settings, store, lambda: states(store) == {"handling": 1}, timeout=30)
    return settings, store, record


def cancel_and_run(settings: Settings, store: Store, until: Callable[[], bool], timeout: float = 30) -> None:
    request_cancel(store, "ABC-100001", "customer changed their mind")
    run_until(settings, store, until, timeout=timeout)


def test_a_cancel_vtex_accepts_waits_in_canceling_then_is_canceled(
    server: ServerThread, sqlite_url: str
) -> None:
    """After the grace period VTEX answers 200 and decides later: canceling, then canceled."""
    server.sandbox.oms.config.cancel_delay_seconds = 1.0
    settings, store, _record = handling_without_invoice(server, sqlite_url)
    cancel_and_run(settings, store, lambda: states(store) == {"canceled": 1})
    moves = [
        (e["from_state"], e["to_state"]) for e in history(store, "ABC-100001") if e["kind"] == "transition"
    ]
    assert moves[-2:] == [("handling", "canceling"), ("canceling", "canceled")]
    assert server.sandbox.oms.find("ABC-100001").status == "canceled"  # type: ignore[union-attr]


def test_a_cancel_vtex_denies_leaves_the_order_going_on(server: ServerThread, sqlite_url: str) -> None:
    """Denied: the order goes back where it was, the denial in its history, and still finishes."""
    server.sandbox.oms.config.cancel_delay_seconds = 1.0
    server.sandbox.oms.config.cancel_mode = "deny"
    settings, store, record = handling_without_invoice(server, sqlite_url)
    cancel_and_run(settings, store, lambda: states(store) == {"handling": 1} and _denied(store))
    row = store.find("ABC-100001")
    assert row is not None and row.cancel_reason is None
    attach_invoice(store, "ABC-100001", invoice_for(record["order"], "NF1"))
    run_until(settings, store, lambda: states(store) == {"invoiced": 1}, timeout=30)
    assert states(store) == {"invoiced": 1}


def _denied(store: Store) -> bool:
    return any(e["action"] == "cancel-denied" for e in history(store, "ABC-100001"))


def test_a_cancellation_stuck_in_vtex_is_listed_and_resolves_when_vtex_decides(
    server: ServerThread, sqlite_url: str
) -> None:
    """VTEX keeps it cancellation-requested: the order waits in canceling, polling less and less,
    `status --stuck` says why; once VTEX decides, the order follows."""
    server.sandbox.oms.config.cancel_mode = "stick"
    settings, store, _record = handling_without_invoice(server, sqlite_url)
    cancel_and_run(settings, store, lambda: False, timeout=8)
    assert states(store) == {"canceling": 1}
    before = requests_per_order(server.sandbox)["ABC-100001"]
    rules = StuckRules.parse("canceling=1s", timedelta(seconds=1))
    [entry] = report(store, utcnow(), rules, timedelta(seconds=1))["stuck"]
    assert "cancellation-requested" in entry["reason"] and "VTEX Admin" in entry["suggestion"]
    server.sandbox.oms.decide_cancel("ABC-100001", "accept")
    run_until(settings, store, lambda: states(store) == {"canceled": 1}, timeout=60)
    assert states(store) == {"canceled": 1}
    # place, authorize, start handling, cancel, then looks at 1, 3, 5 and 7.5 s: not a loop
    assert before <= 8


def test_a_cancel_vtex_refuses_does_not_fail_the_order(server: ServerThread, sqlite_url: str) -> None:
    """An Output invoice already sent: VTEX refuses; the order carries on to invoiced."""
    settings = settings_for(server, sqlite_url, invoice_timing="asap", grace_period="3s")
    server.sandbox.oms.config.grace_seconds = 3
    store = open_store(settings.database_url)
    import_lines(lines_of(1, start=1), store, utcnow())
    run_until(
        settings,
        store,
        lambda: (r := store.find("ABC-100001")) is not None and r.invoice_sent,
    )
    request_cancel(store, "ABC-100001", "too late")
    run_until(settings, store, lambda: states(store) == {"invoiced": 1}, timeout=30)
    assert states(store) == {"invoiced": 1}
    assert any(e["action"] == "cancel-refused" for e in history(store, "ABC-100001"))


def test_a_refused_tracking_update_stops_visibly_instead_of_looping(
    server: ServerThread, sqlite_url: str
) -> None:
    """VTEX refuses the PATCH: the order stays invoiced, stopped with the reason, listed by
    `status --stuck`; a retry once VTEX accepts sends it."""
    settings = settings_for(server, sqlite_url)
    store = open_store(settings.database_url)
    import_lines(lines_of(1, start=1), store, utcnow())
    run_until(settings, store, lambda: states(store) == {"invoiced": 1}, timeout=30)
    server.sandbox.oms.config.tracking_refusal = 400
    attach_tracking(store, "ABC-100001", {"trackingNumber": "TR1"})
    run_until(settings, store, lambda: False, timeout=5)
    row = store.find("ABC-100001")
    assert row is not None and row.needs_attention == "tracking-refused" and row.next_run_at is None
    assert server.sandbox.oms.ledger.get("ABC-100001").tracking_refused == 1  # type: ignore[union-attr]
    rules = StuckRules.parse("", timedelta(seconds=1))
    [entry] = report(store, utcnow(), rules, timedelta(seconds=1))["stuck"]
    assert entry["orderId"] == "ABC-100001" and "tracking-refused" in entry["reason"]
    server.sandbox.oms.config.tracking_refusal = None
    retry(store, "ABC-100001", settings)
    run_until(
        settings,
        store,
        lambda: (r := store.find("ABC-100001")) is not None and r.tracking_sent,
    )
    assert server.sandbox.oms.find("ABC-100001").packages["NF100001"]["trackingNumber"] == "TR1"  # type: ignore[union-attr]


def test_the_sales_channel_goes_to_place_and_to_authorize(server: ServerThread, sqlite_url: str) -> None:
    """An order with `salesChannel` is placed and authorized with that `sc`."""
    settings = settings_for(server, sqlite_url)
    store = open_store(settings.database_url)
    record = {**import_record(1), "salesChannel": "2"}
    import_lines([json.dumps(record)], store, utcnow())
    run_until(settings, store, lambda: states(store) == {"invoiced": 1}, timeout=30)
    order = server.sandbox.oms.find("ABC-100001")
    assert order is not None and order.sales_channel == "2"
    assert server.sandbox.oms.ledger.get("ABC-100001").authorize_sales_channels == ["2"]  # type: ignore[union-attr]


def test_check_tells_a_vtex_answer_from_another(server: ServerThread, sqlite_url: str) -> None:
    """`check` against an HTML-answering URL fails and says what answered; against VTEX it passes."""
    config = server.sandbox.oms.config
    env = {
        "ORCHESTRATOR_DATABASE_URL": sqlite_url,
        "VTEX_BASE_URL": server.url,
        "VTEX_APP_KEY": config.app_key,
        "VTEX_APP_TOKEN": config.app_token,
    }
    runner = CliRunner(env=env)
    runner.invoke(app, ["migrate"])
    server.sandbox.faults.configure(FaultConfig(html=1.0))
    bad = runner.invoke(app, ["check"])
    assert bad.exit_code == 1 and "text/html" in bad.output and "VTEX_BASE_URL" in bad.output
    server.sandbox.faults.configure(FaultConfig())
    assert runner.invoke(app, ["check"]).exit_code == 0
