"""What the sandbox keeps: its configuration, and each order as VTEX holds it (its status, its
invoices, its cancellation). The behaviour is `orchestrator.sandbox.oms`'s; how an order is shown
is `orchestrator.sandbox.views`'."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WAITING_AUTHORIZATION = "waiting-ffmt-authorization"


@dataclass
class SandboxConfig:
    app_key: str = "vtexappkey-sandbox-ORCHESTRATOR"
    app_token: str = "sandbox-app-token"  # noqa: S105  (a documented, public default)
    account: str = "sandbox"
    grace_seconds: float = 1800.0
    invoice_delay_seconds: float = 0.0
    seller_payment_affiliates: frozenset[str] = frozenset()
    rate_limit_rpm: int | None = None
    # Benchmarks only: skip the body, catalog and payment checks of Place, so that the sandbox is
    # not what is being measured. Never use it to rehearse an integration.
    lenient: bool = False
    # Where VTEX's docs allow several answers, which one this sandbox gives (VTEX-API.md §9).
    place_answer: str = "array"  # "array" (2023 spec, every example) or "object" (2024+ spec)
    authorize_status: int = 200  # 200 {marketplaceOrderId}, 201 {status, orderId, details}, 204
    # Cancellation after the grace period: the seller accepts, denies, or it stays requested.
    cancel_mode: str = "accept"
    cancel_delay_seconds: float = 0.0
    tracking_refusal: int | None = None  # answer every tracking update with this status (KIs 10-12)
    # VTEX's documented detours (VTEX-FIDELITY.md §A), each off by default:
    # `/fulfill` answers 404 for this long after Place (VTEX's order index is eventually consistent)
    fulfill_unknown_seconds: float = 0.0
    # new orders wait in waiting-for-manual-authorization (a price divergence) until approved
    # through the control API; Authorize dispatch is refused (400) until then
    manual_authorization: bool = False
    # the next N invoice notifications are refused with ORD039 ("is in state X and cannot accept
    # invoice"), not applied
    invoice_refusals: int = 0
    # VTEX's price differs from the marketplace's by this many cents (a price divergence): each new
    # order's value in VTEX is the marketplace's plus this, so its invoices must reach that
    price_divergence: int = 0
    # the first N Get orders of each order show `"status": null` (an incomplete order)
    null_status_reads: int = 0
    # calls answered 403 (the app key lacks their License Manager resource), by operation name
    forbidden: tuple[str, ...] = ()


@dataclass
class SandboxOrder:
    order_id: str
    sequence: int
    affiliate_id: str
    sales_channel: str
    request: dict[str, Any]
    items_total: int
    shipping_total: int
    created_at: float
    status: str = WAITING_AUTHORIZATION
    authorized_at: float | None = None
    handling_at: float | None = None
    invoice_complete_at: float | None = None
    invoiced_at: float | None = None
    canceled_at: float | None = None
    cancel_reason: str | None = None
    last_change: float = 0.0
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)
    pinned: bool = False  # held in its status by the control API
    reads: int = 0  # Get orders answered (for `null_status_reads`)
    workflow_in_error: bool = False  # `workflowIsInError`, set through the control API
    cancel_requested_at: float | None = None
    cancel_decision: str | None = None  # "accept", "deny" or "stick", fixed when it was requested
    status_before_cancel: str | None = None
    cancel_request_id: str | None = None
    cancel_denied_at: float | None = None

    # What price divergence and order changes did to the value, in cents (VTEX: "the total value
    # of the order will be updated")
    value_change: int = 0

    @property
    def value(self) -> int:
        return self.items_total + self.shipping_total + self.value_change

    @property
    def output_total(self) -> int:
        return sum(p["invoiceValue"] for p in self.packages.values() if p["type"] == "Output")

    @property
    def input_total(self) -> int:
        return sum(p["invoiceValue"] for p in self.packages.values() if p["type"] == "Input")

    @property
    def has_output_invoice(self) -> bool:
        return any(p["type"] == "Output" for p in self.packages.values())
