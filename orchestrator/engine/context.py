"""What every part of the step engine shares: the step's context, the engine's collaborators and
settings, and the small moves every path makes (fire a transition through the state machine,
record a call or an event, schedule the next look, walk along VTEX's view of the order)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from orchestrator.clock import utcnow
from orchestrator.engine.policy import Policies
from orchestrator.log import get_logger
from orchestrator.store.events import new_event
from orchestrator.store.rows import OrderRow
from orchestrator.vtex.client import Call, VtexClient
from orchestrator.vtex.errors import (
    EndpointError,
    Throttled,
    VtexError,
)
from orchestrator.vtex.pauses import AccountGuard
from states import (
    CANCELED_IN_VTEX,
    MAIN_LINE,
    ORDER_MACHINE,
    State,
    rules,
)

TRACKING_REFUSED = "tracking-refused"
TRACKING_FAILED = "tracking-failed"
# VTEX shows the order invoiced, but not with our (sent) invoice: someone else invoiced it.
INVOICE_MISSING = "invoice-missing"


class Persistence(Protocol):
    """Durable writes of a step; the daemon batches them from many concurrent steps."""

    async def write_intent(self, row: OrderRow) -> bool: ...

    async def save(self, row: OrderRow, events: list[dict[str, Any]]) -> bool: ...


@dataclass
class StepContext:
    row: OrderRow
    now: datetime
    events: list[dict[str, Any]] = field(default_factory=list)
    scheduled: bool = False  # an error path already chose next_run_at
    refused: bool = False  # VTEX refused a write in this step: the next one waits


@dataclass(frozen=True)
class StepperConfig:
    grace_period: timedelta
    worker_id: str
    unknown_outcome_after: timedelta = timedelta(minutes=15)
    policies: Policies = field(default_factory=Policies)
    # The claim's lease: a step's calls end a fifth of it before it expires (time to save the
    # outcome), so no call outlives the lease. None: no deadline (tests that step by hand).
    lease: timedelta | None = None


class StepBase:
    """The engine's collaborators and the moves every path of a step shares."""

    def __init__(
        self,
        client: VtexClient,
        persistence: Persistence,
        config: StepperConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_transition: Callable[[str, str, str], None] | None = None,
        guard: AccountGuard | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.guard = guard
        self.persistence = persistence
        self.config = config
        self.policies = config.policies
        self.clock = clock
        self._rng = rng or random.Random()
        self._on_transition = on_transition
        self._log = get_logger(worker=config.worker_id)

    def _later(self, ctx: StepContext, delay: timedelta, reason: str) -> None:
        ctx.row.next_run_at = ctx.now + delay
        ctx.row.wait_reason = reason[:300]
        ctx.scheduled = True

    def _catch_up(self, ctx: StepContext, vtex_order: Mapping[str, Any] | None) -> None:
        """Move along the main line as far as VTEX's view of the order proves we are."""
        row = ctx.row
        if vtex_order is None:
            return
        if rules.is_canceled(vtex_order):
            self._canceled_in_vtex(ctx)
            return
        facts = Facts(row)
        if (
            row.invoice_number
            and row.invoice_sent_at is None
            and rules.invoice_present(vtex_order, row.invoice_number)
        ):
            self._fire(ctx, "send_invoice")
            row.invoice_sent_at = ctx.now
        for step in MAIN_LINE:
            if row.state in step.sources and step.applied(vtex_order, facts):
                self._fire(ctx, step.trigger)

    def _canceled_in_vtex(self, ctx: StepContext) -> None:
        """VTEX shows the order canceled: by our request (canceling), or on its own (its Admin)."""
        row = ctx.row
        if row.state == State.CANCELING:
            self._fire(ctx, "canceled", "VTEX canceled the order")
        elif row.state not in (State.CANCELED, State.INVOICED):
            was = row.state
            self._fire(ctx, "notice_canceled", "VTEX reports the order canceled (canceled in VTEX)")
            # Kept on the order, so `status` counts them and `list --code canceled-in-vtex` finds them.
            row.last_error_code = CANCELED_IN_VTEX
            row.last_error = f"canceled in VTEX while {was}, not here (VTEX Admin, the customer, or VTEX)"
            self._log.warning(
                "order canceled in VTEX, not here", order_id=row.order_id, state=was, action="notice_canceled"
            )
        row.cancel_reason = None

    @staticmethod
    def _clear_intent(row: OrderRow) -> None:
        row.intent = None
        row.intent_attempt = None
        row.intent_at = None

    @staticmethod
    def _note_error(row: OrderRow, exc: VtexError) -> None:
        row.last_error = exc.describe()
        row.last_error_code = exc.code or (str(exc.http_status) if exc.http_status else type(exc).__name__)
        row.last_http_status = exc.http_status

    def _fire(self, ctx: StepContext, trigger: str, message: str | None = None) -> None:
        row = ctx.row
        change = ORDER_MACHINE.fire(row, trigger)
        if change.source != change.dest:
            row.state_changed_at = ctx.now
            row.attempts = 0  # attempts count per step
        self._event(
            ctx, "transition", action=trigger, from_state=change.source, to_state=change.dest, message=message
        )
        self._log.info(
            "transition", order_id=row.order_id, state=change.dest, action=trigger, from_state=change.source
        )
        if self._on_transition is not None:
            self._on_transition(trigger, change.source, change.dest)

    def _event(self, ctx: StepContext, kind: str, **fields: Any) -> None:
        ctx.events.append(new_event(ctx.row.id, ctx.now, kind, worker=self.config.worker_id, **fields))

    def _record_call(
        self, ctx: StepContext, operation: str, outcome: Call | VtexError, attempt: int | None = None
    ) -> None:
        if isinstance(outcome, Throttled):
            return  # never sent: nothing to record
        ctx.row.requests_in_window += 1
        accepted = isinstance(outcome, Call) or (
            outcome.http_status not in (None, 401, 403) and not isinstance(outcome, EndpointError)
        )
        if self.guard is not None and accepted:
            self.guard.call_accepted(order_id=ctx.row.order_id, state=ctx.row.state, action=operation)
        if isinstance(outcome, Call):
            self._event(
                ctx,
                "call",
                action=operation,
                attempt=attempt,
                http_status=outcome.http_status,
                duration_ms=outcome.duration_ms,
            )
            return
        self._event(
            ctx,
            "call",
            action=operation,
            attempt=attempt,
            http_status=outcome.http_status,
            duration_ms=outcome.duration_ms,
            error_code=outcome.code or type(outcome).__name__,
            message=outcome.message[:500],
        )


@dataclass(frozen=True)
class Facts:
    row: OrderRow

    @property
    def invoice_number(self) -> str | None:
        return self.row.invoice_number

    @property
    def tracking_number(self) -> str | None:
        return self.row.tracking_number

    @property
    def marketplace_order_id(self) -> str:
        return self.row.marketplace_order_id

    @property
    def affiliate_id(self) -> str:
        return self.row.affiliate_id

    @property
    def items(self) -> Mapping[str, int]:
        return rules.item_quantities(self.row.place_body.get("items"))


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
