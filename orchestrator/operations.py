"""What operators do to single orders: attach an invoice, retry, cancel, add tracking.

Each is a small transaction on an order no worker is stepping right now (a running step would
otherwise overwrite the change); state changes go through the state machine like everything else,
and each leaves an event in the order's history.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.clock import utcnow
from orchestrator.importer import normalise_invoice
from orchestrator.order_validation import validate_invoice
from orchestrator.repository import Repository, new_event
from orchestrator.rows import OrderRow
from states import State

BUSY_WAIT_SECONDS = 15.0


class OperationError(Exception):
    """The operation cannot be done; the message says why and what to do instead."""


@dataclass(frozen=True)
class Outcome:
    order_id: str
    changed: bool
    message: str


def _with_row(
    repository: Repository,
    order_id: str,
    change: Callable[[OrderRow, datetime], tuple[dict[str, Any], list[dict[str, Any]], str] | Outcome],
    clock: Callable[[], datetime] = utcnow,
) -> Outcome:
    """Apply `change` to the current row, retrying while a worker holds the order's lease."""
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    while True:
        row = repository.find(order_id)
        if row is None:
            raise OperationError(
                f"no order {order_id!r} (order ids look like ABC-12345: affiliateId-marketplaceOrderId)"
            )
        now = clock()
        result = change(row, now)
        if isinstance(result, Outcome):
            return result
        values, events, message = result
        if repository.update_unleased(order_id, now, values, events, row.version):
            return Outcome(order_id, True, message)
        if time.monotonic() > deadline:
            raise OperationError(
                f"order {order_id} is being worked on by {row.lease_owner}; try again in a moment"
            )
        time.sleep(0.2)


def attach_invoice(repository: Repository, order_id: str, invoice: Mapping[str, Any]) -> Outcome:
    """Attach the invoice of an order imported without one; the daemon sends it when allowed."""

    def change(row: OrderRow, now: datetime) -> tuple[dict[str, Any], list[dict[str, Any]], str] | Outcome:
        problems = validate_invoice(invoice, row.value)
        if problems:
            raise OperationError("; ".join(f"{field}: {message}" for field, message in problems))
        number = invoice["invoiceNumber"]
        if row.invoice is not None:
            if row.invoice_number == number:
                return Outcome(order_id, False, f"invoice {number} is already attached to {order_id}")
            if row.invoice_sent_at is not None:
                raise OperationError(
                    f"{order_id} already sent invoice {row.invoice_number} to VTEX; "
                    "an order keeps one invoice number"
                )
        if row.state in (State.INVOICED, State.CANCELED):
            raise OperationError(f"{order_id} is {row.state}; it takes no invoice")
        values: dict[str, Any] = {"invoice": normalise_invoice(invoice), "invoice_number": number}
        if row.next_run_at is None and row.state != State.FAILED:
            values["next_run_at"] = now  # it was idle, waiting for exactly this
            values["wait_reason"] = None
        event = new_event(row.id, now, "note", action="attach-invoice", message=f"invoice {number} attached")
        return values, [event], f"invoice {number} attached to {order_id}"

    return _with_row(repository, order_id, change)
