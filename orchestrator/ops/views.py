"""Orders and history rows as scripts see them: camelCase keys (VTEX's own style, and that of
`status --json`), times as ISO 8601 UTC (`orchestrator.timefmt`). One shape for `list`, `show`
and the CSV export, so a script written against one reads the others."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from orchestrator.store.events import StoredEvent
from orchestrator.store.rows import OrderRow
from orchestrator.timefmt import iso

SUMMARY_KEYS = (
    "orderId",
    "account",
    "affiliateId",
    "marketplaceOrderId",
    "state",
    "since",
    "secondsInState",
    "createdAt",
    "value",
    "invoiceNumber",
    "trackingNumber",
    "vtexStatus",
    "attempts",
    "lastErrorCode",
    "lastError",
    "waitingFor",
    "needsAttention",
    "openIntent",
    "nextTryAt",
)


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _plain(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def order_json(row: OrderRow) -> dict[str, Any]:
    """Every column of the order, as stored."""
    return {camel(name): _plain(value) for name, value in asdict(row).items()}


def event_json(event: StoredEvent) -> dict[str, Any]:
    return {camel(name): _plain(value) for name, value in event.items()}


def order_summary(row: OrderRow, now: datetime) -> dict[str, Any]:
    """What a listing shows of an order: who it is, where it is, and what holds it."""
    return {
        "orderId": row.order_id,
        "account": row.account,
        "affiliateId": row.affiliate_id,
        "marketplaceOrderId": row.marketplace_order_id,
        "state": row.state,
        "since": iso(row.state_changed_at),
        "secondsInState": round((now - row.state_changed_at).total_seconds(), 1),
        "createdAt": iso(row.created_at),
        "value": row.value,
        "invoiceNumber": row.invoice_number,
        "trackingNumber": row.tracking_number,
        "vtexStatus": row.vtex_status,
        "attempts": row.attempts,
        "lastErrorCode": row.last_error_code,
        "lastError": row.last_error,
        "waitingFor": row.wait_reason,
        "needsAttention": row.needs_attention,
        "openIntent": row.intent,
        "nextTryAt": iso(row.next_run_at),
    }
