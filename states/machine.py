"""The order state machine, declared as data on top of `transitions`.

Every state change in the product goes through `ORDER_MACHINE.fire`. The machine is built once per
process with no registered models: `add_model` on thousands of orders is quadratic and sqlmodel rows
refuse the attributes `transitions` would attach, so each order is triggered through whatever object
carries its `state` attribute (the engine's row snapshot). Nothing here performs I/O: each step names
the VTEX action the engine must perform, or the VTEX status it waits for, and the rule that decides
from a fetched VTEX order whether the step has already taken effect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum, StrEnum
from typing import Any, Protocol

from transitions import Machine, MachineError

from states import invoices, rules, vtex_status


class State(StrEnum):
    IMPORTED = "imported"
    CREATED = "created"
    DISPATCH_AUTHORIZED = "dispatch-authorized"
    READY_FOR_HANDLING = "ready-for-handling"
    HANDLING = "handling"
    CANCELING = "canceling"
    INVOICED = "invoiced"
    FAILED = "failed"
    CANCELED = "canceled"


class Action(StrEnum):
    """VTEX writes. The string is what intents, events and logs record."""

    PLACE = "place-order"
    AUTHORIZE = "authorize-dispatch"
    START_HANDLING = "start-handling"
    INVOICE = "send-invoice"
    RETURN = "send-return"  # an Input invoice
    TRACKING = "send-tracking"
    CANCEL = "cancel-order"


# The main line, in the order an order walks it.
MAIN_STATES: tuple[State, ...] = (
    State.IMPORTED,
    State.CREATED,
    State.DISPATCH_AUTHORIZED,
    State.READY_FOR_HANDLING,
    State.HANDLING,
)
# States in which the order still moves forward on its own.
IN_FLIGHT: tuple[State, ...] = (*MAIN_STATES, State.CANCELING)
# VTEX accepts an invoice any time after the order exists.
INVOICEABLE: tuple[State, ...] = (
    State.CREATED,
    State.DISPATCH_AUTHORIZED,
    State.READY_FOR_HANDLING,
    State.HANDLING,
)
FINAL: tuple[State, ...] = (State.INVOICED, State.CANCELED)
ORDERED_STATES: tuple[State, ...] = (*IN_FLIGHT, State.INVOICED, State.FAILED, State.CANCELED)


class Facts(Protocol):
    """What a rule may need to know about our side of the order."""

    @property
    def marketplace_order_id(self) -> str: ...

    @property
    def affiliate_id(self) -> str: ...

    @property
    def items(self) -> Mapping[str, int]:
        """How many of each SKU we placed."""
        ...

    @property
    def output_numbers(self) -> list[str]:
        """Our Output invoices' numbers, sent or not."""
        ...

    @property
    def invoice_waiting(self) -> bool:
        """An Output invoice of ours exists and has not been sent."""
        ...

    @property
    def invoice_sent(self) -> bool:
        """VTEX took one of our Output invoices (its receipt, or a package that carries it)."""
        ...

    @property
    def return_waiting(self) -> bool:
        """An Input invoice (a return) of ours exists and has not been sent."""
        ...

    @property
    def tracking_waiting(self) -> bool:
        """A tracking number of a sent invoice exists and has not been sent."""
        ...

    @property
    def next_invoice(self) -> Mapping[str, Any] | None:
        """The Output invoice the next send is about (`states.invoices.waiting`)."""
        ...

    @property
    def next_return(self) -> Mapping[str, Any] | None: ...

    @property
    def next_tracking(self) -> Mapping[str, Any] | None: ...


Rule = Callable[[Mapping[str, Any] | None, Facts], bool]
Pending = Callable[[Facts], bool]  # a side step's data is waiting to be sent


