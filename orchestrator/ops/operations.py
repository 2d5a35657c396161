"""What operators do to single orders: attach an invoice, retry, cancel, add tracking.

Each is a small transaction on an order no worker is stepping right now (a running step would
otherwise overwrite the change); state changes go through the state machine like everything else,
and each leaves an event in the order's history.

No operation may change what an open intent will send. An intent is a VTEX call whose outcome is
not known yet; the engine reconciles it by looking for exactly what it sent (an invoice number, a
tracking number). Replacing the invoice under an open send-invoice made the engine look for the
new number, not find it, and send it too: two invoices in VTEX. So an operation that touches the
step of an open intent raises `OpenIntent`; `orchestrator.ops.reconcile_first` then reconciles the
intent with VTEX first and tries again, or refuses and says why.

An operation is a `Change` (what to write, given the row as it is now), applied by `apply` (a
command: it may wait for a worker's lease) or `apply_async` (`serve`: the same, without holding a
thread while it waits).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import replace as replace_row
from datetime import datetime
from functools import partial
from typing import Any

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.engine.planner import first_write
from orchestrator.engine.policy import Policies
from orchestrator.errors import OperationError
from orchestrator.intake.invoices import output_problems, return_problems
from orchestrator.intake.validation import Problems, date_time_problem, normalise_invoice, validate_invoice
from orchestrator.store.events import Event, new_event
from orchestrator.store.rows import OrderRow
from orchestrator.store.store import Store
from orchestrator.timefmt import human
from states import ORDER_MACHINE, Action, Attention, State, invoices, never_sent, resume_trigger
from states.invoices import cents

BUSY_WAIT_SECONDS = 15.0  # how long an operation waits for a worker's step of that order to end
BUSY_POLL_SECONDS = 0.2


class AskVtexFirst(OperationError):
    """The operation cannot be decided from our side alone: one step of the order with VTEX
    first (`orchestrator.ops.reconcile_first`), then it is tried again."""

    ref: str

    def refusal(self) -> str:
        """Why nothing was changed, once asking VTEX could not settle it."""
        raise NotImplementedError


class ValueNotSeen(AskVtexFirst):
    """An invoice would take the order past the value we know, and VTEX's own value of the order
    (which price divergence and order changes make differ from our import) was never read."""

    def __init__(self, row: OrderRow, problems: Problems) -> None:
        self.ref = row.ref
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))

    def refusal(self) -> str:
        return f"{self} (VTEX's own value of {self.ref} could not be read: try again once VTEX answers)"


class OpenIntent(AskVtexFirst):
    """The order has a VTEX call of unknown outcome that the operation would change."""

    def __init__(self, row: OrderRow, doing: str) -> None:
        self.order_id = row.order_id
        self.ref = row.ref  # what a command takes to step it (`acme-br/ABC-1` outside the default)
        self.action = row.intent or ""
        self.since = row.intent_at
        self.doing = doing
        since = f" since {human(self.since)}" if self.since else ""
        super().__init__(
            f"{row.ref} has a {self.action} whose outcome VTEX has not confirmed{since}; {doing} would "
            "change what it sends"
        )

    def refusal(self) -> str:
        """Why nothing was changed, and what to do, once reconciling could not settle it."""
        return (
            f"{self}. Nothing was changed, so VTEX cannot receive both. VTEX could not be asked yet (see "
            f"`orchestrator show {self.ref} --vtex`); the daemon keeps asking and never re-sends "
            "blindly. Run this command again once VTEX answers."
        )


@dataclass(frozen=True)
class Outcome:
    order_id: str
    changed: bool
    message: str


# A change to one order, given its current row and the time: (values, history events, message) to
# write, or an Outcome when there is nothing to write. It raises OperationError to refuse.
Change = Callable[[OrderRow, datetime], tuple[dict[str, Any], list[Event], str] | Outcome]


def apply(
    store: Store,
    order_id: str,
    change: Change,
    actor: str | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Outcome:
    """Apply `change` to the current row, retrying while a worker holds the order's lease."""
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    while True:
        outcome = _attempt(store, order_id, change, actor, clock=clock, deadline=deadline)
        if outcome is not None:
            return outcome
        time.sleep(BUSY_POLL_SECONDS)


