"""The daemon drives imported orders to `invoiced` against the sandbox over a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.intake.importer import import_lines
from orchestrator.ops.operations import attach_invoice
from orchestrator.runner import run_daemon
from orchestrator.sandbox import Sandbox, ServerThread
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from tests.factories import import_lines as lines_of
from tests.factories import import_record, invoice_for, place_body


def drive(settings: Settings, store: Store, timeout: float = 60) -> None:
    asyncio.run(
        asyncio.wait_for(run_daemon(settings, store, until_done=True, install_signals=False), timeout)
    )


def states(store: Store) -> dict[str, int]:
    return {c.state: c.count for c in store.state_counts()}


@pytest.mark.parametrize("source", ["poll", "auto"])
def test_orders_reach_invoiced_with_every_effect_once(
    source: str, sandbox_server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    """30 orders with invoices: all invoiced; VTEX saw one Place, one Start handling, one invoice
    each. Polling, each order also looks once (its `invoiced`); on the default (`auto`: the
    sandbox's key may read the Orders Feed) the feed says it instead."""
    sandbox = sandbox_server.sandbox
    settings = make_settings(sandbox, sandbox_server.url, status_source=source)
    store = open_store(settings.database_url)
    import_lines(lines_of(30), store, utcnow())
    drive(settings, store)
    assert states(store) == {"invoiced": 30}
    for entry in sandbox.oms.ledger.entries():
        assert (entry.places_accepted, entry.start_handling_accepted, len(entry.invoice_numbers)) == (1, 1, 1)
        assert entry.invoiced_total == entry.value
    about_orders = [r for r in sandbox.oms.ledger.request_log if r["orderId"]]
    # place, authorize, start handling, invoice, and polling's one look
    assert len(about_orders) == (5 if source == "poll" else 4) * 30


def test_history_records_every_call_and_transition(
    sandbox_server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    """An order's events: import, then each VTEX call (status, duration) and each transition in
    order (polling: the Orders Feed's order is in `test_orders_feed`)."""
    settings = make_settings(sandbox_server.sandbox, sandbox_server.url, status_source="poll")
    store = open_store(settings.database_url)
    import_lines(lines_of(1), store, utcnow())
    drive(settings, store)
    row = store.find("ABC-100000")
    assert row is not None
    events = store.events(row.id)
    summary = [(e["kind"], e["action"], e["http_status"] or e["to_state"]) for e in events]
    assert summary == [
        ("import", None, "imported"),
        ("call", "place-order", 200),
        ("transition", "place", "created"),
        ("call", "authorize-dispatch", 200),
        ("transition", "authorize", "dispatch-authorized"),
        ("call", "start-handling", 204),
        ("transition", "become_ready", "ready-for-handling"),
        ("transition", "start_handling", "handling"),
        ("call", "send-invoice", 200),
        ("transition", "send_invoice", "handling"),
        ("call", "get-order", 200),
        ("transition", "complete", "invoiced"),
    ]
    assert all(e["duration_ms"] is not None for e in events if e["kind"] == "call")


def test_order_without_invoice_waits_then_finishes_once_attached(
    sandbox_server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    """No invoice: the order stops in handling, waiting; attaching one lets it reach invoiced."""
    settings = make_settings(sandbox_server.sandbox, sandbox_server.url)
    store = open_store(settings.database_url)
    record = import_record(7, with_invoice=False)
    import_lines([json.dumps(record)], store, utcnow())
    drive(settings, store)
    row = store.find("ABC-100007")
    assert row is not None and row.state == "handling" and row.next_run_at is None
    assert row.wait_reason is not None and "invoice" in row.wait_reason
    attach_invoice(store, "ABC-100007", invoice_for(record["order"], "NF7"))
    drive(settings, store)
    assert states(store) == {"invoiced": 1}


def test_order_already_in_vtex_is_adopted_not_failed(
    sandbox_server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    """Place answered FMT009 for an order VTEX already holds with our value: reconcile, do not fail."""
    sandbox = sandbox_server.sandbox
    sandbox.oms.place("ABC", None, [import_record(1)["order"]])
    settings = make_settings(sandbox, sandbox_server.url)
    store = open_store(settings.database_url)
    import_lines(lines_of(1, start=1), store, utcnow())
    drive(settings, store)
    assert states(store) == {"invoiced": 1}
    entry = sandbox.oms.ledger.get("ABC-100001")
    assert entry is not None and (entry.places_accepted, entry.places_rejected_duplicate) == (1, 1)


def test_a_different_order_under_the_same_id_fails_with_fmt009(
    sandbox_server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    """FMT009 and the VTEX order has other items: it is not ours, so ours fails with VTEX's code
    and says what differs."""
    sandbox = sandbox_server.sandbox
    other = place_body("100002", skus=(("9", 3, 100),), shipping=0)
    sandbox.oms.place("ABC", None, [other])
    settings = make_settings(sandbox, sandbox_server.url)
    store = open_store(settings.database_url)
    import_lines(lines_of(1, start=2), store, utcnow())
    drive(settings, store)
    row = store.find("ABC-100002")
    assert row is not None and row.state == "failed" and row.last_error_code == "FMT009"
    assert "a different order under ABC-100002 (items 3 x 9, not 1 x 5)" in (row.last_error or "")


def test_payment_mismatch_fails_with_vtex_code_and_message(
    sandbox_server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    """FMT007 is permanent: the order goes to failed at once, with VTEX's code and message."""
    settings = make_settings(sandbox_server.sandbox, sandbox_server.url)
    store = open_store(settings.database_url)
    record = import_record(3, value=1000, with_invoice=False)
    import_lines([json.dumps(record)], store, utcnow())
    drive(settings, store)
    row = store.find("ABC-100003")
    assert row is not None and (row.state, row.last_error_code, row.failed_from) == (
        "failed",
        "FMT007",
        "imported",
    )
    assert row.last_error is not None and "differs from store desired value (1100)" in row.last_error
    about_it = [r for r in sandbox_server.sandbox.oms.ledger.request_log if r["orderId"] == "ABC-100003"]
    assert len(about_it) == 2  # the refused Place, then one look to be sure


def test_vtex_grace_period_longer_than_ours_is_waited_out(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings]
) -> None:
    """Start handling answered 409 OMS003 at our grace end: the order polls, then finishes; no failure.
    VTEX's grace period (4 s) ends well after ours and its margin (1.5 s), so a busy machine cannot
    delay our first look past it."""
    sandbox = make_sandbox(grace_seconds=4.0)
    with ServerThread(sandbox) as server:
        settings = make_settings(sandbox, server.url)
        store = open_store(settings.database_url)
        import_lines(lines_of(3), store, utcnow())
        drive(settings, store)
    assert states(store) == {"invoiced": 3}
    assert all(
        e.start_handling_accepted == 1 and e.start_handling_refused >= 1 for e in sandbox.oms.ledger.entries()
    )


def test_bad_credentials_make_orders_wait_not_fail(
    sandbox_server: ServerThread, make_settings: Callable[..., Settings]
) -> None:
    """401: the order is not failed; it waits with a reason naming the credentials."""
    settings = make_settings(sandbox_server.sandbox, sandbox_server.url, vtex_app_token="wrong-token")
    store = open_store(settings.database_url)
    import_lines(lines_of(1), store, utcnow())

    async def one_pass() -> None:
        holder: dict[str, Any] = {}
        task = asyncio.create_task(
            run_daemon(settings, store, install_signals=False, on_ready=lambda d: holder.update(d=d))
        )
        while store.find("ABC-100000").last_error is None:  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        holder["d"].request_stop()
        await task

    asyncio.run(asyncio.wait_for(one_pass(), 30))
    row = store.find("ABC-100000")
    assert row is not None and row.state == "imported" and row.intent is None
    assert row.wait_reason is not None and "credentials" in row.wait_reason
