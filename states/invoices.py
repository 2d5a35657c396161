"""An order's invoices as we keep them: a list of entries, each one VTEX invoice notification.

VTEX takes several invoices per order (`packageAttachment.packages`): `Output` invoices (sales,
partial ones for split shipments or missing items) until they reach the order's current value,
when VTEX marks it `invoiced`; then `Input` invoices (returns), each of which makes VTEX refund.
Each entry here is one of them, with what the engine needs to send it exactly once: whether VTEX
took it (`sent_at`), and its tracking number and whether that went too.

The list lives in one JSON column of the order's row, so a step reads and saves it with the rest
of the order in one statement. Entries are only ever appended (by import and operators, on an
order no worker holds) or marked sent (by the step that sent them), so "the first waiting entry"
is a stable target for an open intent: what a crash left unanswered is reconciled against exactly
the invoice it was about. Plain dicts of JSON types, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

OUTPUT = "Output"  # a sale: counts towards the order's value
INPUT = "Input"  # a return: VTEX refunds it, only once the order is invoiced
TRACKING = "tracking"  # what a tracking update sends: a sent invoice's tracking number

Entry = dict[str, Any]


def entry(body: Mapping[str, Any], attached_at: str, tracking: Mapping[str, Any] | None = None) -> Entry:
    """A new, unsent entry for a validated invoice body (its value already in cents)."""
    return {
        "number": body["invoiceNumber"],
        "type": body["type"],
        "value": int(body["invoiceValue"]),
        "body": dict(body),
        "attached_at": attached_at,
        "sent_at": None,
        "tracking": dict(tracking) if tracking else None,
        "tracking_sent_at": None,
    }


def of_type(entries: Iterable[Entry] | None, kind: str) -> list[Entry]:
    return [e for e in entries or () if e.get("type") == kind]


def find(entries: Iterable[Entry] | None, number: str) -> Entry | None:
    return next((e for e in entries or () if e.get("number") == number), None)


def waiting(entries: Iterable[Entry] | None, kind: str) -> Entry | None:
    """The entry of `kind` the next send is about: the first VTEX has not taken yet."""
    return next((e for e in of_type(entries, kind) if e.get("sent_at") is None), None)


def tracking_waiting(entries: Iterable[Entry] | None) -> Entry | None:
    """The first sent entry whose tracking number VTEX has not got yet (one not sent yet takes its
    tracking inside the invoice itself)."""
    return next(
        (
            e
            for e in entries or ()
            if e.get("sent_at") is not None and e.get("tracking") and e.get("tracking_sent_at") is None
        ),
        None,
    )


def total(entries: Iterable[Entry] | None, kind: str, sent_only: bool = False) -> int:
    return sum(int(e["value"]) for e in of_type(entries, kind) if not sent_only or e.get("sent_at"))


def count(entries: Iterable[Entry] | None, kind: str, sent_only: bool = False) -> int:
    return sum(1 for e in of_type(entries, kind) if not sent_only or e.get("sent_at"))


def quantities(entries: Iterable[Entry] | None, kind: str) -> dict[str, int]:
    """How many of each SKU the invoices of `kind` hold together."""
    counts: dict[str, int] = {}
    for e in of_type(entries, kind):
        for item in e["body"].get("items") or ():
            sku = str(item.get("id"))
            counts[sku] = counts.get(sku, 0) + int(item.get("quantity") or 0)
    return counts


def body_to_send(e: Entry) -> dict[str, Any]:
    """The notification for `e`: its body, with its tracking inside when known before it goes out
    (VTEX's known issue on tracking recommends this over a later update)."""
    body = dict(e["body"])
    tracking = e.get("tracking")
    if tracking:
        for key, value in tracking.items():
            if value is not None:
                body[key] = value
    return body


def unsent(entries: Iterable[Entry] | None, kind: str) -> list[Entry]:
    """The entries with those of `kind` marked not sent (to be sent again)."""
    return [
        {**e, "sent_at": None, "tracking_sent_at": None} if e.get("type") == kind else e
        for e in entries or ()
    ]


def invoice_value(body: Mapping[str, Any]) -> int:
    """A validated body's value in cents (VTEX's spec has a string of digits, its guides an int)."""
    return int(body["invoiceValue"])


def sums(entries: Iterable[Entry] | None) -> dict[str, int]:
    """The order's columns that sum what VTEX took (reports and metrics read these)."""
    entries = list(entries or ())
    return {
        "invoiced_value": total(entries, OUTPUT, sent_only=True),
        "invoices_sent": count(entries, OUTPUT, sent_only=True),
        "returned_value": total(entries, INPUT, sent_only=True),
        "returns_sent": count(entries, INPUT, sent_only=True),
    }


def cents(value: int) -> str:
    """An amount in cents as operators read it in lists: digits grouped by thin spaces."""
    return f"{value:,}".replace(",", " ")


def returned_label(entries: Iterable[Entry] | None) -> str | None:
    """ "returned" when returns cover every sale invoiced, "partly returned" when some, else None."""
    returned = total(entries, INPUT, sent_only=True)
    if returned <= 0:
        return None
    return "returned" if returned >= total(entries, OUTPUT, sent_only=True) else "partly returned"