class Attention(StrEnum):
    """Why an order stopped for a person (`orders.needs_attention`); `retry` lets it go on."""

    TRACKING_REFUSED = "tracking-refused"  # VTEX refused the tracking update
    TRACKING_FAILED = "tracking-failed"  # the tracking update failed for good
    RETURN_REFUSED = "return-refused"  # VTEX refused a return (Input invoice)
    RETURN_FAILED = "return-failed"  # a return could not be sent, after every retry
    INVOICE_MISSING = "invoice-missing"  # VTEX shows the order invoiced, but not with our invoice
    REQUEST_GUARD = "request-guard"  # too many requests for one order within an hour
    # VTEX flags an error in the order's workflow that no automatic retry solves (Get order's
    # `workflowIsInError`): a person looks at the order in VTEX Admin.
    VTEX_WORKFLOW_ERROR = "vtex-workflow-error"


class Waiting(StrEnum):
    """Why an order's next step waits on its account, not on itself (`orders.wait_code`): what
    `status --stuck` explains and what lifting a pause wakes, never read out of `wait_reason`."""

    CREDENTIALS = "credentials-rejected"  # the account is paused: VTEX rejected the credentials
    ENDPOINT = "endpoint-not-vtex"  # the account is paused: the URL does not answer like VTEX
    # The app key lacks the License Manager resource this order's next call needs (VTEX's 403):
    # only that kind of call of the account waits; the others go on.
    PERMISSION = "permission-missing"
    # VTEX documented a wait for this order. Not the account's: lifting a pause does not wake these.
    # HOLDS: it refused our call while it waits for someone else (`vtex_status.WAITS_FOR_OTHERS`):
    # the order only looks until VTEX shows another status, then sends the call again.
    VTEX_HOLDS = "vtex-holds"
    # NOT_YET: it refused our call "not yet" (ORD039 on the invoice, its index behind our Place, an
    # authorization it still waits for from us): the call goes again, less and less often.
    VTEX_NOT_YET = "vtex-not-yet"
    # The account's Orders Feed had a gap (its configuration was recreated): events may be lost,
    # so the order looks at VTEX once (Get order), whatever it waits for.
    LOOK_ONCE = "look-once"


# The waits that are the account's (a pause ends them all at once).
ACCOUNT_WAITS: tuple[Waiting, ...] = (Waiting.CREDENTIALS, Waiting.ENDPOINT, Waiting.PERMISSION)


class InvoiceTiming(StrEnum):
    """When an order's invoice may go out (`ORCHESTRATOR_INVOICE_TIMING`, or an account's
    `invoice_timing`)."""

    AFTER_GRACE = "after-grace"  # once handling started: the default
    ASAP = "asap"  # as soon as the order exists in VTEX


