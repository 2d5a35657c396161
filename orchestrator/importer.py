"""`orchestrator import`: JSON Lines in, orders in the database, all or nothing.

One order per line: `{"affiliateId": "ABC", "order": <place-order body>, "invoice": <invoice body>}`
(`invoice` optional, `salesChannel` optional: VTEX's `sc`). The whole input is validated before
anything is written; if any line is wrong, nothing is imported and every problem is reported with
its line number and field. Orders already in the database are reported and left untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.order_validation import AFFILIATE_ID, invoice_cents, validate_invoice, validate_order
from orchestrator.repository import NewOrder, Repository
from orchestrator.vtex_client import derive_order_id

KNOWN_KEYS = frozenset({"affiliateId", "order", "invoice", "salesChannel"})


@dataclass(frozen=True)
class Problem:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass
class ParseResult:
    orders: list[NewOrder] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    lines: int = 0


@dataclass(frozen=True)
class ImportReport:
    imported: list[str]
    already_present: list[str]
    problems: list[Problem]
    lines: int

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_line(number: int, text: str) -> tuple[NewOrder | None, list[Problem]]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [Problem(number, "(line)", f"not valid JSON: {exc.msg} at column {exc.colno}")]
    if not isinstance(record, Mapping):
        return None, [Problem(number, "(line)", f"must be a JSON object, got {type(record).__name__}")]
    problems = [
        Problem(number, key, "unknown field (expected affiliateId, order, invoice, salesChannel)")
        for key in record
        if key not in KNOWN_KEYS
    ]
    affiliate = record.get("affiliateId")
    if affiliate is None:
        problems.append(Problem(number, "affiliateId", "is required"))
    elif not isinstance(affiliate, str) or not AFFILIATE_ID.fullmatch(affiliate):
        problems.append(
            Problem(
                number, "affiliateId", f"{affiliate!r} must be exactly 3 letters or digits (VTEX FMT0031)"
            )
        )
    channel = record.get("salesChannel")
    if channel is not None and not isinstance(channel, str | int):
        problems.append(Problem(number, "salesChannel", 'must be a string such as "1"'))
    order = record.get("order")
    if order is None:
        problems.append(Problem(number, "order", "is required"))
        return None, problems
    if not isinstance(order, Mapping):
        problems.append(Problem(number, "order", f"must be an object, got {type(order).__name__}"))
        return None, problems
    problems += [Problem(number, path, msg) for path, msg in validate_order(order)]
    value = order.get("marketplacePaymentValue")
    invoice = record.get("invoice")
    if invoice is not None:
        if not isinstance(invoice, Mapping):
            problems.append(Problem(number, "invoice", f"must be an object, got {type(invoice).__name__}"))
        else:
            problems += [
                Problem(number, p, m)
                for p, m in validate_invoice(invoice, value if isinstance(value, int) else None)
            ]
    if problems:
        return None, problems
    assert isinstance(affiliate, str)
    return (
        NewOrder(
            order_id=derive_order_id(affiliate, order["marketplaceOrderId"]),
            affiliate_id=affiliate,
            marketplace_order_id=order["marketplaceOrderId"],
            sales_channel=str(channel) if channel is not None else None,
            place_body=dict(order),
            value=int(order["marketplacePaymentValue"]),
            invoice=normalise_invoice(invoice) if isinstance(invoice, Mapping) else None,
        ),
        [],
    )


def normalise_invoice(invoice: Mapping[str, Any]) -> dict[str, Any]:
    """Store the invoice value as an integer of cents; the client sends it as VTEX's spec says."""
    stored = dict(invoice)
    stored["invoiceValue"] = invoice_cents(invoice["invoiceValue"])
    return stored


Progress = Callable[[str, int, int], None]  # (stage, done, total)
PROGRESS_EVERY = 2000


def parse_lines(lines: Sequence[str], progress: Progress | None = None) -> ParseResult:
    result = ParseResult()
    first_seen: dict[str, int] = {}
    for number, text in enumerate(lines, 1):
        result.lines = number
        if progress is not None and number % PROGRESS_EVERY == 0:
            progress("validating", number, len(lines))
        if not text.strip():
            continue
        order, problems = parse_line(number, text)
        result.problems += problems
        if order is None:
            continue
        earlier = first_seen.get(order.order_id)
        if earlier is not None:
            result.problems.append(
                Problem(
                    number,
                    "order.marketplaceOrderId",
                    f"duplicates line {earlier} (same affiliateId and marketplaceOrderId: {order.order_id})",
                )
            )
            continue
        first_seen[order.order_id] = number
        result.orders.append(order)
    if result.lines and not first_seen and not result.problems:
        result.problems.append(Problem(result.lines, "(file)", "no orders found"))
    return result


def import_lines(
    lines: Sequence[str],
    repository: Repository,
    now: datetime,
    worker: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    parsed = parse_lines(lines, progress)
    if progress is not None:
        progress("validating", len(lines), len(lines))
    if parsed.problems:
        return ImportReport([], [], parsed.problems, parsed.lines)

    def written(done: int, total: int) -> None:
        if progress is not None:
            progress("writing", done, total)

    outcome = repository.insert_orders(parsed.orders, now, worker, written)
    return ImportReport(outcome.inserted, outcome.already_present, [], parsed.lines)
