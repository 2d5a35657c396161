"""Orders and history rows as scripts see them: camelCase keys (VTEX's own style, and that of
`status --json`), times as ISO 8601 UTC (`orchestrator.timefmt`). One shape for `list`, `show`
and the CSV export, so a script written against one reads the others."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from typing_extensions import TypedDict  # pydantic reads these for the OpenAPI document (3.11)

from orchestrator.ops import invoicing
from orchestrator.store.events import StoredEvent
from orchestrator.store.rows import OrderRow
from orchestrator.timefmt import iso
from states import invoices


class OrderSummary(TypedDict):
    """What a listing shows of an order: who it is, where it is, and what holds it."""

    orderId: str
    account: str
    affiliateId: str
    marketplaceOrderId: str
    state: str
    since: str
    secondsInState: float
    createdAt: str
    value: int  # cents: VTEX's value once seen (price divergence, changes), else marketplacePaymentValue
    invoiceNumber: str | None  # the first invoice's
    trackingNumber: str | None  # the latest invoice's that has one
    invoices: int  # Output invoices attached
    invoicedValue: int  # cents VTEX took in Output invoices
    returnedValue: int  # cents VTEX took back in returns (Input invoices)
    vtexStatus: str | None
    attempts: int
    lastErrorCode: str | None
    lastError: str | None
    waitingFor: str | None
    needsAttention: str | None
    openIntent: str | None
    nextTryAt: str | None


class EventJson(TypedDict):
    """One history row as scripts see it (`show --json`, the API)."""

    id: int
    orderPk: int
    at: str
    kind: str
    action: str | None
    fromState: str | None
    toState: str | None
    attempt: int | None
    httpStatus: int | None
    durationMs: float | None
    errorCode: str | None
    message: str | None
    worker: str | None
    detail: dict[str, Any] | None


SUMMARY_KEYS = tuple(OrderSummary.__annotations__)


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _plain(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def order_json(row: OrderRow) -> dict[str, Any]:
    """Every column of the order, as stored; its invoices as `invoicing.entries_view` shows them,
    with the one-line summary beside them."""
    found = {camel(name): _plain(value) for name, value in asdict(row).items()}
    found["invoices"] = invoicing.entries_view(row)
    found["invoiceSummary"] = invoicing.summary(row)
    found["returned"] = invoices.returned_label(row.invoices)
    return found


def event_json(event: StoredEvent) -> EventJson:
    return EventJson(
        id=event["id"],
        orderPk=event["order_pk"],
        at=iso(event["at"]),
        kind=event["kind"],
        action=event["action"],
        fromState=event["from_state"],
        toState=event["to_state"],
        attempt=event["attempt"],
        httpStatus=event["http_status"],
        durationMs=event["duration_ms"],
        errorCode=event["error_code"],
        message=event["message"],
        worker=event["worker"],
        detail=event["detail"],
    )


def event_text(event: StoredEvent) -> str:
    """An event's detail in one line, for `show` and the console's timeline: VTEX's code and
    words, and for a call the ids VTEX support traces it by (`x-vtex-operation-id`,
    `x-request-id`), kept in the event's `detail`."""
    said = " ".join(x for x in (event["error_code"], event["message"]) if x)
    detail = event["detail"] or {}
    traced = [f"{label} {detail[key]}" for key, label in _TRACE_LABELS if detail.get(key)]
    return "; ".join(x for x in (said, ", ".join(traced)) if x)


_TRACE_LABELS = (("operationId", "VTEX operation id"), ("requestId", "request id"))


def order_summary(row: OrderRow, now: datetime) -> OrderSummary:
    return OrderSummary(
        orderId=row.order_id,
        account=row.account,
        affiliateId=row.affiliate_id,
        marketplaceOrderId=row.marketplace_order_id,
        state=row.state,
        since=iso(row.state_changed_at),
        secondsInState=round((now - row.state_changed_at).total_seconds(), 1),
        createdAt=iso(row.created_at),
        value=row.target_value,
        invoiceNumber=row.invoice_number,
        invoices=len(row.output_numbers),
        invoicedValue=row.invoiced_value,
        returnedValue=row.returned_value,
        trackingNumber=row.tracking_number,
        vtexStatus=row.vtex_status,
        attempts=row.attempts,
        lastErrorCode=row.last_error_code,
        lastError=row.last_error,
        waitingFor=row.wait_reason,
        needsAttention=row.needs_attention,
        openIntent=row.intent,
        nextTryAt=iso(row.next_run_at),
    )