@dataclass(frozen=True)
class Step:
    """One transition: what drives it, how to tell that it already happened, and what the row
    keeps of it. The planner, the engine's reconcile and the operator commands all read these."""

    trigger: str
    sources: tuple[State, ...]
    dest: State | None  # None: an internal transition, the state does not change
    applied: Rule
    action: Action | None = None  # the VTEX write that performs it, if any (its name, as intents keep it)
    awaits: str | None = None  # otherwise the VTEX status it waits for
    # An awaiting step: the policy its looks follow (a `PollPolicy` of `Policies`, by name), and a
    # write whose acceptance itself proves the status was reached (it then is the look).
    poll: str | None = None
    probe: Action | None = None
    # An action step: earlier steps its acceptance proves (a 204 to Start handling proves VTEX's
    # grace period was over), the row's column stamped with when it was applied (and the Get order
    # field giving VTEX's own time for it), and the column keeping the state it left.
    proves: tuple[str, ...] = ()
    stamp: str | None = None
    stamp_from_vtex: str | None = None
    remembers: str | None = None
    needs_invoice: bool = False  # waits for VTEX only once our invoice data exists
    # A write that sends one of the order's invoices (`states.invoices`): which entry it sends,
    # `invoices.OUTPUT`, `invoices.INPUT` or `invoices.TRACKING` (a sent invoice's tracking
    # number); the engine marks that entry sent when VTEX took it.
    sends: str | None = None
    # A side step (beside the main line): it is due in any of its `sources` while `pending` says
    # its data waits to be sent; `after_grace` narrows its sources under the default invoice timing.
    pending: Pending | None = None
    after_grace: tuple[State, ...] | None = None
    # VTEX's documented waits. VTEX refusing this step's write while it shows the order in one of
    # `refused_while`, or with one of the `not_yet` codes, means "not yet": the order waits and
    # tries again less and less often, and never fails while VTEX keeps it alive. A 404 within
    # `settle` of entering the step's state is VTEX's order index not yet showing an order it
    # accepted (it is eventually consistent).
    refused_while: frozenset[str] = frozenset()
    not_yet: frozenset[str] = frozenset()
    settle: timedelta | None = None

    def refusal_wait(
        self, code: str | None, http_status: int | None, status: str | None, in_state_for: timedelta
    ) -> Waiting | None:
        """Which of VTEX's documented waits VTEX refusing this step's write is (with `code`,
        `http_status`, while showing the order in `status`, None when Get order found none), or
        None when it is a refusal."""
        if code is not None and code in self.not_yet:
            return Waiting.VTEX_NOT_YET
        if http_status == 404 and self.settle is not None and in_state_for < self.settle:
            return Waiting.VTEX_NOT_YET
        if status is not None and status in self.refused_while:
            return Waiting.VTEX_HOLDS if status in vtex_status.WAITS_FOR_OTHERS else Waiting.VTEX_NOT_YET
        return None

    def sources_when(self, timing: InvoiceTiming) -> tuple[State, ...]:
        """The states this step may be taken in, under `timing`."""
        if timing is InvoiceTiming.AFTER_GRACE and self.after_grace is not None:
            return self.after_grace
        return self.sources

    def __post_init__(self) -> None:
        if (self.action is None) == (self.awaits is None) and self.trigger not in _BOOKKEEPING:
            raise ValueError(f"step {self.trigger!r} must either perform an action or await a status")
        if self.awaits is not None and self.poll is None:
            raise ValueError(f"step {self.trigger!r} awaits {self.awaits} but names no poll policy")


_BOOKKEEPING = frozenset({"fail", "cancel_locally", "notice_canceled", "replace"})


def _status(rule: Callable[[Mapping[str, Any] | None], bool]) -> Rule:
    return lambda vtex_order, _facts: rule(vtex_order)


def _placed(vtex_order: Mapping[str, Any] | None, facts: Facts) -> bool:
    """Place took effect iff VTEX holds *our* order under its id (see `rules.differences`)."""
    return vtex_order is not None and not rules.differences(
        vtex_order, facts.marketplace_order_id, facts.affiliate_id, facts.items
    )


def _completed(vtex_order: Mapping[str, Any] | None, facts: Facts) -> bool:
    """The order is done iff VTEX reports `invoiced` and, when we have invoices, holds one of
    them: an order VTEX shows invoiced by someone else's invoices is not ours to report invoiced.
    An Orders Feed event carries a status and no packages (`rules.status_only`): after VTEX took
    one of our invoices, its `invoiced` is enough. Whether our invoices reach VTEX's value is
    VTEX's to say: it marks the order invoiced when they do."""
    if not rules.is_invoiced(vtex_order):
        return False
    numbers = facts.output_numbers
    if not numbers or any(rules.invoice_present(vtex_order, n) for n in numbers):
        return True
    return rules.is_status_only(vtex_order) and facts.invoice_sent


def _entry_applied(target: Mapping[str, Any] | None, vtex_order: Mapping[str, Any] | None) -> bool:
    return target is not None and rules.invoice_present(vtex_order, target["number"])


def _invoice_applied(vtex_order: Mapping[str, Any] | None, facts: Facts) -> bool:
    return _entry_applied(facts.next_invoice, vtex_order)


def _return_applied(vtex_order: Mapping[str, Any] | None, facts: Facts) -> bool:
    return _entry_applied(facts.next_return, vtex_order)


def _tracking_applied(vtex_order: Mapping[str, Any] | None, facts: Facts) -> bool:
    target = facts.next_tracking
    if target is None or not target.get("tracking"):
        return False
    return rules.tracking_present(vtex_order, target["number"], target["tracking"]["trackingNumber"])


def _never(_vtex_order: Mapping[str, Any] | None, _facts: Facts) -> bool:
    return False


