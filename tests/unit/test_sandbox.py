"""The sandbox behaves as VTEX-API.md documents, one behaviour per test (in-process transport)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.sandbox import Catalog
from tests.asgi import InProcessClient
from tests.conftest import Clock
from tests.factories import invoice_for, place_body


def place(
    client: InProcessClient, body: dict[str, Any], affiliate: str = "ABC", as_array: bool = True
) -> httpx.Response:
    return client.post(
        "/api/fulfillment/pvt/orders", params={"affiliateId": affiliate}, json=[body] if as_array else body
    )


def authorize(client: InProcessClient, order_id: str, affiliate: str = "ABC") -> httpx.Response:
    mkp = order_id.split("-", 1)[1]
    return client.post(
        f"/api/fulfillment/pvt/orders/{order_id}/fulfill",
        params={"affiliateId": affiliate},
        json={"marketplaceOrderId": mkp},
    )


def status(client: InProcessClient, order_id: str) -> str:
    return str(client.get(f"/api/oms/pvt/orders/{order_id}").json()["status"])


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_order_id_is_affiliate_dash_marketplace_order_id(vtex: InProcessClient) -> None:
    """Place answers with an array whose element carries orderId = {affiliateId}-{marketplaceOrderId}."""
    response = place(vtex, place_body("956"), affiliate="MBR")
    assert response.status_code == 200
    assert [o["orderId"] for o in response.json()] == ["MBR-956"]
    assert status(vtex, "MBR-956") == "waiting-ffmt-authorization"


def test_place_accepts_a_single_object_too(vtex: InProcessClient) -> None:
    """The spec's schema is an object, every example an array: both are accepted."""
    response = place(vtex, place_body("7"), as_array=False)
    assert response.status_code == 200 and response.json()[0]["orderId"] == "ABC-7"


@pytest.mark.parametrize("affiliate", ["AB", "ABCD"])
def test_affiliate_id_must_have_three_characters(vtex: InProcessClient, affiliate: str) -> None:
    """FMT0031 for an affiliate id that is not 3 characters long."""
    response = place(vtex, place_body(), affiliate=affiliate)
    assert (response.status_code, error_code(response)) == (400, "FMT0031")


def test_sku_outside_the_catalog_is_not_available(vtex: InProcessClient) -> None:
    """FMT005 for a SKU the default catalog (ids 1 to 1000) does not hold."""
    response = place(vtex, place_body(skus=(("1001", 1, 900),)))
    assert (response.status_code, error_code(response)) == (400, "FMT005")


def test_catalog_file_replaces_the_default_and_limits_stock(
    make_client: Callable[..., InProcessClient], tmp_path: Path
) -> None:
    """--catalog FILE: only its SKUs exist, and an order beyond the stock is FMT005."""
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps([{"id": "A1", "stock": 2}, {"id": "B2"}]))
    client = make_client(catalog=Catalog.from_file(path))
    assert error_code(place(client, place_body("1", skus=(("5", 1, 900),)))) == "FMT005"
    assert place(client, place_body("2", skus=(("A1", 2, 900),), shipping=200)).status_code == 200
    assert error_code(place(client, place_body("3", skus=(("A1", 1, 900),)))) == "FMT005"
    assert place(client, place_body("4", skus=(("B2", 50, 10),), shipping=0)).status_code == 200


def test_payment_value_must_equal_items_plus_shipping(vtex: InProcessClient) -> None:
    """FMT007 when marketplacePaymentValue differs from items plus shipping (900 + 200 = 1100)."""
    response = place(vtex, place_body(value=1000))
    assert (response.status_code, error_code(response)) == (400, "FMT007")
    assert "(1000)" in response.json()["error"]["message"] and "(1100)" in response.json()["error"]["message"]


def test_duplicate_marketplace_order_id_is_refused(vtex: InProcessClient) -> None:
    """FMT009 for a second Place of the same marketplaceOrderId; the ledger counts both."""
    assert place(vtex, place_body("55")).status_code == 200
    again = place(vtex, place_body("55"))
    assert (again.status_code, error_code(again)) == (400, "FMT009")
    entry = vtex.oms.ledger.get("ABC-55")
    assert (entry.places_accepted, entry.places_rejected_duplicate) == (1, 1)


def test_duplicate_of_a_canceled_order_is_fmt0060(vtex: InProcessClient) -> None:
    """A canceled order cannot be recreated: FMT0060."""
    place(vtex, place_body("56"))
    assert vtex.post("/api/oms/pvt/orders/ABC-56/cancel", json={"reason": "test"}).status_code == 200
    assert error_code(place(vtex, place_body("56"))) == "FMT0060"


