"""The sandbox models VTEX's whole order life: any status (held there), asynchronous cancel,
refused tracking updates, every documented answer form, and answers that are not VTEX's."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from orchestrator.sandbox.statuses import STATUSES
from tests.asgi import InProcessClient
from tests.conftest import Clock
from tests.factories import invoice_for, place_body
from tests.unit.test_sandbox import authorize, place, status

ORDER = "ABC-1001"


def ready_for_handling(vtex: InProcessClient, clock: Clock) -> None:
    place(vtex, place_body())
    authorize(vtex, ORDER)
    clock.now += 61


def cancel(vtex: InProcessClient) -> httpx.Response:
    return vtex.post(f"/api/oms/pvt/orders/{ORDER}/cancel", json={"reason": "customer"})


@pytest.mark.parametrize(
    "held",
    [
        "waiting-for-manual-authorization",
        "payment-pending",
        "cancellation-requested",
        "on-order-completed-ffm",
    ],
)
def test_an_order_can_be_put_in_any_status_and_kept_there(
    vtex: InProcessClient, clock: Clock, held: str
) -> None:
    """The control call pins a status: time does not move it, Start handling is refused (OMS003).
    Authorize dispatch is answered but changes nothing, except while the seller's manual
    authorization is awaited: then it is refused ("approving earlier fails")."""
    place(vtex, place_body())
    pinned = vtex.post(f"/_sandbox/orders/{ORDER}/status", json={"status": held})
    assert pinned.json() == {"orderId": ORDER, "status": held, "held": True}
    refused = held == "waiting-for-manual-authorization"
    assert authorize(vtex, ORDER).status_code == (400 if refused else 200)
    clock.now += 3600
    assert status(vtex, ORDER) == held
    assert vtex.post(f"/api/oms/pvt/orders/{ORDER}/start-handling").status_code == 409
    vtex.post(f"/_sandbox/orders/{ORDER}/status", json={"status": "ready-for-handling", "hold": False})
    assert vtex.post(f"/api/oms/pvt/orders/{ORDER}/start-handling").status_code == 204


def test_every_documented_status_can_be_pinned_and_an_unknown_one_is_refused(vtex: InProcessClient) -> None:
    """All of VTEX-API.md §4.1's statuses; a made-up one is a 400."""
    place(vtex, place_body())
    for name in sorted(STATUSES):
        assert vtex.post(f"/_sandbox/orders/{ORDER}/status", json={"status": name}).status_code == 200
        assert status(vtex, ORDER) == name
    assert vtex.post(f"/_sandbox/orders/{ORDER}/status", json={"status": "almost-done"}).status_code == 400


def test_cancel_inside_the_grace_period_is_automatic_and_asynchronous(
    make_client: Callable[..., InProcessClient], clock: Clock
) -> None:
    """200 with a receipt at once; `cancel` (Canceling) first, `canceled` once VTEX processed it."""
    vtex = make_client(cancel_delay_seconds=5)
    place(vtex, place_body())
    authorize(vtex, ORDER)
    answer = cancel(vtex)
    assert answer.status_code == 200 and set(answer.json()) == {"date", "orderId", "receipt"}
    assert status(vtex, ORDER) == "cancel"
    clock.now += 5
    assert status(vtex, ORDER) == "canceled"


@pytest.mark.parametrize(("mode", "after"), [("accept", "canceled"), ("deny", "ready-for-handling")])
def test_cancel_after_the_grace_period_is_requested_then_decided(
    make_client: Callable[..., InProcessClient], clock: Clock, mode: str, after: str
) -> None:
    """cancellation-requested, then canceled (accepted) or back to the status it had (denied)."""
    vtex = make_client(cancel_delay_seconds=10, cancel_mode=mode)
    ready_for_handling(vtex, clock)
    assert cancel(vtex).status_code == 200
    assert status(vtex, ORDER) == "cancellation-requested"
    clock.now += 10
    assert status(vtex, ORDER) == after


