"""`orchestrator import`: JSON Lines in, orders in the database, all or nothing.

One order per line: `{"affiliateId": "ABC", "order": <place-order body>, "invoice": <invoice body>}`
(`invoice` optional, `salesChannel` optional: VTEX's `sc`). The whole input is validated before
anything is written; if any line is wrong, nothing is imported and every problem is reported with
its line number and field. Orders already in the database are reported and left untouched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.order_validation import (
    AFFILIATE_ID,
    derive_order_id,
    invoice_cents,
    validate_invoice,
    validate_order,
)
from orchestrator.repository import NewOrder, Repository

KNOWN_KEYS = frozenset({"affiliateId", "order", "invoice", "salesChannel"})


@dataclass(frozen=True)
class Problem:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass(frozen=True)
class ImportReport:
    imported: list[str]
    already_present: list[str]
    problems: list[Problem]
    lines: int

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_line(number: int, text: str) -> tuple[Mapping[str, Any] | None, list[Problem]]:
    """The line's record if it is valid, else its problems. Building the order is left to the
    write pass (`build_order`): the check pass needs only its id."""
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
    return record, []


def build_order(record: Mapping[str, Any]) -> NewOrder:
    """The order a validated line describes."""
    order, invoice, channel = record["order"], record.get("invoice"), record.get("salesChannel")
    return NewOrder(
        order_id=derive_order_id(record["affiliateId"], order["marketplaceOrderId"]),
        affiliate_id=record["affiliateId"],
        marketplace_order_id=order["marketplaceOrderId"],
        sales_channel=str(channel) if channel is not None else None,
        place_body=dict(order),
        value=int(order["marketplacePaymentValue"]),
        invoice=normalise_invoice(invoice) if invoice is not None else None,
    )


def normalise_invoice(invoice: Mapping[str, Any]) -> dict[str, Any]:
    """Store the invoice value as an integer of cents; the client sends it as VTEX's spec says."""
    stored = dict(invoice)
    stored["invoiceValue"] = invoice_cents(invoice["invoiceValue"])
    return stored


Progress = Callable[[str, int, int], None]  # (stage, done, total)
PROGRESS_EVERY = 2000
Lines = Iterable[str] | Callable[[], Iterable[str]]


@dataclass
class Checked:
    """What the first pass keeps: problems, counts and a digest of the input, not the orders (a
    million parsed orders would need gigabytes; the second pass builds them again as it writes)."""

    problems: list[Problem] = field(default_factory=list)
    lines: int = 0
    orders: int = 0
    digest: bytes = b""


def check_lines(lines: Iterable[str], progress: Progress | None = None, total: int = 0) -> Checked:
    """Every line validated, duplicates within the input found, nothing written."""
    result = Checked()
    first_seen: dict[str, int] = {}
    digest = hashlib.blake2b()
    for number, text in enumerate(lines, 1):
        result.lines = number
        if progress is not None and number % PROGRESS_EVERY == 0:
            progress("validating", number, max(total, number))
        if not text.strip():
            continue
        digest.update(text.encode())
        record, problems = parse_line(number, text)
        result.problems += problems
        if record is None:
            continue
        order_id = derive_order_id(record["affiliateId"], record["order"]["marketplaceOrderId"])
        earlier = first_seen.get(order_id)
        if earlier is not None:
            result.problems.append(
                Problem(
                    number,
                    "order.marketplaceOrderId",
                    f"duplicates line {earlier} (same affiliateId and marketplaceOrderId: {order_id})",
                )
            )
            continue
        first_seen[order_id] = number
    result.orders, result.digest = len(first_seen), digest.digest()
    if result.lines and not first_seen and not result.problems:
        result.problems.append(Problem(result.lines, "(file)", "no orders found"))
    return result


class InputChanged(RuntimeError):
    """The input read differently the second time; the transaction is rolled back."""


def _orders_again(lines: Iterable[str], expected: bytes) -> Iterator[NewOrder]:
    """The second pass: lines already validated are only built, and the input must hash as it
    did, or the exception rolls back everything written so far."""
    digest = hashlib.blake2b()
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        digest.update(text.encode())
        try:
            yield build_order(json.loads(text))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InputChanged(f"line {number} changed while importing ({exc}); nothing imported") from None
    if digest.digest() != expected:
        raise InputChanged("the input changed while importing; nothing imported")


def import_lines(
    lines: Lines,
    repository: Repository,
    now: datetime,
    *,
    worker: str | None = None,
    progress: Progress | None = None,
    total: int | None = None,
) -> ImportReport:
    """Validate everything, then write everything in one transaction, in two passes over `lines`
    so memory stays flat whatever the input's size. Give a sequence, or a function that reads
    the input afresh each time it is called (a file), never a one-shot iterator."""
    read = lines if callable(lines) else (lambda: lines)
    if total is None and isinstance(lines, Sized):
        total = len(lines)
    checked = check_lines(read(), progress, total or 0)
    if progress is not None:
        progress("validating", checked.lines, checked.lines)
    if checked.problems:
        return ImportReport([], [], checked.problems, checked.lines)

    def written(done: int) -> None:
        if progress is not None:
            progress("writing", done, checked.orders)

    outcome = repository.insert_orders(_orders_again(read(), checked.digest), now, worker, written)
    return ImportReport(outcome.inserted, outcome.already_present, [], checked.lines)