def test_affiliate_with_seller_payment_methods_gets_500(make_client: Callable[..., InProcessClient]) -> None:
    """VTEX answers 500 to Place for an affiliate configured with the seller's payment methods."""
    client = make_client(seller_payment_affiliates=frozenset({"SPM"}))
    assert place(client, place_body(), affiliate="SPM").status_code == 500
    assert place(client, place_body(), affiliate="ABC").status_code == 200


def test_grace_period_then_ready_for_handling(vtex: InProcessClient, clock: Clock) -> None:
    """Authorize dispatch puts the order in window-to-cancel for the grace period, then ready-for-handling."""
    place(vtex, place_body("60"))
    response = authorize(vtex, "ABC-60")
    assert (response.status_code, response.json()) == (200, {"marketplaceOrderId": "60"})
    assert status(vtex, "ABC-60") == "window-to-cancel"
    clock.now += 59.9
    assert status(vtex, "ABC-60") == "window-to-cancel"
    clock.now += 0.2
    assert status(vtex, "ABC-60") == "ready-for-handling"


def test_start_handling_is_204_only_when_ready(vtex: InProcessClient, clock: Clock) -> None:
    """409 OMS003 during the grace period, 204 once ready, 409 OMS003 again once handling."""
    place(vtex, place_body("61"))
    authorize(vtex, "ABC-61")
    early = vtex.post("/api/oms/pvt/orders/ABC-61/start-handling")
    assert (early.status_code, error_code(early)) == (409, "OMS003")
    clock.now += 61
    assert vtex.post("/api/oms/pvt/orders/ABC-61/start-handling").status_code == 204
    assert status(vtex, "ABC-61") == "handling"
    again = vtex.post("/api/oms/pvt/orders/ABC-61/start-handling")
    assert (again.status_code, error_code(again)) == (409, "OMS003")
    entry = vtex.oms.ledger.get("ABC-61")
    assert (entry.start_handling_accepted, entry.start_handling_refused) == (1, 2)


def test_invoice_returns_a_receipt_and_the_same_number_only_renews_it(vtex: InProcessClient) -> None:
    """Invoice 200 with {date, orderId, receipt}; the same invoiceNumber again changes only the receipt."""
    body = place_body("62")
    place(vtex, body)
    first = vtex.post("/api/oms/pvt/orders/ABC-62/invoice", json=invoice_for(body, "NF62"))
    second = vtex.post("/api/oms/pvt/orders/ABC-62/invoice", json=invoice_for(body, "NF62"))
    assert first.status_code == second.status_code == 200
    assert set(first.json()) == {"date", "orderId", "receipt"}
    assert first.json()["receipt"] != second.json()["receipt"]
    packages = vtex.get("/api/oms/pvt/orders/ABC-62").json()["packageAttachment"]["packages"]
    assert [p["invoiceNumber"] for p in packages] == ["NF62"]
    assert vtex.oms.ledger.get("ABC-62").invoice_numbers == ["NF62"]


def test_invoiced_once_handling_started_and_output_invoices_reach_the_value(
    vtex: InProcessClient, clock: Clock
) -> None:
    """An invoice sent during the grace period counts; the order becomes invoiced at Start handling."""
    body = place_body("63")
    place(vtex, body)
    authorize(vtex, "ABC-63")
    assert vtex.post("/api/oms/pvt/orders/ABC-63/invoice", json=invoice_for(body, "NF63")).status_code == 200
    assert status(vtex, "ABC-63") == "window-to-cancel"
    clock.now += 61
    vtex.post("/api/oms/pvt/orders/ABC-63/start-handling")
    assert status(vtex, "ABC-63") == "invoiced"


def test_partial_invoice_does_not_invoice_the_order(vtex: InProcessClient, clock: Clock) -> None:
    """Output invoices below the order value leave it in handling; the rest completes it."""
    body = place_body("64")
    place(vtex, body)
    authorize(vtex, "ABC-64")
    clock.now += 61
    vtex.post("/api/oms/pvt/orders/ABC-64/start-handling")
    part = {**invoice_for(body, "NF64A"), "invoiceValue": "600"}
    rest = {**invoice_for(body, "NF64B"), "invoiceValue": 500}
    vtex.post("/api/oms/pvt/orders/ABC-64/invoice", json=part)
    assert status(vtex, "ABC-64") == "handling"
    vtex.post("/api/oms/pvt/orders/ABC-64/invoice", json=rest)
    assert status(vtex, "ABC-64") == "invoiced"