def test_a_cancellation_request_can_stick_until_someone_decides(
    make_client: Callable[..., InProcessClient], clock: Clock
) -> None:
    """VTEX's known issues: it may stay cancellation-requested; the control API settles it."""
    vtex = make_client(cancel_mode="stick")
    ready_for_handling(vtex, clock)
    cancel(vtex)
    clock.now += 86_400
    assert status(vtex, ORDER) == "cancellation-requested"
    assert (
        vtex.post(f"/_sandbox/orders/{ORDER}/cancel-decision", json={"decision": "deny"}).status_code == 200
    )
    assert status(vtex, ORDER) == "ready-for-handling"


def test_cancel_is_refused_once_an_output_invoice_exists_even_async(vtex: InProcessClient) -> None:
    """An Output invoice: 400, nothing starts."""
    place(vtex, place_body())
    vtex.post(f"/api/oms/pvt/orders/{ORDER}/invoice", json=invoice_for(place_body()))
    assert cancel(vtex).status_code == 400
    assert status(vtex, ORDER) == "waiting-ffmt-authorization"


def test_tracking_updates_can_be_refused(make_client: Callable[..., InProcessClient], clock: Clock) -> None:
    """The known issues' "An error has occurred": every tracking update answered with that status."""
    vtex = make_client(tracking_refusal=500)
    ready_for_handling(vtex, clock)
    vtex.post(f"/api/oms/pvt/orders/{ORDER}/invoice", json=invoice_for(place_body(), "NF1"))
    answer = vtex.patch(f"/api/oms/pvt/orders/{ORDER}/invoice/NF1", json={"trackingNumber": "TR1"})
    assert answer.status_code == 500
    assert vtex.oms.ledger.get(ORDER).tracking_refused == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("code", [200, 201, 204])
def test_authorize_dispatch_answers_in_each_documented_form(
    make_client: Callable[..., InProcessClient], code: int
) -> None:
    """200 {marketplaceOrderId} (2023 spec), 201 {status, orderId, details} (current spec), 204."""
    vtex = make_client(authorize_status=code)
    place(vtex, place_body())
    answer = authorize(vtex, ORDER)
    assert answer.status_code == code
    if code == 200:
        assert answer.json() == {"marketplaceOrderId": "1001"}
    elif code == 201:
        assert answer.json()["orderId"] == ORDER and answer.json()["details"]["status"] == "pending"
    else:
        assert answer.content == b""


def test_place_answers_with_the_object_form_when_asked(make_client: Callable[..., InProcessClient]) -> None:
    """The 2024+ spec's {orderId, status, message, orderData}."""
    vtex = make_client(place_answer="object")
    answer = place(vtex, place_body()).json()
    assert (answer["orderId"], answer["status"], answer["orderData"]["orderId"]) == (ORDER, "success", ORDER)


def test_authorize_records_the_sales_channel(vtex: InProcessClient) -> None:
    """`sc` on Authorize dispatch reaches VTEX (the ledger shows it)."""
    place(vtex, place_body())
    vtex.post(
        f"/api/fulfillment/pvt/orders/{ORDER}/fulfill",
        params={"affiliateId": "ABC", "sc": "2"},
        json={"marketplaceOrderId": "1001"},
    )
    assert vtex.oms.ledger.get(ORDER).authorize_sales_channels == ["2"]  # type: ignore[attr-defined]


def test_behaviour_changes_at_run_time_and_refuses_unknown_values(vtex: InProcessClient) -> None:
    """POST /_sandbox/behaviour: documented answers only."""
    assert vtex.post("/_sandbox/behaviour", json={"cancel_mode": "deny"}).json()["cancel_mode"] == "deny"
    assert vtex.post("/_sandbox/behaviour", json={"authorize_status": 202}).status_code == 400
    assert vtex.post("/_sandbox/behaviour", json={"colour": "red"}).status_code == 400


# -- answers that are not VTEX's, over a real socket ------------------------------------------------
