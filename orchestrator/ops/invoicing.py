"""How an order's invoices read to an operator, the same in `show`, `status --json`, the API and
the console: one summary line ("invoiced 2 of 3 invoices: 4 990 of 7 480") and one line per
invoice. The value invoices must reach is VTEX's current one when the engine has seen it (it
changes with price divergence and order changes), never only our import's."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from orchestrator.money import money
from orchestrator.store.rows import OrderRow
from orchestrator.timefmt import iso
from states import invoices
from states.invoices import cents as _cents


def summary(row: OrderRow, currency: str | None = None) -> str:
    """One line: how far the sale invoices got, and the returns. Amounts in cents as the terminal
    and scripts have them, or as money in `currency` (the console)."""
    cents = _cents if currency is None else partial(money, currency=currency)
    sales = invoices.of_type(row.invoices, invoices.OUTPUT)
    if not sales:
        return "none attached"
    target = row.target_value
    whose = "VTEX's value" if row.vtex_value is not None else "marketplacePaymentValue"
    text = (
        f"invoiced {row.invoices_sent} of {len(sales)} invoice{'s' if len(sales) > 1 else ''}: "
        f"{cents(row.invoiced_value)} of {cents(target)} ({whose})"
    )
    attached = invoices.total(sales, invoices.OUTPUT)
    if attached < target:
        text += f"; {cents(target - attached)} not covered by any invoice yet"
    returns = invoices.of_type(row.invoices, invoices.INPUT)
    if returns:
        label = invoices.returned_label(row.invoices) or "return waiting to be sent"
        text += f"; {label}: {cents(row.returned_value)} in {row.returns_sent} of {len(returns)} returns"
    return text


def entries_view(row: OrderRow) -> list[dict[str, Any]]:
    """Each invoice as the API and `status --json` show it (camelCase, as VTEX's own fields)."""
    return [
        {
            "invoiceNumber": e["number"],
            "type": e["type"],
            "value": e["value"],
            "items": [
                {"id": i.get("id"), "quantity": i.get("quantity")} for i in e["body"].get("items") or ()
            ],
            "attachedAt": _iso(e.get("attached_at")),
            "sentAt": _iso(e.get("sent_at")),
            "trackingNumber": (e.get("tracking") or {}).get("trackingNumber"),
            "trackingSentAt": _iso(e.get("tracking_sent_at")),
        }
        for e in row.invoices or ()
    ]


def _iso(stamp: str | None) -> str | None:
    """An entry's time as every JSON answer gives times (`timefmt.iso`)."""
    return iso(datetime.fromisoformat(stamp)) if stamp else None


def entry_line(entry: dict[str, Any]) -> str:
    """One invoice for a line of text: number, kind, value, sent or not, tracking."""
    kind = "return" if entry["type"] == invoices.INPUT else "sale"
    sent = f"sent {entry['sentAt']}" if entry.get("sentAt") else "not sent yet"
    tracking = ""
    if entry.get("trackingNumber"):
        went = "sent" if entry.get("trackingSentAt") else "not sent yet"
        tracking = f", tracking {entry['trackingNumber']} ({went})"
    return f"{entry['invoiceNumber']} ({kind}, {_cents(entry['value'])}, {sent}{tracking})"
