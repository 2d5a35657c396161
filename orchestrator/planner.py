"""What an order needs next, decided from its row alone (no I/O, no clock of its own).

open intent                          -> RECONCILE: find out whether that call took effect
imported                             -> WRITE place-order
created                              -> WRITE authorize-dispatch
dispatch-authorized, invoice pending -> WRITE send-invoice (VTEX accepts it once the order exists)
dispatch-authorized, grace not over  -> wait until authorized_at + grace period
dispatch-authorized, grace over      -> WRITE start-handling: the 204 itself proves the order
                                        was ready-for-handling, saving a Get order per order;
                                        after a 409 we AWAIT ready-for-handling with polling
ready-for-handling                   -> WRITE start-handling
handling, invoice pending            -> WRITE send-invoice
handling, invoice sent               -> AWAIT invoiced
handling, no invoice data            -> idle until an operator attaches one
invoiced, tracking pending           -> WRITE send-tracking
failed, canceled, invoiced           -> nothing
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from orchestrator.durations import format_duration
from orchestrator.policy import Policies
from orchestrator.rows import OrderRow
from states import Action, State, vtex_status

_STILL_IN_GRACE = frozenset({vtex_status.WINDOW_TO_CANCEL, "authorize-fulfillment"})
NO_INVOICE = "waiting for invoice data (attach it with `orchestrator invoice`)"


class Kind(Enum):
    WRITE = "write"
    RECONCILE = "reconcile"
    AWAIT = "await"
    IDLE = "idle"


@dataclass(frozen=True)
class Plan:
    kind: Kind
    action: Action | None = None
    awaiting: str | None = None
    due_at: datetime | None = None  # None: nothing will happen without outside input
    reason: str | None = None


def _invoice_states(policies: Policies) -> tuple[State, ...]:
    """By default the invoice goes out once handling started: an invoice sent during VTEX's grace
    period would stop the order from being canceled there (VTEX refuses to cancel a partially
    invoiced order). `asap` sends it as soon as the order exists, as VTEX allows."""
    if policies.invoice_asap:
        return (State.DISPATCH_AUTHORIZED, State.READY_FOR_HANDLING, State.HANDLING)
    return (State.HANDLING,)


def invoice_pending(row: OrderRow) -> bool:
    return row.invoice is not None and row.invoice_sent_at is None


def grace_ends(row: OrderRow, grace: timedelta, margin: timedelta = timedelta(0)) -> datetime | None:
    return row.authorized_at + grace + margin if row.authorized_at else None


def plan(row: OrderRow, now: datetime, grace: timedelta, policies: Policies) -> Plan:
    state = row.state
    if row.intent:
        return Plan(Kind.RECONCILE, action=Action(row.intent), due_at=now)
    if row.cancel_reason and state not in (State.INVOICED, State.CANCELED):
        return Plan(Kind.WRITE, action=Action.CANCEL, due_at=now)
    if state == State.IMPORTED:
        return Plan(Kind.WRITE, action=Action.PLACE, due_at=now)
    if state == State.CREATED:
        return Plan(Kind.WRITE, action=Action.AUTHORIZE, due_at=now)
    if invoice_pending(row) and state in _invoice_states(policies):
        return Plan(Kind.WRITE, action=Action.INVOICE, due_at=now)
    if state == State.DISPATCH_AUTHORIZED:
        return _waiting_for_grace(row, now, grace, policies)
    if state == State.READY_FOR_HANDLING:
        return Plan(Kind.WRITE, action=Action.START_HANDLING, due_at=now)
    if state == State.HANDLING:
        if row.invoice is None:
            return Plan(Kind.IDLE, reason=NO_INVOICE)
        start = max(row.state_changed_at, row.invoice_sent_at or row.state_changed_at)
        due = policies.await_invoiced.next_look(start, now)
        return Plan(
            Kind.AWAIT,
            awaiting=vtex_status.INVOICED,
            due_at=due,
            reason="waiting for VTEX to mark the order invoiced",
        )
    if state == State.INVOICED and row.tracking is not None and row.tracking_sent_at is None:
        return Plan(Kind.WRITE, action=Action.TRACKING, due_at=now)
    if state == State.FAILED:
        return Plan(
            Kind.IDLE, reason=f"failed: {row.last_error or 'see history'} (retry with `orchestrator retry`)"
        )
    return Plan(Kind.IDLE)


def _waiting_for_grace(row: OrderRow, now: datetime, grace: timedelta, policies: Policies) -> Plan:
    ends = grace_ends(row, grace, policies.grace_margin) or now
    if now < ends:
        return Plan(
            Kind.AWAIT,
            awaiting=vtex_status.READY_FOR_HANDLING,
            due_at=ends,
            reason=f"VTEX cancellation grace period, ends in {format_duration(ends - now)}",
        )
    if row.vtex_status not in _STILL_IN_GRACE:
        return Plan(Kind.WRITE, action=Action.START_HANDLING, due_at=ends)
    # VTEX said it is still in its grace period after ours ended: look again, less and less often.
    return Plan(
        Kind.AWAIT,
        awaiting=vtex_status.READY_FOR_HANDLING,
        due_at=policies.await_ready.next_look(ends, now),
        reason=f"VTEX still reports {row.vtex_status} {format_duration(now - ends)} after the grace period",
    )
