"""Reconcile rules: from an order fetched from VTEX, has an action already taken effect?

Each rule is a pure function of the JSON that `GET /api/oms/pvt/orders/{orderId}` returned
(``None`` when VTEX answered 404). The engine runs one after any call whose outcome it could not
see (a timeout, a dropped connection, a crash between the call and the commit), and only re-sends
when the rule says the action did *not* take effect. That is what makes every side effect happen
once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from states import vtex_status

VtexOrder = Mapping[str, Any]


def status_of(vtex_order: VtexOrder | None) -> str | None:
    """The order's VTEX status, or None when the order does not exist in VTEX. An order whose
    status is JSON null is incomplete (`vtex_status.INCOMPLETE`), a status like any other."""
    if vtex_order is None:
        return None
    status = vtex_order.get("status")
    if status is None:
        return vtex_status.INCOMPLETE
    return status if isinstance(status, str) else None


# What an Orders Feed event tells of an order: its status, nothing else (no packages, no value).
STATUS_ONLY = "statusOnly"


def status_only(status: str) -> VtexOrder:
    """The view of an order an Orders Feed event gives: enough for every rule that asks "has VTEX
    reached X or later", and marked so no rule reads more into it."""
    return {"status": None if status == vtex_status.INCOMPLETE else status, STATUS_ONLY: True}


def is_status_only(vtex_order: VtexOrder | None) -> bool:
    return vtex_order is not None and vtex_order.get(STATUS_ONLY) is True


def workflow_in_error(vtex_order: VtexOrder | None) -> bool:
    """VTEX flags an error in the order's workflow "that cannot be solved by automatic retry"
    (Get order's `workflowIsInError`): a person must look at it in VTEX Admin."""
    return vtex_order is not None and vtex_order.get("workflowIsInError") is True


def item_quantities(items: Any) -> dict[str, int]:
    """How many of each SKU a list of order items holds (VTEX may split one SKU over lines)."""
    counts: dict[str, int] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("quantity"), int):
            sku = str(item.get("id"))
            counts[sku] = counts.get(sku, 0) + item["quantity"]
    return counts


def differences(
    vtex_order: VtexOrder, marketplace_order_id: str, affiliate_id: str, items: Mapping[str, int]
) -> list[str]:
    """How VTEX's order under our id differs from the one we placed, in words (empty: it is ours).

    An order id is derived from the affiliate and the marketplace order id, so VTEX answering
    "already exists" (FMT009) to a Place, or holding an order after a lost answer, proves our Place
    took effect only if that order is ours: same marketplace order id, same affiliate, the same
    SKUs in the same quantities. Otherwise another source (another system, a second table for the
    same account) placed a different order under the id, and taking it for ours would drive it to
    `invoiced` without our invoice ever reaching VTEX. A missing affiliate is not a difference:
    the id itself carries it."""
    found = []
    theirs = vtex_order.get("marketplaceOrderId")
    if str(theirs) != marketplace_order_id:
        found.append(f"marketplaceOrderId {theirs!r}, not {marketplace_order_id!r}")
    affiliate = vtex_order.get("affiliateId")
    if affiliate is not None and affiliate != affiliate_id:
        found.append(f"affiliateId {affiliate!r}, not {affiliate_id!r}")
    quantities = item_quantities(vtex_order.get("items"))
    if quantities != dict(items):
        shown = ", ".join(f"{q} x {sku}" for sku, q in sorted(quantities.items())) or "none"
        found.append(f"items {shown}, not {', '.join(f'{q} x {sku}' for sku, q in sorted(items.items()))}")
    return found


def dispatch_authorized(vtex_order: VtexOrder | None) -> bool:
    """Authorize dispatch took effect iff the order has moved past the authorization wait."""
    return status_of(vtex_order) in vtex_status.AFTER_AUTHORIZE


def ready_for_handling(vtex_order: VtexOrder | None) -> bool:
    """The grace period is over iff the order reached `ready-for-handling` or beyond."""
    return status_of(vtex_order) in vtex_status.READY_OR_LATER


def handling_started(vtex_order: VtexOrder | None) -> bool:
    """Start handling took effect iff the order reached `handling` (or a later status)."""
    return status_of(vtex_order) in vtex_status.HANDLING_OR_LATER


def is_invoiced(vtex_order: VtexOrder | None) -> bool:
    """The order is done iff VTEX itself reports `invoiced`."""
    return status_of(vtex_order) == vtex_status.INVOICED


def is_canceled(vtex_order: VtexOrder | None) -> bool:
    """VTEX canceled the order (by our request, or someone in the Admin during the grace period)."""
    return status_of(vtex_order) == vtex_status.CANCELED_STATUS


def cancellation_started(vtex_order: VtexOrder | None) -> bool:
    """A cancel request took effect iff VTEX is canceling the order, was asked to, or has."""
    return status_of(vtex_order) in vtex_status.CANCELING_OR_CANCELED


def packages(vtex_order: VtexOrder | None) -> list[Mapping[str, Any]]:
    """The invoices VTEX holds for the order (`packageAttachment.packages`), never None."""
    if vtex_order is None:
        return []
    attachment = vtex_order.get("packageAttachment") or {}
    found = attachment.get("packages") if isinstance(attachment, Mapping) else None
    return [p for p in found or [] if isinstance(p, Mapping)]


def invoice_present(vtex_order: VtexOrder | None, invoice_number: str) -> bool:
    """The invoice notification took effect iff a package carries our invoice number."""
    return any(p.get("invoiceNumber") == invoice_number for p in packages(vtex_order))


def tracking_present(vtex_order: VtexOrder | None, invoice_number: str, tracking_number: str) -> bool:
    """The tracking update took effect iff our invoice's package carries our tracking number."""
    return any(
        p.get("invoiceNumber") == invoice_number and p.get("trackingNumber") == tracking_number
        for p in packages(vtex_order)
    )