PLACE = Step("place", (State.IMPORTED,), State.CREATED, _placed, action=Action.PLACE)
AUTHORIZE = Step(
    "authorize",
    (State.CREATED,),
    State.DISPATCH_AUTHORIZED,
    _status(rules.dispatch_authorized),
    action=Action.AUTHORIZE,
    stamp="authorized_at",
    stamp_from_vtex="authorizedDate",
    # VTEX keeps an order waiting for its authorization up to 30 days (then cancels it): for the
    # dispatch authorization, or for the seller's approval of a price divergence. A refusal then
    # (a 404 while its index catches up with our Place, a 400 before the seller approved) is a
    # wait.
    refused_while=vtex_status.BEFORE_AUTHORIZE | {vtex_status.INCOMPLETE},
    settle=timedelta(minutes=2),
)
# VTEX's grace period: the first look is due when it ends (the planner times it), and that look is
# Start handling itself, whose 204 proves the order was ready-for-handling.
BECOME_READY = Step(
    "become_ready",
    (State.DISPATCH_AUTHORIZED,),
    State.READY_FOR_HANDLING,
    _status(rules.ready_for_handling),
    awaits="ready-for-handling",
    poll="await_ready",
    probe=Action.START_HANDLING,
)
START_HANDLING = Step(
    "start_handling",
    (State.READY_FOR_HANDLING,),
    State.HANDLING,
    _status(rules.handling_started),
    action=Action.START_HANDLING,
    proves=("become_ready",),
)
COMPLETE = Step(
    "complete",
    (State.HANDLING,),
    State.INVOICED,
    _completed,
    awaits="invoiced",
    poll="await_invoiced",
    needs_invoice=True,
)
# The invoice may go out in any state once the order exists in VTEX (`asap`); by default only once
# handling started: an invoice sent during VTEX's grace period would stop the order from being
# canceled there (VTEX refuses to cancel a partially invoiced order).
SEND_INVOICE = Step(
    "send_invoice",
    INVOICEABLE,
    None,
    _invoice_applied,
    action=Action.INVOICE,
    sends=invoices.OUTPUT,
    pending=lambda facts: facts.invoice_waiting,
    after_grace=(State.HANDLING,),
    # ORD039 "Order ... is in state X and cannot accept invoice": a status conflict VTEX resolves
    # as the order moves on (VTEX documents no HTTP status for it).
    not_yet=frozenset({"ORD039"}),
)
# A tracking number for an invoice already sent, once the order is invoiced (one known before the
# invoice went out went inside it). Not earlier: a refused update stops the order for a person,
# which must never hold up the main line.
SEND_TRACKING = Step(
    "send_tracking",
    (State.INVOICED,),
    None,
    _tracking_applied,
    action=Action.TRACKING,
    sends=invoices.TRACKING,
    pending=lambda facts: facts.tracking_waiting,
)
# A return: an Input invoice. VTEX refunds it, and only once the order is invoiced, so it is a
# side flow of `invoiced`: the order never goes back on the main line.
SEND_RETURN = Step(
    "send_return",
    (State.INVOICED,),
    None,
    _return_applied,
    action=Action.RETURN,
    sends=invoices.INPUT,
    pending=lambda facts: facts.return_waiting,
)
# VTEX cancels asynchronously: its 200 only starts the cancellation, and the order waits in
# `canceling` until VTEX shows `canceled` or shows it denied (then the order goes back).
CANCEL = Step(
    "cancel",
    (*MAIN_STATES, State.FAILED),
    State.CANCELING,
    _status(rules.cancellation_started),
    action=Action.CANCEL,
    remembers="canceled_from",
)
CANCELED_BY_VTEX = Step(
    "canceled",
    (State.CANCELING,),
    State.CANCELED,
    _status(rules.is_canceled),
    awaits="canceled",
    poll="await_canceled",
)
# An order VTEX never received is canceled here without a call; one VTEX canceled on its own (in
# its Admin, during the grace period) is canceled here when we notice.
CANCEL_LOCALLY = Step("cancel_locally", (State.IMPORTED, State.FAILED), State.CANCELED, _never)
# The error code an order keeps when VTEX canceled it without us asking (`list --code` finds them).
CANCELED_IN_VTEX = "canceled-in-vtex"
NOTICE_CANCELED = Step(
    "notice_canceled", (*IN_FLIGHT, State.FAILED), State.CANCELED, _status(rules.is_canceled)
)
FAIL = Step("fail", IN_FLIGHT, State.FAILED, _never)
# An order VTEX never accepted, corrected by a new import line (`import --replace`): placed again.
REPLACE = Step("replace", (State.IMPORTED, State.FAILED, State.CANCELED), State.IMPORTED, _never)

