"""What an order needs next, decided from its row alone (no I/O, no clock of its own).

The step that moves an order on from each state is in the table of states (`states.TABLE`): a
write (place, authorize, start handling) or a VTEX status to await, looked for by the step's poll
policy. Around that table, a few rules apply to every state, in this order:

    request guard tripped                -> idle until the guard's hour is over
    open intent                          -> RECONCILE: find out whether that call took effect
    stopped for a person                 -> idle until an operator acts
    cancel asked for                     -> WRITE cancel-order
    VTEX holds the order in a status it does not move through in this state (seen since the
                                            order entered it), or in one it refused our call in
                                            while waiting for someone else (`Waiting.VTEX_HOLDS`)
                                            -> AWAIT, less and less often, saying why
    a side step whose data waits (the table's `SIDE_STEPS`: the invoice in the states the
                                            invoice timing allows, the tracking number once
                                            invoiced)   -> WRITE it
    then the table's step: WRITE its action, or AWAIT its status (idle while it needs our invoice)

One step has its own timing: `become_ready` (VTEX's grace period) is first looked at when the grace
period ends, and the look is Start handling itself (its 204 proves the order was ready); after a
409 it is polled with a growing interval.

A write that VTEX just refused is never sent again at once: the engine holds the next one back by
the step's retry policy, so no path re-sends without a growing pause.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from orchestrator.engine.policy import Policies, PollPolicy
from orchestrator.store.rows import OrderRow
from orchestrator.timefmt import human
from states import (
    BECOME_READY,
    CANCEL,
    TABLE,
    Action,
    Attention,
    State,
    Step,
    Table,
    Waiting,
    invoices,
    vtex_status,
)

NO_INVOICE = "waiting for invoice data (attach it with `orchestrator invoice`)"
GUARD_WINDOW = timedelta(hours=1)


class Kind(Enum):
    WRITE = "write"
    RECONCILE = "reconcile"
    AWAIT = "await"
    IDLE = "idle"


@dataclass(frozen=True)
class Plan:
    kind: Kind
    action: str | None = None  # the write's name (`Action`, or a step a table adds)
    due_at: datetime | None = None  # None: nothing will happen without outside input
    reason: str | None = None


def side_step(row: OrderRow, state: State, policies: Policies, table: Table = TABLE) -> Step | None:
    """The side step due now (the invoice, the tracking number): the first of the table's whose
    data waits and which the state allows under the account's invoice timing."""
    for step in table.side_steps:
        if (
            step.pending is not None
            and step.pending(row)
            and state in step.sources_when(policies.invoice_timing)
        ):
            return step
    return None


def last_sent(row: OrderRow) -> datetime | None:
    """When VTEX took the order's latest Output invoice (its "Verifying invoice" counts from it)."""
    stamps = [e["sent_at"] for e in row.invoices or () if e["type"] == invoices.OUTPUT and e.get("sent_at")]
    return datetime.fromisoformat(max(stamps)) if stamps else None


def grace_ends(row: OrderRow, grace: timedelta, margin: timedelta = timedelta(0)) -> datetime | None:
    return row.authorized_at + grace + margin if row.authorized_at else None


def status_seen_here(row: OrderRow) -> str | None:
    """VTEX's status as last seen since the order entered its current state (an older one says
    nothing about where VTEX holds the order now)."""
    if row.vtex_status is None or row.vtex_status_at is None or row.vtex_status_at < row.state_changed_at:
        return None
    return row.vtex_status


def held_by_vtex(row: OrderRow) -> str | None:
    """The status VTEX holds the order in, when it is not one VTEX moves through in our state.
    (In `canceling`, any other status is VTEX's answer to the cancellation: the engine's to judge.)"""
    status = status_seen_here(row)
    phase = TABLE.phases[State(row.state)]
    if status is None or row.state == State.CANCELING:
        return None
    if row.wait_code == Waiting.VTEX_HOLDS:
        return status  # VTEX refused our call in this status: it waits for someone else
    if not phase.expected:
        return None
    return None if status in phase.expected else status


def guard_until(row: OrderRow, now: datetime, policies: Policies) -> datetime | None:
    """When the request guard lets the order go again, if it holds it now."""
    started = row.requests_window_at
    if started is None or now - started >= GUARD_WINDOW:
        return None
    if row.requests_in_window < policies.max_requests_per_hour:
        return None
    return started + GUARD_WINDOW


