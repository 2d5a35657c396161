"""Reconcile rules: from a fetched VTEX order, did an action already take effect?"""

from __future__ import annotations

import pytest

from states import rules


def vtex(status: str, packages: list[dict[str, str]] | None = None) -> dict[str, object]:
    return {"status": status, "packageAttachment": {"packages": packages or []}}


def test_vtex_s_order_is_ours_only_with_our_marketplace_id_affiliate_and_items() -> None:
    """An order under our id is ours when its marketplace order id, affiliate and SKU quantities
    (summed over lines) are ours; every difference is named."""
    ours = {"5": 2, "7": 1}
    same = {
        "marketplaceOrderId": "1001",
        "affiliateId": "ABC",
        "items": [{"id": "5", "quantity": 1}, {"id": "7", "quantity": 1}, {"id": "5", "quantity": 1}],
    }
    assert rules.differences(same, "1001", "ABC", ours) == []
    assert rules.differences({**same, "affiliateId": None}, "1001", "ABC", ours) == []
    other = {"marketplaceOrderId": "1002", "affiliateId": "XYZ", "items": [{"id": "5", "quantity": 3}]}
    assert rules.differences(other, "1001", "ABC", ours) == [
        "marketplaceOrderId '1002', not '1001'",
        "affiliateId 'XYZ', not 'ABC'",
        "items 3 x 5, not 2 x 5, 1 x 7",
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("waiting-ffmt-authorization", False),
        ("waiting-for-manual-authorization", False),
        ("authorize-fulfillment", True),
        ("window-to-cancel", True),
        ("ready-for-handling", True),
        ("handling", True),
        ("invoiced", True),
        ("canceled", False),
    ],
)
def test_dispatch_authorized_whichever_waiting_status_name_vtex_uses(status: str, expected: bool) -> None:
    """VTEX documents two names for the waiting status; both mean 'not authorized yet'."""
    assert rules.dispatch_authorized(vtex(status)) is expected


@pytest.mark.parametrize(
    ("status", "ready", "handling"),
    [
        ("window-to-cancel", False, False),
        ("ready-for-handling", True, False),
        ("start-handling", True, True),
        ("handling", True, True),
        ("invoice", True, True),
        ("invoiced", True, True),
    ],
)
def test_ready_and_handling_rules(status: str, ready: bool, handling: bool) -> None:
    """Grace period over iff ready-for-handling or later; handling started iff start-handling or later."""
    assert rules.ready_for_handling(vtex(status)) is ready
    assert rules.handling_started(vtex(status)) is handling


def test_invoice_took_effect_iff_a_package_carries_our_number() -> None:
    """Only our own invoice number counts; another invoice on the order does not."""
    order = vtex("handling", [{"invoiceNumber": "NF2", "trackingNumber": ""}])
    assert rules.invoice_present(order, "NF2") is True
    assert rules.invoice_present(order, "NF1") is False
    assert rules.invoice_present(None, "NF1") is False


def test_tracking_took_effect_iff_our_invoice_carries_our_tracking_number() -> None:
    """The tracking update is recognised on the package of our invoice only."""
    order = vtex("invoiced", [{"invoiceNumber": "NF1", "trackingNumber": "BR123"}])
    assert rules.tracking_present(order, "NF1", "BR123") is True
    assert rules.tracking_present(order, "NF1", "BR999") is False


def test_only_canceled_is_canceled_and_canceling_means_a_cancel_took_effect() -> None:
    """VTEX cancels asynchronously: `cancel` (Canceling) and `cancellation-requested` show a cancel
    request took effect; only `canceled` means VTEX is done with the order."""
    assert rules.is_canceled(vtex("canceled")) and not rules.is_canceled(vtex("cancel"))
    for status in ("cancel", "cancellation-requested", "canceled"):
        assert rules.cancellation_started(vtex(status))
    assert not rules.cancellation_started(vtex("handling"))
