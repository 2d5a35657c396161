"""Repairing an order VTEX refused: what differs between an import line and the stored order, and
whether the stored order may still be replaced.

Only an order VTEX never accepted can be replaced: one still `imported` with no Place in flight,
one that `failed` before Place took effect, or one canceled before it ever reached VTEX. Anything
VTEX accepted lives on in VTEX under its order id, and replacing our copy would make the two
disagree for ever; for those the refusal names the command that does the right thing.
"""

from __future__ import annotations

from dataclasses import replace as replace_dataclass
from datetime import datetime
from typing import Any

from orchestrator.store.events import new_event
from orchestrator.store.orders import Conflict, NewOrder, Replacement
from orchestrator.store.rows import OrderRow
from states import ORDER_MACHINE, REPLACE, State, never_sent


def differences(stored: OrderRow, new: NewOrder) -> list[str]:
    """The fields of the import line that differ from the stored order, as import-line paths.

    A line without an invoice does not differ from an order whose invoices were attached later
    (`orchestrator invoice`), nor does a line naming fewer of them: re-importing yesterday's
    export must not look like a change. An invoice of the line that the order lacks, or holds
    with another body, does."""
    fields = [
        f"order.{key}"
        for key in sorted(set(stored.place_body) | set(new.place_body))
        if stored.place_body.get(key) != new.place_body.get(key)
    ]
    if stored.sales_channel != new.sales_channel:
        fields.append("salesChannel")
    held = {e["number"]: e["body"] for e in stored.invoices or ()}
    if any(held.get(body["invoiceNumber"]) != body for body in new.invoices):
        fields.append("invoice" if len(new.invoices) == 1 else "invoices")
    return fields


def never_accepted(row: OrderRow, canceled_locally: bool) -> bool:
    return never_sent(row.state, row.failed_from) or (row.state == State.CANCELED and canceled_locally)


def refusal(row: OrderRow, canceled_locally: bool, fields: list[str]) -> str | None:
    """Why `row` cannot be replaced, with what to do instead; None when it can."""
    oid = row.order_id
    if row.intent:
        return (
            f"{oid} has a {row.intent} in flight whose outcome VTEX has not confirmed; replacing it would "
            f"change what it sends. Wait until `orchestrator show {oid}` shows no open intent, then "
            "import again"
        )
    if never_accepted(row, canceled_locally):
        return None
    if fields in (["invoice"], ["invoices"]) and row.state not in (
        State.CANCELED,
        State.FAILED,
        State.INVOICED,
    ):
        return (
            f"VTEX accepted {oid} ({row.state}); an accepted order is never replaced, and an invoice is "
            f"never changed under its number: attach another one with `orchestrator invoice {oid} "
            "--file <invoice.json>`"
        )
    if row.state == State.INVOICED:
        return (
            f"VTEX accepted and invoiced {oid}; an accepted order is never replaced (a return is an Input "
            f"invoice: `orchestrator return {oid} --file <input-invoice.json>`)"
        )
    if row.state == State.CANCELED:
        return (
            f"{oid} was canceled in VTEX, which never lets an order id be used again (FMT0060): import the "
            "corrected order under a new marketplace order id"
        )
    return (
        f"VTEX accepted {oid} ({row.state}); an accepted order is never replaced: cancel it with "
        f"`orchestrator cancel {oid}` and import the corrected order under a new marketplace order id"
    )


def replacement_values(row: OrderRow, new: NewOrder, now: datetime) -> dict[str, Any]:
    """The stored order made new again: the corrected body, back to `imported` through the state
    machine's `replace` (which refuses any other state), due now."""
    change = ORDER_MACHINE.fire(replace_dataclass(row), REPLACE.trigger)
    return {
        "place_body": new.place_body,
        "value": new.value,
        "sales_channel": new.sales_channel,
        **(
            {"invoices": new.invoice_entries(now), "invoice_number": new.invoices[0]["invoiceNumber"]}
            if new.invoices
            else {}
        ),
        "state": change.dest,
        "failed_from": None,
        "cancel_reason": None,
        "canceled_from": None,
        "needs_attention": None,
        "attempts": 0,
        "last_error": None,
        "last_error_code": None,
        "last_http_status": None,
        "wait_reason": None,
        "vtex_status": None,
        "vtex_status_at": None,
        "vtex_status_since": None,
        "requests_in_window": 0,
        "requests_window_at": None,
        "next_run_at": now,
        "state_changed_at": now,
    }


def bodies(row: OrderRow) -> dict[str, Any]:
    """What the history keeps of a body that was replaced: the import line's own fields."""
    return {
        "order": row.place_body,
        "invoices": [e["body"] for e in row.invoices or ()],
        "salesChannel": row.sales_channel,
    }


def decide(
    row: OrderRow, new: NewOrder, canceled_locally: bool, now: datetime, *, replace: bool
) -> Replacement | Conflict | None:
    """What the import does with a line whose order is already stored: nothing (the same order),
    replace it, or refuse the line with the reason."""
    fields = differences(row, new)
    if not fields:
        return None
    changed = ", ".join(fields)
    why = refusal(row, canceled_locally, fields)
    if why is not None:
        return Conflict(new.line, fields[0], f"differs from the stored {row.order_id} ({changed}); {why}")
    if not replace:
        return Conflict(
            new.line,
            fields[0],
            f"differs from the stored {row.order_id} ({changed}); VTEX never accepted it ({row.state}), so "
            "it can be corrected: import again with --replace",
        )
    was = f"{row.state}" + (f": {row.last_error_code or row.last_error}" if row.state == State.FAILED else "")
    values = replacement_values(row, new, now)
    events = [
        new_event(
            row.id,
            now,
            "import",
            action=REPLACE.trigger,
            from_state=row.state,
            to_state=values["state"],
            message=f"replaced by a corrected import ({changed}); it was {was}",
            detail={"fields": fields, "previous": bodies(row), "new": new_bodies(new)},
        )
    ]
    return Replacement(row.order_id, values, events, was)


def new_bodies(new: NewOrder) -> dict[str, Any]:
    return {"order": new.place_body, "invoices": list(new.invoices), "salesChannel": new.sales_channel}
