"""Invoices as stores issue them, end to end against the sandbox over HTTP and `serve`: an order
invoiced in parts (the last one attached later through the API), a return, and an order whose
value in VTEX differs from ours (price divergence)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.store.rows import OrderRow
from tests.api_server import Served, api_served
from tests.daemon_runs import run_until
from tests.factories import import_record, return_for, split_record

served = api_served  # the fixture, under the name these tests use


def row_of(served: Served, order: str) -> OrderRow:
    found = served.store.find(order)
    assert found is not None
    return found


def test_an_order_invoiced_in_three_parts_the_last_through_the_api(served: Served) -> None:
    """Two invoices imported, the third attached later through the API: VTEX holds three numbers
    and no more, each sent once; a fourth past the value is refused before any invoice call, and
    nothing is taken once the order is invoiced."""
    record = split_record(1)
    third = record["invoices"].pop()
    order = "ABC-100001"
    assert served.call("POST", "/api/orders", "intake", json=[record]).status_code == 201
    run_until(served.settings, served.store, lambda: row_of(served, order).invoices_sent == 2)
    vtex = served.sandbox.oms.find(order)
    assert vtex is not None and vtex.status == "handling"  # 1200 of 1700: VTEX waits for the rest
    assert row_of(served, order).state == "handling"
    partly = served.call("GET", "/api/orders?partlyInvoiced=1", "viewer").json()["orders"]
    assert [(o["orderId"], o["invoices"], o["invoicedValue"]) for o in partly] == [(order, 2, 1200)]
    shown = served.call("GET", f"/api/orders/{order}", "viewer").json()["order"]
    assert shown["invoiceSummary"].startswith("invoiced 2 of 2 invoices: 1 200 of 1 700")
    assert [i["invoiceNumber"] for i in shown["invoices"]] == ["NF100001-1", "NF100001-2"]

    ledger = served.sandbox.oms.ledger
    past = dict(third, invoiceNumber="NF100001-X", invoiceValue=501)
    refused = served.call("POST", f"/api/orders/{order}/invoice", "intake", json=past)
    assert refused.status_code == 409, refused.text
    assert (
        "would bring the order's Output invoices to 1701, more than its value 1700" in refused.json()["error"]
    )
    assert ledger.get(order).invoice_notifications == 2  # type: ignore[union-attr]

    attached = served.call("POST", f"/api/orders/{order}/invoice", "intake", json=third)
    assert attached.status_code == 201, attached.text
    run_until(served.settings, served.store, lambda: row_of(served, order).state == "invoiced")
    entry = ledger.get(order)
    assert entry is not None and entry.invoice_numbers == ["NF100001-1", "NF100001-2", "NF100001-3"]
    assert (entry.invoice_notifications, entry.invoiced_total, entry.value) == (3, 1700, 1700)
    late = dict(third, invoiceNumber="NF100001-4", invoiceValue=1, items=[])
    after = served.call("POST", f"/api/orders/{order}/invoice", "intake", json=late)
    assert after.status_code == 409 and "takes no more sale invoices" in after.json()["error"]
    assert entry.invoice_notifications == 3
    assert served.call("GET", "/api/orders?partlyInvoiced=1", "viewer").json()["orders"] == []


def test_a_return_of_one_of_two_items(served: Served, tmp_path: Path) -> None:
    """One Input invoice in VTEX, the order still invoiced and shown partly returned; the same
    return again (API, then CLI) is idempotent; a cancel points at `return`."""
    record = split_record(2, parts=2)
    order = "ABC-100002"
    assert served.call("POST", "/api/orders", "intake", json=[record]).status_code == 201
    run_until(served.settings, served.store, lambda: row_of(served, order).state == "invoiced")

    back = return_for(record["invoices"][0], "RT100002")  # the SKU 5 of SKU 5 and 2 x SKU 6
    too_much = return_for(
        record["invoices"][1], "RT100002-B", items=[{"id": "6", "price": 300, "quantity": 3}]
    )
    over = served.call("POST", f"/api/orders/{order}/returns", "intake", json=too_much)
    assert over.status_code == 409 and "3 would be returned, more than the 2 invoiced" in over.json()["error"]
    first = served.call("POST", f"/api/orders/{order}/returns", "intake", json=back)
    assert first.status_code == 201, first.text
    again = served.call("POST", f"/api/orders/{order}/returns", "intake", json=back)
    assert again.status_code == 200 and "already attached" in again.json()["message"]
    run_until(served.settings, served.store, lambda: row_of(served, order).returns_sent == 1)

    entry = served.sandbox.oms.ledger.get(order)
    assert entry is not None and entry.invoice_numbers[-1] == "RT100002"
    assert (entry.returned_total, entry.invoice_notifications) == (900, 3)
    vtex = served.sandbox.oms.find(order)
    assert vtex is not None and vtex.packages["RT100002"]["type"] == "Input"
    shown = served.call("GET", f"/api/orders/{order}", "viewer").json()["order"]
    assert (shown["state"], shown["returned"]) == ("invoiced", "partly returned")
    returned = served.call("GET", "/api/orders?returned=1", "viewer").json()["orders"]
    assert [(o["orderId"], o["returnedValue"]) for o in returned] == [(order, 900)]

    cli = CliRunner(env={"ORCHESTRATOR_DATABASE_URL": served.settings.database_url})
    path = tmp_path / "return.json"
    path.write_text(json.dumps(back))
    repeated = cli.invoke(app, ["return", order, "--file", str(path)])
    assert repeated.exit_code == 0 and "already attached" in repeated.output, repeated.output
    canceled = served.call("POST", f"/api/orders/{order}/cancel", "operator", json={})
    assert canceled.status_code == 409 and f"orchestrator return {order}" in canceled.json()["error"]
    assert entry.invoice_notifications == 3


def test_an_order_whose_value_vtex_changed_finishes_when_its_invoices_reach_vtexs(served: Served) -> None:
    """VTEX's price is 500 above the marketplace's: our invoice of marketplacePaymentValue leaves
    the order short in VTEX, and an invoice for the difference, taken only once VTEX's value was
    read (ours alone would refuse it), finishes it."""
    served.sandbox.oms.config.price_divergence = 500
    record = import_record(3)  # its invoice: 1100, the marketplace's value
    order = "ABC-100003"
    assert served.call("POST", "/api/orders", "intake", json=[record]).status_code == 201
    run_until(served.settings, served.store, lambda: row_of(served, order).invoices_sent == 1)
    assert served.sandbox.oms.find(order).value == 1600  # type: ignore[union-attr]

    rest = {
        "type": "Output",
        "issuanceDate": "2026-11-28T10:00:00-03:00",
        "invoiceNumber": "NF100003-D",
        "invoiceValue": 500,
        "items": [],
    }
    attached = served.call("POST", f"/api/orders/{order}/invoice", "intake", json=rest)
    assert attached.status_code == 201, attached.text
    row = row_of(served, order)
    assert row.vtex_value == 1600 and row.value == 1100
    run_until(served.settings, served.store, lambda: row_of(served, order).state == "invoiced")
    entry = served.sandbox.oms.ledger.get(order)
    assert entry is not None and (entry.invoiced_total, entry.value) == (1600, 1600)
    shown = served.call("GET", f"/api/orders/{order}", "viewer").json()["order"]
    assert shown["invoiceSummary"].startswith("invoiced 2 of 2 invoices: 1 600 of 1 600 (VTEX's value)")