# The main line, in order. Reconciling walks it from the current state while rules hold.
MAIN_LINE: tuple[Step, ...] = (PLACE, AUTHORIZE, BECOME_READY, START_HANDLING, COMPLETE)
STEPS: tuple[Step, ...] = (
    *MAIN_LINE,
    SEND_INVOICE,
    SEND_TRACKING,
    SEND_RETURN,
    CANCEL,
    CANCELED_BY_VTEX,
    CANCEL_LOCALLY,
    NOTICE_CANCELED,
    FAIL,
    REPLACE,
)
# Planned beside the main line, in this order, whenever their data waits (`Step.pending`).
SIDE_STEPS: tuple[Step, ...] = (SEND_INVOICE, SEND_TRACKING, SEND_RETURN)
STEP_BY_ACTION: dict[Action, Step] = {s.action: s for s in STEPS if s.action is not None}
STEP_BY_TRIGGER: dict[str, Step] = {s.trigger: s for s in STEPS}


@dataclass(frozen=True)
class Phase:
    """What an order does while it is in one state: the step that moves it on, and the VTEX
    statuses VTEX shows meanwhile while moving it along (any other status is VTEX holding the order
    somewhere this tool does not drive)."""

    state: State
    next: Step | None
    expected: frozenset[str] = frozenset()


# The one table of what comes next. Adding a step is a row here (and its Step and rule above).
PHASES: dict[State, Phase] = {
    phase.state: phase
    for phase in (
        Phase(State.IMPORTED, PLACE),
        Phase(State.CREATED, AUTHORIZE, vtex_status.BEFORE_AUTHORIZE),
        Phase(State.DISPATCH_AUTHORIZED, BECOME_READY, vtex_status.STILL_IN_GRACE),
        Phase(State.READY_FOR_HANDLING, START_HANDLING, frozenset({vtex_status.READY_FOR_HANDLING})),
        Phase(State.HANDLING, COMPLETE, vtex_status.HANDLING_ON_ITS_WAY),
        Phase(State.CANCELING, CANCELED_BY_VTEX, vtex_status.CANCELING),
        Phase(State.INVOICED, None),
        Phase(State.FAILED, None),
        Phase(State.CANCELED, None),
    )
}


def behind(state: str, status: str) -> bool:
    """Whether VTEX showing `status` is older news than our `state` already proves: a status
    VTEX shows before a step of the main line that took the order to `state` (an Orders Feed
    event delivered late, after our own call's answer). Such news tells nothing; treating it as
    where VTEX holds the order now would make the order wait for nothing."""
    if state not in MAIN_STATES:
        return False
    here = MAIN_STATES.index(State(state))
    earlier = set().union(*(PHASES[s].expected for s in MAIN_STATES[:here]))
    now_or_later = set().union(*(PHASES[s].expected for s in MAIN_STATES[here:]))
    return status in earlier - now_or_later


def never_sent(state: str, failed_from: str | None) -> bool:
    """VTEX never received this order: still imported, or failed before Place took effect."""
    return state == State.IMPORTED or (state == State.FAILED and failed_from == State.IMPORTED)