def test_invoice_delay_shows_verifying_invoice_first(
    make_client: Callable[..., InProcessClient], clock: Clock
) -> None:
    """With an invoice delay the order passes through `invoice` (Verifying invoice) before `invoiced`."""
    client = make_client(invoice_delay_seconds=5)
    body = place_body("65")
    place(client, body)
    authorize(client, "ABC-65")
    clock.now += 61
    client.post("/api/oms/pvt/orders/ABC-65/start-handling")
    client.post("/api/oms/pvt/orders/ABC-65/invoice", json=invoice_for(body, "NF65"))
    assert status(client, "ABC-65") == "invoice"
    clock.now += 5
    assert status(client, "ABC-65") == "invoiced"


def test_bad_credentials_get_401(vtex: InProcessClient) -> None:
    """401 with VTEX's envelope {"error": {"code": "1", "message": "Unauthorized access"}}."""
    response = vtex.get("/api/oms/pvt/orders/ABC-1", headers={"X-VTEX-API-AppToken": "wrong"})
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "1", "message": "Unauthorized access", "exception": None}}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/oms/pvt/orders/ABC-404"),
        ("POST", "/api/oms/pvt/orders/ABC-404/start-handling"),
        ("POST", "/api/oms/pvt/orders/ABC-404/cancel"),
        ("POST", "/api/fulfillment/pvt/orders/ABC-404/fulfill?affiliateId=ABC"),
    ],
)
def test_unknown_orders_are_404(vtex: InProcessClient, method: str, path: str) -> None:
    """Every order route answers 404 for an order it does not know."""
    assert vtex.request(method, path, json={}).status_code == 404


def test_cancel_is_refused_once_an_output_invoice_exists(vtex: InProcessClient) -> None:
    """Cancel answers 400 once the order is invoiced or partially invoiced."""
    body = place_body("66")
    place(vtex, body)
    vtex.post("/api/oms/pvt/orders/ABC-66/invoice", json={**invoice_for(body, "NF66"), "invoiceValue": 100})
    assert vtex.post("/api/oms/pvt/orders/ABC-66/cancel", json={"reason": "x"}).status_code == 400
    assert status(vtex, "ABC-66") == "waiting-ffmt-authorization"


def test_tracking_update_needs_an_existing_invoice(vtex: InProcessClient) -> None:
    """PATCH on an unknown invoice number is 404; on ours it stores the tracking fields."""
    body = place_body("67")
    place(vtex, body)
    vtex.post("/api/oms/pvt/orders/ABC-67/invoice", json=invoice_for(body, "NF67"))
    tracking = {"trackingNumber": "BR1", "trackingUrl": None, "courier": "Correios", "dispatchedDate": None}
    assert vtex.patch("/api/oms/pvt/orders/ABC-67/invoice/NF99", json=tracking).status_code == 404
    assert vtex.patch("/api/oms/pvt/orders/ABC-67/invoice/NF67", json=tracking).status_code == 200
    package = vtex.get("/api/oms/pvt/orders/ABC-67").json()["packageAttachment"]["packages"][0]
    assert (package["trackingNumber"], package["courier"]) == ("BR1", "Correios")


def test_admin_cancel_during_the_grace_period(vtex: InProcessClient) -> None:
    """The control API simulates someone canceling in VTEX's Admin."""
    place(vtex, place_body("68"))
    authorize(vtex, "ABC-68")
    assert vtex.post("/_sandbox/orders/ABC-68/cancel", json={"reason": "customer"}).status_code == 200
    assert status(vtex, "ABC-68") == "canceled"


def test_rate_limit_answers_429_with_retry_after(make_client: Callable[..., InProcessClient]) -> None:
    """Over the per-minute budget, 429 with a Retry-After in seconds."""
    client = make_client(rate_limit_rpm=2)
    assert client.get("/api/oms/pvt/orders/ABC-1").status_code == 404
    assert client.get("/api/oms/pvt/orders/ABC-1").status_code == 404
    limited = client.get("/api/oms/pvt/orders/ABC-1")
    assert limited.status_code == 429
    assert float(limited.headers["Retry-After"]) >= 1


def test_ledger_is_served_under_the_reserved_prefix(vtex: InProcessClient) -> None:
    """GET /_sandbox/ledger returns the per-order counts and a summary."""
    place(vtex, place_body("69"))
    ledger = vtex.get("/_sandbox/ledger").json()
    assert ledger["summary"]["orders"] == 1
    assert ledger["orders"][0]["orderId"] == "ABC-69" and ledger["orders"][0]["placesAccepted"] == 1


def test_invalid_invoice_body_is_refused_naming_the_field(vtex: InProcessClient) -> None:
    """An invoice without invoiceNumber is a 400 that names the field."""
    body = place_body("70")
    place(vtex, body)
    invoice = invoice_for(body)
    del invoice["invoiceNumber"]
    response = vtex.post("/api/oms/pvt/orders/ABC-70/invoice", json=invoice)
    assert response.status_code == 400 and "invoiceNumber" in response.json()["error"]["message"]
