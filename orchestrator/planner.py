"""What an order needs next, decided from its row alone (no I/O, no clock of its own).

open intent                          -> RECONCILE: find out whether that call took effect
request guard tripped                -> idle until the guard's hour is over
stopped for a person                 -> idle (a refused tracking update ...) until an operator acts
cancel asked for                     -> WRITE cancel-order
canceling                            -> AWAIT canceled (or VTEX's denial), less and less often
imported                             -> WRITE place-order
VTEX holds the order in a status we do not drive (seen since we entered our state)
                                     -> AWAIT it moving on, less and less often, saying why
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

A write that VTEX just refused is never sent again at once: the engine holds the next one back
by the step's retry policy (`Plan.kind` WRITE after a refusal), so no path re-sends without a
growing pause.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from orchestrator.durations import format_duration
from orchestrator.policy import Policies
from orchestrator.rows import OrderRow
from states import MAIN_STATES, Action, State, vtex_status

NO_INVOICE = "waiting for invoice data (attach it with `orchestrator invoice`)"
REQUEST_GUARD = "request-guard"
GUARD_WINDOW = timedelta(hours=1)


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


def status_seen_here(row: OrderRow) -> str | None:
    """VTEX's status as last seen since the order entered its current state (an older one says
    nothing about where VTEX holds the order now)."""
    if row.vtex_status is None or row.vtex_status_at is None or row.vtex_status_at < row.state_changed_at:
        return None
    return row.vtex_status


def held_by_vtex(row: OrderRow) -> str | None:
    """The status VTEX holds the order in, when it is not one VTEX moves through in our state."""
    status = status_seen_here(row)
    if status is None or row.state not in vtex_status.EXPECTED or row.state == State.CANCELING:
        return None
    if vtex_status.expected_in(row.state, status):
        return None
    return status


def guard_until(row: OrderRow, now: datetime, policies: Policies) -> datetime | None:
    """When the request guard lets the order go again, if it holds it now."""
    started = row.requests_window_at
    if started is None or now - started >= GUARD_WINDOW:
        return None
    if row.requests_in_window < policies.max_requests_per_hour:
        return None
    return started + GUARD_WINDOW


def plan(row: OrderRow, now: datetime, grace: timedelta, policies: Policies) -> Plan:
    state = row.state
    held = guard_until(row, now, policies)
    if held is not None:
        return Plan(
            Kind.IDLE,
            due_at=held,
            reason=(
                f"made {row.requests_in_window} VTEX requests within an hour (the limit is "
                f"{policies.max_requests_per_hour}); held until {held:%H:%M:%S}Z by the request guard"
            ),
        )
    if row.intent:
        return Plan(Kind.RECONCILE, action=Action(row.intent), due_at=now)
    if row.needs_attention and row.needs_attention != REQUEST_GUARD:
        return Plan(Kind.IDLE, reason=row.wait_reason or f"stopped: {row.needs_attention}")
    if row.cancel_reason and state in (*MAIN_STATES, State.FAILED):
        return Plan(Kind.WRITE, action=Action.CANCEL, due_at=now)
    if state == State.CANCELING:
        return _canceling(row, now, policies)
    if state == State.IMPORTED:
        return Plan(Kind.WRITE, action=Action.PLACE, due_at=now)
    holding = held_by_vtex(row)
    if holding is not None:
        return _held(row, holding, now, policies)
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


def _held(row: OrderRow, status: str, now: datetime, policies: Policies) -> Plan:
    since = row.vtex_status_since or row.vtex_status_at or now
    return Plan(
        Kind.AWAIT,
        due_at=policies.await_held.next_look(since, now),
        reason=(
            f"VTEX holds the order in {status} since {since:%Y-%m-%d %H:%M}Z "
            f"({format_duration(now - since)}): {vtex_status.advice(status)}"
        ),
    )


def _canceling(row: OrderRow, now: datetime, policies: Policies) -> Plan:
    status = status_seen_here(row)
    if status in vtex_status.CANCELING:
        since = row.vtex_status_since or row.state_changed_at
        reason = (
            f"VTEX shows {status} since {since:%Y-%m-%d %H:%M}Z ({format_duration(now - since)}): "
            f"{vtex_status.advice(status)}"
        )
    else:
        reason = f"cancel requested in VTEX {format_duration(now - row.state_changed_at)} ago; waiting for it"
    return Plan(
        Kind.AWAIT,
        awaiting=vtex_status.CANCELED_STATUS,
        due_at=policies.await_canceled.next_look(row.state_changed_at, now),
        reason=reason,
    )


def _waiting_for_grace(row: OrderRow, now: datetime, grace: timedelta, policies: Policies) -> Plan:
    ends = grace_ends(row, grace, policies.grace_margin) or now
    if now < ends:
        return Plan(
            Kind.AWAIT,
            awaiting=vtex_status.READY_FOR_HANDLING,
            due_at=ends,
            reason=f"VTEX cancellation grace period, ends in {format_duration(ends - now)}",
        )
    seen = status_seen_here(row)
    if seen not in vtex_status.STILL_IN_GRACE:
        return Plan(Kind.WRITE, action=Action.START_HANDLING, due_at=ends)
    # VTEX said it is still in its grace period after ours ended: look again, less and less often.
    return Plan(
        Kind.AWAIT,
        awaiting=vtex_status.READY_FOR_HANDLING,
        due_at=policies.await_ready.next_look(ends, now),
        reason=f"VTEX still reports {seen} {format_duration(now - ends)} after the grace period",
    )