def operator_actions(state: str) -> list[str]:
    """What an operator may ask of an order in `state` (the console's buttons): `retry` a failed
    one, `cancel` one the machine can still cancel (through VTEX or locally)."""
    actions = []
    if any(ORDER_MACHINE.can_fire(state, resume_trigger(s)) for s in IN_FLIGHT):
        actions.append("retry")
    if ORDER_MACHINE.can_fire(state, CANCEL.trigger) or ORDER_MACHINE.can_fire(state, CANCEL_LOCALLY.trigger):
        actions.append("cancel")
    return actions


def resume_trigger(state: State) -> str:
    """The trigger that puts a failed order back at `state` (operator retry)."""
    return f"resume_{state.name.lower()}"


def denied_trigger(state: State) -> str:
    """The trigger that puts an order back at `state` when VTEX denied its cancellation."""
    return f"cancel_denied_{state.name.lower()}"


class IllegalTransition(Exception):
    """A trigger was fired from a state that does not allow it."""

    def __init__(self, order_id: str, trigger: str, state: str) -> None:
        self.order_id = order_id
        self.trigger = trigger
        self.state = state
        allowed = ", ".join(sorted(ORDER_MACHINE.triggers_from(state))) or "none"
        super().__init__(
            f"order {order_id}: '{trigger}' is not allowed in state '{state}' (allowed there: {allowed})"
        )


class Stateful(Protocol):
    """Anything whose `state` attribute the machine may read and write."""

    state: str
    order_id: str


@dataclass(frozen=True)
class Change:
    trigger: str
    source: str
    dest: str


class OrderMachine:
    """The `transitions.Machine` of a table of steps, fired on any `Stateful` object."""

    def __init__(self, steps: tuple[Step, ...]) -> None:
        specs: list[dict[str, Any]] = [
            {"trigger": s.trigger, "source": [str(x) for x in s.sources], "dest": s.dest and str(s.dest)}
            for s in steps
        ]
        specs += [
            {"trigger": resume_trigger(state), "source": str(State.FAILED), "dest": str(state)}
            for state in IN_FLIGHT
        ]
        specs += [
            {"trigger": denied_trigger(state), "source": str(State.CANCELING), "dest": str(state)}
            for state in (*MAIN_STATES, State.FAILED)
        ]
        self._machine = Machine(
            model=None,
            states=[str(s) for s in State],
            transitions=specs,
            initial=str(State.IMPORTED),
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )

    def fire(self, order: Stateful, trigger: str) -> Change:
        """Apply `trigger` to `order`, or raise IllegalTransition and leave it untouched."""
        if isinstance(order.state, Enum):
            # transitions looks Enum states up by *name*; ours are declared by value.
            order.state = str(order.state.value)
        source = order.state
        event = self._machine.events.get(trigger)
        if event is None:
            raise IllegalTransition(order.order_id, trigger, source)
        try:
            event.trigger(order)
        except MachineError as exc:
            raise IllegalTransition(order.order_id, trigger, source) from exc
        return Change(trigger, source, order.state)

    def can_fire(self, state: str, trigger: str) -> bool:
        return trigger in self.triggers_from(state)

    def triggers_from(self, state: str) -> list[str]:
        return list(self._machine.get_triggers(state))


class Table:
    """The whole of "what comes next": every step, the main line, the side steps, each state's
    phase, and the machine built from them. The engine and the planner read one (`TABLE`, the
    product's); a new step is a row here. `with_side_step` is how a test adds one."""

    def __init__(
        self,
        steps: tuple[Step, ...],
        main_line: tuple[Step, ...],
        side_steps: tuple[Step, ...],
        phases: Mapping[State, Phase],
    ) -> None:
        self.steps = steps
        self.main_line = main_line
        self.side_steps = side_steps
        self.phases = phases
        self.machine = OrderMachine(steps)
        self.by_action: dict[str, Step] = {str(s.action): s for s in steps if s.action is not None}
        self.by_trigger: dict[str, Step] = {s.trigger: s for s in steps}

    def with_side_step(self, step: Step) -> Table:
        """This table and one more side step, planned after the others."""
        return Table((*self.steps, step), self.main_line, (*self.side_steps, step), self.phases)


TABLE = Table(STEPS, MAIN_LINE, SIDE_STEPS, PHASES)
ORDER_MACHINE = TABLE.machine
