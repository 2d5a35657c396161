"""The sandbox's order management system: VTEX's documented behaviour, in memory, without HTTP.

Statuses follow the fulfillment (seller) flow of VTEX-API.md §4.2:

    Place ─► waiting-ffmt-authorization ─(Authorize dispatch)─► window-to-cancel
      ─(grace period)─► ready-for-handling ─(Start handling)─► handling
      ─(Output invoices reach the order value)─► invoiced

Cancel is asynchronous, as in VTEX: the call answers 200 with a receipt, and the status moves
later. Inside the grace period the cancellation is automatic (`cancel`, "Canceling", then
`canceled`); after it the seller decides (`cancellation-requested`, then `canceled`, or back to
the status it had when denied), or, as VTEX's known issues report, it stays requested for ever
(`cancel_mode`). An order with an Output invoice cannot be canceled (400).

Time-driven moves (end of the grace period, the short "Verifying invoice" step, a cancellation
being processed) are computed when an order is read, so no timers run and a test clock can drive
everything. `pin` puts an order in any VTEX status and keeps it there: nothing moves it until it is
unpinned, and VTEX's calls answer as they would in that status.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.sandbox import place_validation
from orchestrator.sandbox.catalog import Catalog
from orchestrator.sandbox.feed import MAX_LOT, Feed
from orchestrator.sandbox.hook import Hook
from orchestrator.sandbox.invoice_validation import invoice_refusal, package_from
from orchestrator.sandbox.ledger import Ledger
from orchestrator.sandbox.records import WAITING_AUTHORIZATION, SandboxConfig, SandboxOrder
from orchestrator.sandbox.statuses import STATUSES
from orchestrator.sandbox.views import authorize_reply, order_view, place_reply

OMS003 = "Order status should be ready-for-handling to perform this action"
# The status from which Authorize dispatch applies. An order waiting for the seller's manual
# authorization (a price divergence) refuses it until approved: "approving earlier fails".
AUTHORIZABLE = frozenset({WAITING_AUTHORIZATION})
MANUAL_AUTHORIZATION = "waiting-for-manual-authorization"
# Inside these the cancellation is automatic; later the seller decides (cancel_mode).
BEFORE_GRACE_END = frozenset(
    {WAITING_AUTHORIZATION, "waiting-for-manual-authorization", "authorize-fulfillment", "window-to-cancel"}
)
CANCEL_MODES = ("accept", "deny", "stick")


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message, "exception": None}})


class SandboxOms:
    def __init__(
        self,
        config: SandboxConfig | None = None,
        catalog: Catalog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or SandboxConfig()
        self.catalog = catalog or Catalog.default()
        self.clock = clock
        self.ledger = Ledger()
        self.orders: dict[str, SandboxOrder] = {}
        self._next_sequence = 500_000
        self.feed = Feed(clock)
        self.hook = self._new_hook()

    def reset(self) -> None:
        self.ledger = Ledger()
        self.orders.clear()
        self.feed = Feed(self.clock)
        self.hook = self._new_hook()

    def _new_hook(self) -> Hook:
        return Hook(self.clock, account=self.config.account, app_key=self.config.app_key)

    # -- time-driven moves -----------------------------------------------------------------------

    def _advance(self, order: SandboxOrder) -> SandboxOrder:
        if order.pinned:
            return order
        now = self.clock()
        self._advance_cancel(order, now)
        if order.status == "window-to-cancel" and order.authorized_at is not None:
            ready_at = order.authorized_at + self.config.grace_seconds
            if now >= ready_at:
                self._set_status(order, "ready-for-handling", ready_at)
        if order.status == "invoice" and order.invoice_complete_at is not None:
            done_at = order.invoice_complete_at + self.config.invoice_delay_seconds
            if now >= done_at:
                order.invoiced_at = done_at
                self._set_status(order, "invoiced", done_at)
        return order

    def _advance_cancel(self, order: SandboxOrder, now: float) -> None:
        if order.cancel_requested_at is None or order.status not in ("cancel", "cancellation-requested"):
            return
        decided_at = order.cancel_requested_at + self.config.cancel_delay_seconds
        if now < decided_at or order.cancel_decision == "stick":
            return
        if order.status == "cancel" or order.cancel_decision == "accept":
            order.canceled_at = decided_at
            self._set_status(order, "canceled", decided_at)
        else:  # denied: the order goes on from where it was
            order.cancel_denied_at = decided_at
            self._set_status(order, order.status_before_cancel or "ready-for-handling", decided_at)
            order.cancel_requested_at = None

    def _set_status(self, order: SandboxOrder, status: str, at: float | None = None) -> None:
        previous, previous_change = order.status, order.last_change
        order.status = status
        order.last_change = at if at is not None else self.clock()
        self._changed(order.order_id, previous, status, previous_change, order.last_change)

    def _changed(self, order_id: str, previous: str | None, status: str, since: float, at: float) -> None:
        """A status change is news for the feed and the hook (each filters it its own way)."""
        self.feed.status_changed(order_id, previous, status, since, at)
        self.hook.status_changed(order_id, previous, status, since, at)

    def advance_all(self) -> None:
        """Every order's time-driven moves, due now: what VTEX's own timers do (the feed's read
        and the hook's sender call it, since each change is an event)."""
        for order in list(self.orders.values()):
            self._advance(order)

    def _maybe_invoiced(self, order: SandboxOrder) -> None:
        """Handling started and the Output invoices reach the value: VTEX verifies, then invoices."""
        if order.status == "handling" and order.output_total >= order.value:
            order.invoice_complete_at = self.clock()
            self._set_status(order, "invoice")
            self._advance(order)

    def find(self, order_id: str) -> SandboxOrder | None:
        order = self.orders.get(order_id)
        return self._advance(order) if order else None

    # -- the VTEX calls --------------------------------------------------------------------------

    def place(self, affiliate_id: str | None, sales_channel: str | None, payload: Any) -> Reply:
        if not affiliate_id:
            return error_reply(400, "FMT0021", "Invalid affiliate id")
        if len(affiliate_id) != 3:
            return error_reply(400, "FMT0031", "Affiliate id must have 3 characters")
        bodies = payload if isinstance(payload, list) else [payload]
        if not bodies or not all(isinstance(b, Mapping) for b in bodies):
            return error_reply(
                400, "SBX-INVALID-BODY", "Invalid request body: expected an order object or array"
            )
        if affiliate_id in self.config.seller_payment_affiliates:
            # VTEX documents a 500 for affiliates configured to use the seller's payment methods.
            return error_reply(
                500,
                "SBX-SELLER-PAYMENT-AFFILIATE",
                f"Affiliate {affiliate_id} is configured to use the seller's payment methods and cannot "
                "place fulfillment orders",
            )
        for body in bodies:
            refusal = None
            if not self.config.lenient:
                refusal = (
                    place_validation.schema_refusal(body)
                    or place_validation.catalog_refusal(body, self.catalog)
                    or place_validation.payment_refusal(body, self.catalog)
                )
            if refusal:
                return error_reply(refusal.status, refusal.code, refusal.message)
            duplicate = self._duplicate_refusal(affiliate_id, body)
            if duplicate:
                return duplicate
        created = [self._create(affiliate_id, sales_channel or "1", dict(body)) for body in bodies]
        return Reply(200, place_reply(created, self.config.place_answer))

    def _duplicate_refusal(self, affiliate_id: str, body: Mapping[str, Any]) -> Reply | None:
        order_id = f"{affiliate_id}-{body['marketplaceOrderId']}"
        existing = self.find(order_id)
        if existing is None:
            return None
        self.ledger.entry(order_id).places_rejected_duplicate += 1
        if existing.status == "canceled":
            return error_reply(
                400,
                "FMT0060",
                f"The request order with marketplace order id {body['marketplaceOrderId']} for affiliate "
                f"{affiliate_id} is already canceled and cannot be recreated",
            )
        return error_reply(
            400,
            "FMT009",
            f"The request order with marketplace order id {body['marketplaceOrderId']} for affiliate "
            f"{affiliate_id} already exists",
        )

    def _create(self, affiliate_id: str, sales_channel: str, body: dict[str, Any]) -> SandboxOrder:
        for item in body["items"]:
            self.catalog.reserve(item["id"], item["quantity"])
        items_total, shipping_total = place_validation.expected_value(body, self.catalog)
        order_id = f"{affiliate_id}-{body['marketplaceOrderId']}"
        now = self.clock()
        self._next_sequence += 1
        order = SandboxOrder(
            order_id=order_id,
            sequence=self._next_sequence,
            affiliate_id=affiliate_id,
            sales_channel=sales_channel,
            request=body,
            items_total=items_total,
            shipping_total=shipping_total,
            created_at=now,
            last_change=now,
            status=MANUAL_AUTHORIZATION if self.config.manual_authorization else WAITING_AUTHORIZATION,
        )
        order.value_change = self.config.price_divergence
        self.orders[order_id] = order
        self._changed(order_id, None, order.status, now, now)
        entry = self.ledger.entry(order_id)
        entry.places_accepted += 1
        entry.value = order.value  # VTEX's, divergence included
        return order

    def authorize(
        self, order_id: str, affiliate_id: str | None, payload: Any, sales_channel: str | None = None
    ) -> Reply:
        order = self.find(order_id)
        unknown_until = order.created_at + self.config.fulfill_unknown_seconds if order else 0.0
        if order is None or self.clock() < unknown_until:
            return error_reply(404, "SBX-NOT-FOUND", f"Order {order_id} not found")
        if affiliate_id != order.affiliate_id:
            return error_reply(400, "FMT0088", "Invalid affiliate id")
        body = payload[0] if isinstance(payload, list) and payload else payload
        mkp_id = body.get("marketplaceOrderId") if isinstance(body, Mapping) else None
        if mkp_id is not None and mkp_id != order.request["marketplaceOrderId"]:
            return error_reply(400, "SBX-INVALID-BODY", "marketplaceOrderId does not match the order")
        entry = self.ledger.entry(order_id)
        if order.status in ("canceled", "cancel"):
            return error_reply(400, "SBX-CANCELED", f"Order {order_id} is canceled")
        if order.status == MANUAL_AUTHORIZATION:
            entry.authorizations_refused += 1
            return error_reply(
                400,
                "SBX-MANUAL-AUTHORIZATION",
                f"Order {order_id} waits for the seller's manual authorization and cannot be authorized yet",
            )
        if order.status in AUTHORIZABLE and not order.pinned:
            order.authorized_at = self.clock()
            self._set_status(order, "window-to-cancel")
            entry.authorizations += 1
        else:
            entry.authorizations_repeated += 1
        entry.authorize_sales_channels.append(sales_channel)
        status = self.config.authorize_status
        return Reply(status, authorize_reply(order, status, self.clock()))

    def get(self, order_id: str) -> Reply:
        order = self.find(order_id)
        if order is None:
            return error_reply(404, "SBX-NOT-FOUND", f"Order {order_id} not found")
        order.reads += 1
        view = order_view(order, self.config)
        if order.reads <= self.config.null_status_reads:
            view["status"] = None  # VTEX's status of an incomplete order
        return Reply(200, view)

    def start_handling(self, order_id: str) -> Reply:
        order = self.find(order_id)
        if order is None:
            return error_reply(404, "SBX-NOT-FOUND", f"Order {order_id} not found")
        entry = self.ledger.entry(order_id)
        if order.status != "ready-for-handling":
            entry.start_handling_refused += 1
            return error_reply(409, "OMS003", OMS003)
        order.handling_at = self.clock()
        self._set_status(order, "handling")
        entry.start_handling_accepted += 1
        self._maybe_invoiced(order)
        return Reply(204)

    def invoice(self, order_id: str, payload: Any) -> Reply:
        order = self.find(order_id)
        if order is None:
            return error_reply(404, "SBX-NOT-FOUND", f"Order {order_id} not found")
        refusal = invoice_refusal(payload)
        if refusal:
            return error_reply(400, "SBX-INVALID-BODY", refusal)
        if order.status in ("canceled", "cancel") or self.config.invoice_refusals > 0:
            if order.status not in ("canceled", "cancel"):
                self.config.invoice_refusals -= 1
                self.ledger.entry(order_id).invoices_refused += 1
            return error_reply(
                400, "ORD039", f"Order {order_id} is in state {order.status} and cannot accept invoice"
            )
        number = payload["invoiceNumber"]
        entry = self.ledger.entry(order_id)
        entry.invoice_notifications += 1
        if number in order.packages:
            entry.invoice_numbers_repeated += 1  # only a new receipt (Orders API spec)
        else:
            # A new invoice: Output ones add up towards the order's value (partial invoices are
            # normal); an Input one is a return, refunded once the order is invoiced.
            package = package_from(payload, self.clock())
            order.packages[number] = package
            entry.invoice_numbers.append(number)
            if package["type"] == "Output":
                entry.invoiced_total += package["invoiceValue"]
            else:
                entry.returned_total += package["invoiceValue"]
            order.last_change = self.clock()
            self._maybe_invoiced(order)
        return Reply(200, self._receipt(order_id))

    def update_tracking(self, order_id: str, invoice_number: str, payload: Any) -> Reply:
        order = self.find(order_id)
        if order is None:
            return error_reply(404, "SBX-NOT-FOUND", f"Order {order_id} not found")
        package = order.packages.get(invoice_number)
        if package is None:
            return error_reply(404, "ORD038", "Invoice Not Found")
        if self.config.tracking_refusal is not None:
            self.ledger.entry(order_id).tracking_refused += 1
            return error_reply(
                self.config.tracking_refusal,
                "SBX-TRACKING-REFUSED",
                "An error has occurred (tracking refused)",
            )
        if not isinstance(payload, Mapping) or not isinstance(payload.get("trackingNumber"), str):
            return error_reply(400, "SBX-INVALID-BODY", "Invalid request body: 'trackingNumber' is required")
        for name in ("trackingNumber", "trackingUrl", "courier", "dispatchedDate"):
            if name in payload:
                package[name] = payload[name]
        order.last_change = self.clock()
        self.ledger.entry(order_id).tracking_updates += 1
        return Reply(200, self._receipt(order_id))

    def cancel(self, order_id: str, payload: Any) -> Reply:
        """Accepted with a receipt; the status moves later (see the module's docstring)."""
        order = self.find(order_id)
        if order is None:
            return error_reply(404, "SBX-NOT-FOUND", f"Order {order_id} not found")
        entry = self.ledger.entry(order_id)
        if order.status in ("canceled", "cancel", "cancellation-requested"):
            entry.cancels_accepted += 1  # already on its way: VTEX answers with a receipt again
            return Reply(200, self._receipt(order_id))
        if order.status in ("invoice", "invoiced") or order.has_output_invoice:
            entry.cancels_refused += 1
            return error_reply(
                400,
                "SBX-NOT-CANCELABLE",
                f"Order {order_id} is invoiced or partially invoiced and cannot be canceled; "
                "send an Input invoice instead",
            )
        reason = payload.get("reason") if isinstance(payload, Mapping) else None
        order.cancel_reason = str(reason) if reason else None
        order.cancel_requested_at = self.clock()
        order.cancel_request_id = uuid.uuid4().hex
        order.status_before_cancel = order.status
        automatic = order.status in BEFORE_GRACE_END
        order.cancel_decision = "accept" if automatic else self.config.cancel_mode
        self._set_status(order, "cancel" if automatic else "cancellation-requested")
        entry.cancels_accepted += 1
        self._advance(order)
        return Reply(200, self._receipt(order_id))

    # -- Orders Feed v3 (`orchestrator.sandbox.feed`) ----------------------------------------------

    def feed_config(self) -> Reply:
        view = self.feed.view()
        if view is None:
            return error_reply(404, "SBX-NO-FEED", "No feed configuration for this app key")
        return Reply(200, view)

    def set_feed_config(self, payload: Any) -> Reply:
        refusal = self.feed.configure(payload)
        if refusal is not None:
            return error_reply(409 if refusal.startswith("CONFLICT") else 400, "SBX-INVALID-BODY", refusal)
        return Reply(200)

    def delete_feed_config(self) -> Reply:
        if not self.feed.delete():
            return error_reply(404, "SBX-NO-FEED", "No feed configuration for this app key")
        return Reply(200)

    def read_feed(self, maxlot: str | None) -> Reply:
        """The time-driven moves first (the end of a grace period is an event too)."""
        try:
            lot = int(maxlot) if maxlot is not None else 1
        except ValueError:
            lot = 0
        if not 1 <= lot <= MAX_LOT:
            return error_reply(400, "SBX-INVALID-PARAMETER", f"maxlot must be from 1 to {MAX_LOT}")
        self.advance_all()
        items = self.feed.read(lot)
        if items is None:
            return error_reply(404, "SBX-NO-FEED", "No feed configuration for this app key")
        return Reply(200, items)

    def commit_feed(self, payload: Any) -> Reply:
        handles = payload.get("handles") if isinstance(payload, Mapping) else None
        if not isinstance(handles, list) or not all(isinstance(h, str) for h in handles):
            return error_reply(
                400, "SBX-INVALID-BODY", "Invalid request body: 'handles' (a list) is required"
            )
        self.feed.commit(handles)
        return Reply(200)

    # -- Orders Hook (`orchestrator.sandbox.hook`; setting it pings: `hook_sender.configure`) -----

    def hook_config(self) -> Reply:
        view = self.hook.view()
        if view is None:
            return error_reply(404, "SBX-NO-HOOK", "No hook configuration for this app key")
        return Reply(200, view)

    def delete_hook_config(self) -> Reply:
        if not self.hook.delete():
            return error_reply(404, "SBX-NO-HOOK", "No hook configuration for this app key")
        return Reply(200)

    # -- the control API's levers -------------------------------------------------------------

    def pin(self, order_id: str, status: str | None, hold: bool = True) -> SandboxOrder | None:
        """Put the order in `status` (any VTEX status) and keep it there while `hold`; with no
        status, only hold or release it where it is."""
        order = self.find(order_id)
        if order is None:
            return None
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"unknown VTEX status {status!r}")
            self._set_status(order, status)
            if status == "canceled":
                order.canceled_at = order.canceled_at or self.clock()
        order.pinned = hold
        return self._advance(order)

    def approve(self, order_id: str) -> SandboxOrder | None:
        """The seller approves an order waiting for manual authorization (in VTEX Admin): it now
        waits for the marketplace's dispatch authorization."""
        order = self.find(order_id)
        if order is None or order.status != MANUAL_AUTHORIZATION:
            return None
        self._set_status(order, WAITING_AUTHORIZATION)
        return order

    def change_value(self, order_id: str, change: int) -> SandboxOrder | None:
        """The order's value changes in VTEX by `change` cents (an order change, a price
        divergence settled): its invoices must now reach the new value."""
        order = self.find(order_id)
        if order is None:
            return None
        order.value_change += change
        order.last_change = self.clock()
        self.ledger.entry(order_id).value = order.value
        self._maybe_invoiced(order)
        return order

    def decide_cancel(self, order_id: str, decision: str) -> SandboxOrder | None:
        """Settle a cancellation request that is waiting (or stuck) now: accept or deny it."""
        order = self.find(order_id)
        if order is None or order.cancel_requested_at is None:
            return None
        order.cancel_decision = decision
        order.cancel_requested_at = min(
            order.cancel_requested_at, self.clock() - self.config.cancel_delay_seconds
        )
        return self._advance(order)

    def _receipt(self, order_id: str) -> dict[str, Any]:
        return {
            "date": datetime.fromtimestamp(self.clock(), UTC).isoformat(),
            "orderId": order_id,
            "receipt": uuid.uuid4().hex,
        }