async def apply_async(
    store: Store,
    order_id: str,
    change: Change,
    actor: str | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Outcome:
    """`apply`, for an event loop: each attempt in a thread (the store is synchronous), the wait
    between them on the loop."""
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    while True:
        outcome = await asyncio.to_thread(
            partial(_attempt, store, order_id, change, actor, clock=clock, deadline=deadline)
        )
        if outcome is not None:
            return outcome
        await asyncio.sleep(BUSY_POLL_SECONDS)


def _attempt(
    store: Store,
    order_id: str,
    change: Change,
    actor: str | None,
    *,
    clock: Callable[[], datetime],
    deadline: float,
) -> Outcome | None:
    """One try at `change`; None when a worker holds the order's lease and there is time left."""
    row = store.find(order_id) or store.the_order(order_id)  # any id `show` takes
    now = clock()
    result = change(row, now)
    if isinstance(result, Outcome):
        return result
    values, events, message = result
    for event in events:  # who did it: the history's audit trail (an API token, a user)
        event["worker"] = actor or event.get("worker")
    if store.update_unleased(row.ref, now, values, events, row.version):
        return Outcome(order_id, True, message)
    if time.monotonic() > deadline:
        raise OperationError(
            f"order {order_id} is being worked on by {row.lease_owner}; try again in a moment"
        )
    return None


def attach_invoice(
    store: Store, order_id: str, invoice: Mapping[str, Any], actor: str | None = None
) -> Outcome:
    """Add an Output invoice to an order (its first, or one more: a partial invoice); the daemon
    sends it when allowed."""
    return apply(store, order_id, invoice_change(order_id, invoice), actor)


def _problems(problems: Problems) -> OperationError:
    return OperationError("; ".join(f"{field}: {message}" for field, message in problems))


def _same_again(row: OrderRow, body: Mapping[str, Any], order_id: str, what: str) -> Outcome | None:
    """The same invoice again under a number the order holds: the idempotent resend VTEX
    documents, so nothing to do (a different body under it is refused by the number checks)."""
    held = invoices.find(row.invoices, body["invoiceNumber"])
    if held is None or held["body"] != normalise_invoice(body):
        return None
    sent = "sent to VTEX" if held.get("sent_at") else "waiting to be sent"
    return Outcome(order_id, False, f"{what} {held['number']} is already attached to {order_id} ({sent})")


def _with_entry(row: OrderRow, body: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The values that append `body` to the order's invoices and make an idle order due."""
    entries = [*(row.invoices or ()), invoices.entry(normalise_invoice(body), now.isoformat())]
    values: dict[str, Any] = {"invoices": entries}
    if row.invoice_number is None:
        values["invoice_number"] = body["invoiceNumber"]
    goes_now = row.next_run_at is None or row.state in (State.HANDLING, State.INVOICED)
    if goes_now and row.state != State.FAILED and not row.needs_attention:
        # Idle, waiting for exactly this; or where it goes out at once (handling, or a return of
        # an invoiced order), not at the order's next look at VTEX, which may be hours away.
        values["next_run_at"] = now
        values["wait_reason"] = None
    return values


def invoice_change(order_id: str, invoice: Mapping[str, Any]) -> Change:
    def change(row: OrderRow, now: datetime) -> tuple[dict[str, Any], list[Event], str] | Outcome:
        problems = validate_invoice(invoice, row.target_value)
        if problems:
            raise _problems(problems)
        again = _same_again(row, invoice, order_id, "invoice")
        if again is not None:
            return again
        if row.state == State.INVOICED:
            raise OperationError(
                f"{order_id} is invoiced: VTEX takes no more sale invoices for it (a return is an Input "
                f"invoice: `orchestrator return {order_id} --file <input-invoice.json>`)"
            )
        if row.state == State.CANCELED:
            raise OperationError(f"{order_id} is canceled; it takes no invoice")
        number = invoice["invoiceNumber"]
        problems = output_problems([invoice], row.invoices, row.items, row.target_value, ["invoice"])
        replaced = _replaceable(row, invoice) if problems else None
        if problems and replaced is None:
            if row.vtex_value is None and not never_sent(row.state, row.failed_from):
                raise ValueNotSeen(row, problems)  # VTEX's value may be higher (price divergence)
            raise _problems(problems)
        if replaced is not None:
            if row.intent == Action.INVOICE:
                raise OpenIntent(row, f"replacing invoice {replaced} with {number}")
            values = _with_entry(_without_invoices(row), invoice, now)
            values["invoice_number"] = number
            said = f"invoice {number} replaces {replaced}, which was not sent yet"
        else:
            values = _with_entry(row, invoice, now)
            said = f"invoice {number} attached"
        total = invoices.total(values["invoices"], invoices.OUTPUT)
        event = new_event(
            row.id,
            now,
            "note",
            action="attach-invoice",
            message=f"{said} ({cents(total)} of {cents(row.target_value)})",
        )
        return values, [event], f"{said} ({order_id})" if replaced else f"{said} to {order_id}"

    return change


def _replaceable(row: OrderRow, invoice: Mapping[str, Any]) -> str | None:
    """The number of the invoice a new one corrects, if it does: the order's only invoice, not
    sent yet, which the new one could not join without passing the order's value (added, they
    would over-invoice; so it is a correction, as attaching an invoice has always been before
    one went out). None when the new invoice is one more, or nothing may be replaced."""
    sales = invoices.of_type(row.invoices, invoices.OUTPUT)
    if len(sales) != 1 or sales[0].get("sent_at") or len(row.invoices or ()) != 1:
        return None
    if sales[0]["number"] == invoice.get("invoiceNumber"):
        return None  # another body under a number the order holds: never (VTEX keeps the first)
    alone = output_problems([invoice], None, row.items, row.target_value, ["invoice"])
    return None if alone else str(sales[0]["number"])


def _without_invoices(row: OrderRow) -> OrderRow:
    return replace_row(row, invoices=[], invoice_number=None)


def register_return(
    store: Store, order_id: str, invoice: Mapping[str, Any], actor: str | None = None
) -> Outcome:
    """Register a return of an invoiced order: an Input invoice, which the daemon sends once and
    VTEX refunds (`return_change`)."""
    return apply(store, order_id, return_change(order_id, invoice), actor)


def return_change(order_id: str, invoice: Mapping[str, Any]) -> Change:
    """A return is an Input invoice VTEX takes only once the order is invoiced (it then creates the
    refund); its items and value stay within what was invoiced and not yet returned. It never
    moves the order: an invoiced order stays invoiced, with the return beside it."""

    def change(row: OrderRow, now: datetime) -> tuple[dict[str, Any], list[Event], str] | Outcome:
        problems = validate_invoice(invoice, None, kind=invoices.INPUT)
        if problems:
            raise _problems(problems)
        again = _same_again(row, invoice, order_id, "return")
        if again is not None:
            return again
        if row.state != State.INVOICED:
            raise OperationError(
                f"{order_id} is {row.state}: VTEX takes a return (an Input invoice) only once the order "
                "is invoiced"
                + (
                    "; cancel it instead (`orchestrator cancel`)"
                    if row.state not in (State.CANCELED,)
                    else ""
                )
            )
        problems = return_problems(invoice, row.invoices, "invoice")
        if problems:
            raise _problems(problems)
        number = invoice["invoiceNumber"]
        values = _with_entry(row, invoice, now)
        values["next_run_at"] = now
        values["wait_reason"] = None
        event = new_event(
            row.id,
            now,
            "note",
            action="register-return",
            message=f"return {number} registered ({cents(values['invoices'][-1]['value'])})",
        )
        return values, [event], f"return {number} registered for {order_id}; sent to VTEX now"

    return change


def retry(store: Store, order_id: str, settings: Settings, actor: str | None = None) -> Outcome:
    """Put a failed order back where it failed, or let an order that stopped for a person go on
    (`retry_change`)."""
    return apply(store, order_id, retry_change(order_id, settings), actor)


def retry_change(order_id: str, settings: Settings) -> Change:
    """Put a failed order back where it failed, or let an order that stopped for a person (a
    refused tracking update, the request guard) go on. A failed step is reconciled with VTEX before
    anything is sent again, since the failure may have come after VTEX had already acted; which
    step that is follows the order's account's own policies (its invoice timing)."""

    def change(row: OrderRow, now: datetime) -> tuple[dict[str, Any], list[Event], str] | Outcome:
        if row.needs_attention and row.state != State.FAILED:
            if row.intent:
                raise OpenIntent(row, "a retry")
            event = new_event(
                row.id,
                now,
                "note",
                action="retry",
                message=f"retried by an operator after {row.needs_attention}",
            )
            cleared: dict[str, Any] = {
                "needs_attention": None,
                "attempts": 0,
                "wait_reason": None,
                "next_run_at": now,
                "requests_in_window": 0,
            }
            if row.needs_attention == Attention.INVOICE_MISSING:
                # VTEX holds none of them: send them again (the same number is idempotent in VTEX)
                entries = invoices.unsent(row.invoices, invoices.OUTPUT)
                cleared["invoices"] = entries
                cleared.update(invoices.sums(entries))
            return cleared, [event], f"{order_id} goes on ({row.needs_attention} cleared)"
        if row.state != State.FAILED:
            raise OperationError(f"{order_id} is {row.state}, not failed; only failed orders are retried")
        if row.intent:
            raise OpenIntent(row, "a retry")
        target = State(row.failed_from or State.IMPORTED)
        ORDER_MACHINE.fire(row, resume_trigger(target))
        # What the order would send first there: made the intent, so that it is reconciled with
        # VTEX (the failure may have come after VTEX acted) before anything is sent again.
        action = first_write(row, target, account_policies(settings, row.account))
        values: dict[str, Any] = {
            "state": row.state,
            "failed_from": None,
            "attempts": 0,
            "wait_reason": None,
            "cancel_reason": None,
            "needs_attention": None,
            "next_run_at": now,
            "state_changed_at": now,
            "intent": str(action) if action else None,
            "intent_attempt": 0 if action else None,
            "intent_at": now if action else None,
        }
        first = f", reconciling {action} first" if action else ""
        event = new_event(
            row.id,
            now,
            "transition",
            action=resume_trigger(target),
            from_state=str(State.FAILED),
            to_state=str(target),
            message=f"retried by an operator{first}",
        )
        return values, [event], f"{order_id} back in {target}{first}"

    return change


def request_cancel(store: Store, order_id: str, reason: str, actor: str | None = None) -> Outcome:
    """Ask for the order to be canceled (`cancel_change`)."""
    return apply(store, order_id, cancel_change(order_id, reason), actor)


def cancel_change(order_id: str, reason: str) -> Change:
    """Ask for the order to be canceled; the next step cancels it in VTEX (or locally, if VTEX
    never received it)."""

    def change(row: OrderRow, now: datetime) -> tuple[dict[str, Any], list[Event], str] | Outcome:
        if row.state == State.CANCELED:
            return Outcome(order_id, False, f"{order_id} is already canceled")
        if row.intent == Action.CANCEL or row.state == State.CANCELING:
            return Outcome(order_id, False, f"a cancel of {order_id} is already on its way in VTEX")
        if row.state == State.INVOICED:
            raise OperationError(
                f"{order_id} is invoiced: VTEX does not cancel invoiced orders; register a return "
                f"instead, an Input invoice VTEX refunds: `orchestrator return {order_id} --file "
                "<input-invoice.json>`"
            )
        event = new_event(row.id, now, "note", action="request-cancel", message=f"cancel requested: {reason}")
        values = {"cancel_reason": reason[:500], "next_run_at": now, "wait_reason": None}
        return values, [event], f"cancel of {order_id} requested"

    return change


def invoice_from_options(
    row: OrderRow, number: str, value: int, *, issued_at: str | None, url: str | None, key: str | None
) -> dict[str, Any]:
    """An Output invoice body from command options: its items are those of the order no invoice
    holds yet (all of them for the first), at the order's unit prices."""
    sales = invoices.of_type(row.invoices, invoices.OUTPUT)
    if invoices.total(sales, invoices.OUTPUT) + value > row.target_value and not any(
        e.get("sent_at") for e in sales
    ):
        sales = []  # it corrects the invoice not sent yet (`_replaceable`): every item again
    left = dict(row.items)
    for sku, quantity in invoices.quantities(sales, invoices.OUTPUT).items():
        left[sku] = left.get(sku, 0) - quantity
    items = []
    for item in row.place_body.get("items", []):
        sku = str(item["id"])
        quantity = min(item["quantity"], left.get(sku, 0))
        if quantity > 0:
            items.append({"id": item["id"], "price": item.get("price", 0), "quantity": quantity})
            left[sku] -= quantity
    body = _body("Output", number, value, items, issued_at)
    if url:
        body["invoiceUrl"] = url
    if key:
        body["invoiceKey"] = key
    return body


def return_from_options(row: OrderRow, number: str, value: int, *, issued_at: str | None) -> dict[str, Any]:
    """An Input invoice body from command options: every item invoiced and not yet returned comes
    back, at the prices it was invoiced at."""
    left = invoices.quantities(row.invoices, invoices.OUTPUT)
    for sku, quantity in invoices.quantities(row.invoices, invoices.INPUT).items():
        left[sku] = left.get(sku, 0) - quantity
    prices = {
        str(i.get("id")): i.get("price", 0)
        for e in invoices.of_type(row.invoices, invoices.OUTPUT)
        for i in e["body"].get("items") or ()
    }
    items = [{"id": sku, "price": prices.get(sku, 0), "quantity": n} for sku, n in left.items() if n > 0]
    return _body("Input", number, value, items, issued_at)


def _body(
    kind: str, number: str, value: int, items: list[dict[str, Any]], issued_at: str | None
) -> dict[str, Any]:
    return {
        "type": kind,
        "issuanceDate": issued_at or utcnow().isoformat(timespec="seconds"),
        "invoiceNumber": number,
        "invoiceValue": value,
        "items": items,
    }


TRACKING_KEYS = ("trackingNumber", "courier", "trackingUrl", "dispatchedDate")


def tracking_problems(tracking: Mapping[str, Any]) -> Problems:
    """Every problem of a tracking update, as (field, message) like an invoice's."""
    problems: Problems = []
    number = tracking.get("trackingNumber")
    if not isinstance(number, str) or not number.strip():
        problems.append(("trackingNumber", "is required (a non-empty string)"))
    for name in ("courier", "trackingUrl", "dispatchedDate"):
        if tracking.get(name) is not None and not isinstance(tracking[name], str):
            problems.append((name, "must be a string"))
    dated: Problems = []
    date_time_problem(tracking, "dispatchedDate", "", dated)
    problems += [(field.lstrip("."), message) for field, message in dated]
    unknown = set(tracking) - set(TRACKING_KEYS) - {"orderId", "invoiceNumber"}
    problems += [(name, f"unknown field (expected {', '.join(TRACKING_KEYS)})") for name in sorted(unknown)]
    return problems


def attach_tracking(
    store: Store,
    order_id: str,
    tracking: Mapping[str, Any],
    actor: str | None = None,
    invoice_number: str | None = None,
) -> Outcome:
    """Add (or replace) the tracking number of one of the order's invoices (`tracking_change`)."""
    return apply(store, order_id, tracking_change(order_id, tracking, invoice_number), actor)


def tracking_change(order_id: str, tracking: Mapping[str, Any], invoice_number: str | None = None) -> Change:
    """The tracking number of invoice `invoice_number` (the order's only sale invoice when not
    given). Known before the invoice goes out, it goes inside it (VTEX's known issue on tracking
    recommends that); after, it is sent once the order is invoiced, by the partial invoice update."""

    def change(row: OrderRow, now: datetime) -> tuple[dict[str, Any], list[Event], str] | Outcome:
        problems = tracking_problems(tracking)
        if problems:
            raise _problems(problems)
        target = _tracked_invoice(row, order_id, invoice_number or tracking.get("invoiceNumber"))
        if row.state in (State.CANCELED, State.FAILED):
            raise OperationError(f"{order_id} is {row.state}; it takes no tracking number")
        if row.intent == Action.TRACKING or (
            row.intent == Action.INVOICE and row.next_invoice is not None and row.next_invoice is target
        ):
            raise OpenIntent(row, "another tracking number")
        number = str(tracking["trackingNumber"]).strip()
        stored = {name: tracking.get(name) for name in TRACKING_KEYS} | {"trackingNumber": number}
        if target.get("tracking") == stored and target.get("tracking_sent_at"):
            return Outcome(order_id, False, f"tracking {number} was already sent for {order_id}")
        if target.get("tracking") == stored and not target.get("sent_at"):
            return Outcome(
                order_id, False, f"tracking {number} is already attached to {order_id} ({target['number']})"
            )
        entries = [dict(e) for e in row.invoices or ()]
        for e in entries:
            if e["number"] == target["number"]:
                e["tracking"] = stored
                e["tracking_sent_at"] = None
        values: dict[str, Any] = {"invoices": entries}
        if row.needs_attention in (Attention.TRACKING_REFUSED, Attention.TRACKING_FAILED):
            values.update(needs_attention=None, attempts=0, wait_reason=None)
        if row.state == State.INVOICED and target.get("sent_at"):
            values["next_run_at"] = now
        event = new_event(
            row.id,
            now,
            "note",
            action="attach-tracking",
            message=f"tracking {number} attached to invoice {target['number']}",
        )
        if not target.get("sent_at"):
            when = "inside the invoice when it goes out"
        elif row.state == State.INVOICED:
            when = "now"
        else:
            when = "once the order is invoiced"
        return values, [event], f"tracking {number} attached to {order_id} ({target['number']}); sent {when}"

    return change


def _tracked_invoice(row: OrderRow, order_id: str, number: str | None) -> dict[str, Any]:
    """The invoice a tracking number is for: the one named, or the order's only sale invoice."""
    if number is not None:
        found = invoices.find(row.invoices, str(number))
        if found is None:
            held = ", ".join(e["number"] for e in row.invoices or ()) or "none"
            raise OperationError(f"{order_id} has no invoice {number} (its invoices: {held})")
        return found
    sales = invoices.of_type(row.invoices, invoices.OUTPUT)
    if not sales:
        raise OperationError(f"{order_id} has no invoice yet: attach it first (`orchestrator invoice`)")
    if len(sales) > 1:
        raise OperationError(
            f"{order_id} has {len(sales)} invoices ({', '.join(e['number'] for e in sales)}): say which "
            "one the tracking number is for (--invoice NUMBER)"
        )
    return sales[0]


def account_policies(settings: Settings, account: str) -> Policies:
    """The policies the daemon runs `account`'s orders with (the deployment's for an account no
    longer configured)."""
    configured = settings.all_accounts.get(account)
    return Policies.for_account(settings, configured if configured is not None else settings.single_account())