def plan(row: OrderRow, now: datetime, grace: timedelta, policies: Policies, table: Table = TABLE) -> Plan:
    """What the order needs next: cross-cutting rules first (the guard, an open intent, a person
    needed, a cancel asked for, VTEX holding the order), then the side steps (the invoice, the
    tracking number), then the step the table of states names for the order's state."""
    state = State(row.state)
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
        return Plan(Kind.RECONCILE, action=row.intent, due_at=now)
    if row.needs_attention and row.needs_attention != Attention.REQUEST_GUARD:
        return Plan(Kind.IDLE, reason=row.wait_reason or f"stopped: {row.needs_attention}")
    if row.cancel_reason and state in CANCEL.sources:
        return Plan(Kind.WRITE, action=Action.CANCEL, due_at=now)
    holding = held_by_vtex(row)
    if holding is not None:
        return _held(row, holding, now, policies)
    side = side_step(row, state, policies, table)
    if side is not None:
        return Plan(Kind.WRITE, action=side.action, due_at=now)
    step = table.phases[state].next
    if step is None:
        if state == State.FAILED:
            why = row.last_error or "see history"
            return Plan(Kind.IDLE, reason=f"failed: {why} (`orchestrator status --stuck` says what to do)")
        return Plan(Kind.IDLE)
    if step.action is not None:
        return Plan(Kind.WRITE, action=step.action, due_at=now)
    return _awaiting(row, step, now, grace, policies)


def first_write(row: OrderRow, state: State, policies: Policies, table: Table = TABLE) -> Action | None:
    """The write an order in `state` would send first (a retried order reconciles it first)."""
    side = side_step(row, state, policies, table)
    if side is not None:
        return side.action
    step = table.phases[state].next
    if step is None:
        return None
    return step.action or step.probe


def _awaiting(row: OrderRow, step: Step, now: datetime, grace: timedelta, policies: Policies) -> Plan:
    """The order waits for VTEX to reach `step.awaits`, looking by the step's poll policy."""
    if step.trigger == BECOME_READY.trigger:
        return _waiting_for_grace(row, now, grace, policies)
    if step.needs_invoice and not row.invoices:
        return Plan(Kind.IDLE, reason=NO_INVOICE)
    since = max(row.state_changed_at, last_sent(row) or row.state_changed_at)
    poll: PollPolicy = getattr(policies, step.poll or "")
    status = status_seen_here(row)
    short = step.needs_invoice and row.invoiced_value < row.target_value
    if short and row.vtex_value is not None:
        # VTEX's value is known and our invoices do not reach it: VTEX will not invoice the order
        # until more come (attaching one makes it due at once), so it only looks now and then, for
        # a value changed in VTEX or an invoice someone else sent.
        poll = policies.await_more_invoices
        reason = (
            f"invoiced {row.invoices_sent} of {len(row.output_numbers)} invoices: {row.invoiced_value} of "
            f"{row.target_value}; VTEX marks the order invoiced once its Output invoices reach its value "
            f"(attach the rest with `orchestrator invoice {row.ref}`)"
        )
    elif status is not None and vtex_status.has_advice(status):
        seen_since = row.vtex_status_since or since
        reason = f"VTEX shows {status} since {human(seen_since)}: {vtex_status.advice(status)}"
    else:
        reason = f"waiting for VTEX to show the order {step.awaits} (since {human(since)})"
    return Plan(Kind.AWAIT, due_at=poll.next_look(since, now), reason=reason)


def _held(row: OrderRow, status: str, now: datetime, policies: Policies) -> Plan:
    since = row.vtex_status_since or row.vtex_status_at or now
    return Plan(
        Kind.AWAIT,
        due_at=policies.await_held.next_look(since, now),
        reason=(f"VTEX holds the order in {status} since {human(since)}: {vtex_status.advice(status)}"),
    )


def _waiting_for_grace(row: OrderRow, now: datetime, grace: timedelta, policies: Policies) -> Plan:
    ends = grace_ends(row, grace, policies.grace_margin) or now
    if now < ends:
        return Plan(
            Kind.AWAIT,
            due_at=ends,
            reason=f"VTEX cancellation grace period, ends at {human(ends)}",
        )
    seen = status_seen_here(row)
    if seen not in vtex_status.STILL_IN_GRACE:
        return Plan(Kind.WRITE, action=BECOME_READY.probe, due_at=ends)
    # VTEX said it is still in its grace period after ours ended: look again, less and less often.
    return Plan(
        Kind.AWAIT,
        due_at=policies.await_ready.next_look(ends, now),
        reason=f"VTEX still reports {seen} after the grace period ended at {human(ends)}",
    )
