"""The step engine (`Stepper`): advance one claimed order by one durable step.

    claimed row ──► planner.plan(row) ──► WRITE:     commit intent ─► call VTEX ─► outcome
                                     ├─► RECONCILE: Get order ─► did the intent take effect?
                                     └─► AWAIT:     Get order ─► catch up with VTEX's status
    outcome: transitions (through the state machine) + history + next_run_at, committed together,
             fenced by the lease, then the lease is released.

An intent is committed before every VTEX write. If the process dies, or the answer is lost, the
intent is still there on the next claim and the engine reconciles it by the rule of its step in
`states` before anything is re-sent. Nothing lives only in memory.

Where VTEX documents a wait, the order waits: a refusal VTEX's table of states declares "not yet"
(an Authorize dispatch refused while VTEX still waits for it, ORD039 on the invoice), a Get order
whose status is null (an incomplete order), a 403 that only one kind of call gets (the app key
lacks that call's License Manager resource: only those calls pause). A Get order flagging
`workflowIsInError` stops the order for a person at once.

What no answer may do: make an order loop. A refusal counts as an attempt and the next write waits
by the step's retry policy; a VTEX status the flow does not drive makes the order wait, looking
less and less often (the planner); an answer that is not VTEX's pauses the account instead of
spending the order's attempts; and every request counts against the order's hourly guard.

One class, in one module: the step's paths (write, reconcile, await), its setbacks (a 429, a
rejected credential, an answer that is not VTEX's, VTEX unreachable, a refusal: wait, retry, fail
or stop for a person, never re-send at once) and cancellation as VTEX does it. They share the
row, the step's context and the same few moves (fire a transition through the state machine,
record a call or an event, schedule the next look), so they are read together.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from orchestrator.clock import utcnow
from orchestrator.durations import format_duration
from orchestrator.engine import planner
from orchestrator.engine.planner import GUARD_WINDOW, Kind
from orchestrator.engine.policy import Policies
from orchestrator.log import get_logger
from orchestrator.store.events import Event, new_event
from orchestrator.store.rows import OrderRow
from orchestrator.timefmt import human
from orchestrator.vtex.client import Call, VtexClient, calls_end_by
from orchestrator.vtex.errors import (
    AmbiguousError,
    AuthError,
    Conflict,
    EndpointError,
    MissingPermission,
    OutOfTime,
    PermanentError,
    RateLimited,
    RetriesExhausted,
    RetryableError,
    Throttled,
    VtexError,
)
from orchestrator.vtex.pauses import AccountGuard, PermissionPause
from orchestrator.vtex.permissions import resource_of
from states import (
    CANCEL_LOCALLY,
    CANCELED_BY_VTEX,
    CANCELED_IN_VTEX,
    FAIL,
    INVOICEABLE,
    NOTICE_CANCELED,
    SEND_INVOICE,
    SEND_RETURN,
    TABLE,
    Action,
    Attention,
    State,
    Table,
    Waiting,
    denied_trigger,
    invoices,
    never_sent,
    rules,
    vtex_status,
)

__all__ = ["Persistence", "StepContext", "Stepper", "StepperConfig"]


class Persistence(Protocol):
    """Durable writes of a step; the daemon batches them from many concurrent steps."""

    async def write_intent(self, row: OrderRow) -> bool: ...

    async def save(self, row: OrderRow, events: list[Event]) -> bool: ...


@dataclass
class StepContext:
    row: OrderRow
    now: datetime
    events: list[Event] = field(default_factory=list)
    scheduled: bool = False  # an error path already chose next_run_at
    refused: bool = False  # VTEX refused a write in this step: the next one waits
    workflow_error: bool = False  # a Get order of this step flagged `workflowIsInError`


@dataclass(frozen=True)
class StepperConfig:
    grace_period: timedelta
    worker_id: str
    unknown_outcome_after: timedelta = timedelta(minutes=15)
    policies: Policies = field(default_factory=Policies)
    # The claim's lease: a step's calls end a fifth of it before it expires (time to save the
    # outcome), so no call outlives the lease. None: no deadline (tests that step by hand).
    lease: timedelta | None = None
    # What comes next (the state table) and the VTEX call each of its writes makes: the product's,
    # or a table with a step added (docs/architecture.md, "Adding a VTEX step").
    table: Table = TABLE
    perform: Mapping[str, Perform] = field(default_factory=lambda: PERFORM)


class Stepper:
    """Advances one claimed order by one durable step (the heart of the product)."""

    def __init__(
        self,
        client: VtexClient,
        persistence: Persistence,
        config: StepperConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_transition: Callable[[str, str, str], None] | None = None,
        on_invoice: Callable[[str, int], None] | None = None,
        guard: AccountGuard | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.guard = guard
        self.persistence = persistence
        self.config = config
        self.policies = config.policies
        self.table = config.table
        self.clock = clock
        self._rng = rng or random.Random()
        self._on_transition = on_transition
        self._on_invoice = on_invoice  # VTEX took an invoice: (type, value in cents), for metrics
        self._log = get_logger(worker=config.worker_id)

    async def step(self, row: OrderRow) -> bool:
        """Advance `row` by one durable step; False when its lease turned out to be lost."""
        ctx = StepContext(row, self.clock())
        self._renew_guard_window(ctx)
        heard = self._catch_up_from_event(ctx)
        plan = planner.plan(row, ctx.now, self.config.grace_period, self.policies, self.table)
        early = plan.due_at is not None and plan.due_at > ctx.now
        with calls_end_by(self._calls_deadline(ctx)):
            if row.wait_code == Waiting.LOOK_ONCE and not row.intent:
                await self._look_once(ctx)
            elif plan.kind is Kind.AWAIT and heard and early:
                pass  # an event woke it, telling nothing new: its next look stays when it was
            elif plan.kind is Kind.RECONCILE:
                await self._reconcile(ctx)
            elif plan.kind is Kind.WRITE:
                assert plan.action is not None
                if plan.action == Action.CANCEL and self._cancel_locally(ctx):
                    pass
                elif not await self._write(ctx, plan.action):
                    return False
            elif plan.kind is Kind.AWAIT:
                await self._await(ctx)
        return await self._finish(ctx)

    def _catch_up_from_event(self, ctx: StepContext) -> bool:
        """An Orders Feed event said where VTEX has the order since it entered its state
        (`vtex_event_at`, written by `orchestrator.engine.feed`): the order moves on by it first,
        without asking VTEX what it already said. The view is the status alone (`rules.
        status_only`): the rules that need more (our invoice in VTEX's packages) still ask Get
        order. Duplicates and late events do nothing: the rules ask "has VTEX reached X or
        later", and the inbox never applies an event older than the order's last. An event is
        news once: the step that takes it in clears `vtex_event_at`, so the steps after it look
        as planned."""
        row = ctx.row
        if row.intent or row.vtex_event_at is None or row.vtex_status_at != row.vtex_event_at:
            return False
        row.vtex_event_at = None
        status = planner.status_seen_here(row)
        if status is None:
            return False
        view = rules.status_only(status)
        if row.state == State.CANCELING:
            if rules.is_canceled(view):
                self._follow_cancellation(ctx, view)
            return True
        self._catch_up(ctx, view)
        return True

    async def _look_once(self, ctx: StepContext) -> None:
        """Events about the order may have been lost (a gap in the Orders Feed): one Get order,
        and the order moves as far as VTEX's view proves; the plan then goes on from there."""
        vtex_order, ok = await self._fetch(ctx)
        if not ok or vtex_order is None:
            return
        if ctx.row.state == State.CANCELING:
            self._follow_cancellation(ctx, vtex_order)
        else:
            self._catch_up(ctx, vtex_order)

    def _calls_deadline(self, ctx: StepContext) -> float | None:
        """When this step's VTEX calls must be over (`time.monotonic()`): the lease's end, less a
        fifth of the lease to save the outcome. Past it another worker may claim the order, and
        a call still open then would be a second request for it in flight."""
        lease, expires = self.config.lease, ctx.row.lease_expires_at
        if lease is None or expires is None:
            return None
        left = (expires - ctx.now - lease / 5).total_seconds()
        return time.monotonic() + left

    async def _finish(self, ctx: StepContext) -> bool:
        row = ctx.row
        if ctx.workflow_error and row.state not in _SETTLED and not row.needs_attention:
            self._needs_attention(
                ctx,
                Attention.VTEX_WORKFLOW_ERROR,
                f"VTEX flags an error in the order's workflow (workflowIsInError, VTEX status "
                f'{row.vtex_status}): "an error that cannot be solved by automatic retry"; look at '
                "the order's workflow in VTEX Admin (Orders), fix it there",
            )
        if row.requests_in_window >= self.policies.max_requests_per_hour and not row.needs_attention:
            row.needs_attention = Attention.REQUEST_GUARD
            ctx.scheduled = False  # whatever the step chose, the guard's hour decides now
            self._log.warning(
                "request guard: order paused for the rest of the hour",
                order_id=row.order_id,
                state=row.state,
                action=row.intent,
                requests=row.requests_in_window,
            )
        if not ctx.scheduled:
            self._schedule(ctx)
        row.lease_owner = None
        row.lease_expires_at = None
        row.updated_at = ctx.now
        landed = await self.persistence.save(row, ctx.events)
        if not landed:
            self._log.warning(
                "lease lost; step outcome discarded",
                order_id=row.order_id,
                state=row.state,
                action=row.intent,
            )
        return landed

    def _schedule(self, ctx: StepContext) -> None:
        row = ctx.row
        nxt = planner.plan(row, ctx.now, self.config.grace_period, self.policies, self.table)
        row.next_run_at = nxt.due_at
        row.wait_reason = nxt.reason
        # A hold on a refused call lasts while VTEX shows the same status (`_fetch` ends it).
        held = row.wait_code == Waiting.VTEX_HOLDS and nxt.kind is Kind.AWAIT
        row.wait_code = Waiting.VTEX_HOLDS if held else None
        if ctx.refused and nxt.kind is Kind.WRITE:
            # VTEX refused a write in this step and would get one again at once: hold it back.
            delay = self.policies.retry_for(nxt.action or Action.PLACE).delay(row.attempts, self._rng)
            row.next_run_at = ctx.now + delay
            row.wait_reason = f"VTEX refused {nxt.action}; trying again (attempt {row.attempts + 1})"

    def _renew_guard_window(self, ctx: StepContext) -> None:
        row = ctx.row
        started = row.requests_window_at
        if started is None or ctx.now - started >= GUARD_WINDOW:
            row.requests_window_at = ctx.now
            row.requests_in_window = 0
            if row.needs_attention == Attention.REQUEST_GUARD:
                row.needs_attention = None

    # -- writes ----------------------------------------------------------------------------------

    async def _write(self, ctx: StepContext, action: str) -> bool:
        row = ctx.row
        if self._waits_for_permission(ctx, str(action)):
            return True
        row.intent = str(action)
        row.intent_attempt = row.attempts + 1
        row.intent_at = ctx.now
        row.updated_at = ctx.now
        if not await self.persistence.write_intent(row):
            self._log.warning(
                "lease lost before calling VTEX", order_id=row.order_id, state=row.state, action=str(action)
            )
            return False
        row.version += 1  # the intent's write made a new version (see Store.commit)
        log = self._log.bind(order_id=row.order_id, state=row.state, action=str(action))
        try:
            call = await self._perform(row, action)
        except RateLimited as exc:
            # Not sent, or refused before VTEX acted: not an attempt of this order.
            self._record_call(ctx, exc.operation, exc, attempt=row.intent_attempt)
            self._clear_intent(row)
            self._rate_limited(ctx, exc, f" before {action}")
        except AuthError as exc:
            self._record_call(ctx, exc.operation, exc, attempt=row.intent_attempt)
            self._clear_intent(row)
            self._bad_credentials(ctx, exc)
        except MissingPermission as exc:
            # Refused before VTEX looked at the order: not applied, not an attempt of it.
            self._record_call(ctx, exc.operation, exc, attempt=row.intent_attempt)
            self._clear_intent(row)
            self._permission_missing(ctx, exc)
        except EndpointError as exc:
            # Not VTEX answering: the account pauses. An answer to a write may hide a VTEX that did
            # act behind it (NotVtexWrite is ambiguous): the intent stays and is reconciled.
            self._record_call(ctx, exc.operation, exc, attempt=row.intent_attempt)
            if not isinstance(exc, AmbiguousError):
                self._clear_intent(row)
            self._endpoint_problem(ctx, exc)
        except RetryableError as exc:
            self._record_call(ctx, exc.operation, exc, attempt=row.intent_attempt)
            self._clear_intent(row)
            self._retry_or_fail(ctx, action, exc)
        except AmbiguousError as exc:
            # The call may have taken effect: keep the intent, the next claim reconciles it.
            self._record_call(ctx, exc.operation, exc, attempt=row.intent_attempt)
            row.attempts += 1
            self._note_error(row, exc)
            self._later(
                ctx,
                self.policies.write.delay(row.attempts, self._rng),
                f"outcome of {action} unknown ({exc.message}); will check VTEX",
            )
            log.warning("outcome unknown, will reconcile", error=exc.describe())
        except PermanentError as exc:
            self._record_call(ctx, exc.operation, exc, attempt=row.intent_attempt)
            self._clear_intent(row)
            await self._after_refusal(ctx, action, exc)
        else:
            self._record_call(ctx, call.operation, call, attempt=row.intent_attempt)
            self._applied(ctx, action, vtex_order=None, via="VTEX accepted")
        return True

    async def _perform(self, row: OrderRow, action: str) -> Call:
        return await self.config.perform[action](self.client, row)

    async def _after_refusal(self, ctx: StepContext, action: str, refusal: PermanentError) -> None:
        """VTEX refused the call. Before calling it a failure, look at the order: FMT009 on Place,
        or OMS003 on Start handling, often means an earlier attempt already took effect; a status
        VTEX holds the order in explains the refusal without being our fault."""
        row = ctx.row
        ctx.refused = True
        row.attempts += 1
        self._note_error(row, refusal)
        vtex_order, ok = await self._fetch(ctx)
        if not ok:
            return
        if vtex_order is not None and rules.is_canceled(vtex_order) and action != Action.CANCEL:
            self._canceled_in_vtex(ctx)
            return
        if vtex_order is None and action == Action.CANCEL:
            self._cancel_locally(ctx, force=True)
            return
        if self._already_applied(action, vtex_order, row):
            self._applied(
                ctx,
                action,
                vtex_order,
                via=f"VTEX refused ({refusal.code or refusal.http_status}) but it had already taken effect",
            )
            return
        if action == Action.CANCEL:
            self._cancel_refused(ctx, refusal)
            return
        if action == Action.PLACE and vtex_order is not None:
            self._different_order(ctx, vtex_order, refusal)  # "already exists", but not as ours
            return
        if action == Action.TRACKING:
            self._needs_attention(
                ctx, Attention.TRACKING_REFUSED, f"VTEX refused the tracking update: {refusal.describe()}"
            )
            return
        if action == Action.RETURN:
            target = row.next_return
            self._needs_attention(
                ctx,
                Attention.RETURN_REFUSED,
                f"VTEX refused the return {target['number'] if target else ''}: {refusal.describe()}",
            )
            return
        self._catch_up(ctx, vtex_order)
        if isinstance(refusal, Conflict) and action == Action.START_HANDLING:
            return  # not ready-for-handling yet: VTEX's grace period outlasts ours, or VTEX holds it
        if self._documented_wait(ctx, action, refusal, vtex_order):
            return
        if planner.held_by_vtex(row) is not None:
            return  # refused because VTEX holds the order somewhere: wait for it, do not fail
        if self.policies.retry_for(action).exhausted(row.attempts) or not _transient_refusal(refusal):
            self._fail(ctx, refusal.describe(), refusal.code or str(refusal.http_status), action)

    def _documented_wait(
        self, ctx: StepContext, action: str, refusal: PermanentError, vtex_order: Mapping[str, Any] | None
    ) -> bool:
        """VTEX refused `action` in a way its table of states declares a wait (`Step.
        refusal_wait`), not a failure: the refusal is not an attempt, and the order waits, never
        failing while VTEX keeps it alive (the hourly guard still bounds its requests). Either
        VTEX waits for someone else (the seller's approval): the order only looks until VTEX shows
        another status; or it is "not yet": the call goes again, less and less often."""
        row = ctx.row
        step = self.table.by_action[action]
        if row.state not in step.sources:
            return False  # VTEX's view moved the order on: nothing to wait for
        status = rules.status_of(vtex_order)
        in_state_for = ctx.now - row.state_changed_at
        kind = step.refusal_wait(refusal.code, refusal.http_status, status, in_state_for)
        if kind is None:
            return False
        row.attempts -= 1  # counted by `_after_refusal`; a documented wait is not an attempt
        code = refusal.code or str(refusal.http_status)
        since = row.vtex_status_since if status and row.vtex_status_since else row.state_changed_at
        waited = f"since {human(since)}"  # an age here would be stale by the time it is read
        if kind is Waiting.VTEX_HOLDS:
            assert status is not None
            due = self.policies.await_held.next_look(since, ctx.now)
            why = (
                f"VTEX holds the order in {status} {waited} and refused {action} [{code}]: "
                f"{vtex_status.advice(status)}; looking again at {human(due)}"
            )
        else:
            due = self.policies.await_not_yet.next_look(since, ctx.now)
            if refusal.code is not None and refusal.code in step.not_yet:
                said = (
                    f"({refusal.message} [{code}]) {waited}: a status conflict VTEX resolves as the "
                    "order moves on"
                )
            elif status is None or refusal.http_status == 404:
                said = f"({code}) {format_duration(in_state_for)} after our Place: its order index catches up"
            else:
                said = f"[{code}] while it shows {status} {waited}: {vtex_status.advice(status)}"
            why = f"VTEX cannot take {action} yet {said}; trying again at {human(due)}"
        self._later(ctx, due - ctx.now, why, kind)
        self._log.info(
            "VTEX asked to wait", order_id=row.order_id, state=row.state, action=str(action), code=code
        )
        return True

    def _already_applied(self, action: str, vtex_order: Mapping[str, Any] | None, row: OrderRow) -> bool:
        """Whether `action` took effect, by its rule. Place's rule matches marketplace id,
        affiliate and items, never the value: VTEX documents that its order value may differ from
        our `marketplacePaymentValue` (price divergence)."""
        return self.table.by_action[action].applied(vtex_order, row)

    def _different_order(
        self, ctx: StepContext, vtex_order: Mapping[str, Any], refusal: PermanentError | None = None
    ) -> None:
        """VTEX holds another order under this one's id: never ours to drive, so it fails, saying
        what differs (with VTEX's code when VTEX refused our Place for it, e.g. FMT009)."""
        row = ctx.row
        found = rules.differences(vtex_order, row.marketplace_order_id, row.affiliate_id, row.items)
        refused = f"{refusal.describe()}; " if refusal is not None else ""
        self._fail(
            ctx,
            f"{refused}VTEX already has a different order under {row.order_id} ({'; '.join(found)}): it "
            "is not this order (another system, or another account table for the same VTEX account, "
            "placed it)",
            (refusal.code if refusal is not None else None) or "DIFFERENT-ORDER",
        )

    # -- reads -----------------------------------------------------------------------------------
    async def _reconcile(self, ctx: StepContext) -> None:
        row = ctx.row
        action = row.intent or ""
        vtex_order, ok = await self._fetch(ctx)
        if not ok:
            return
        if vtex_order is not None and rules.is_canceled(vtex_order) and action != Action.CANCEL:
            self._clear_intent(row)
            self._canceled_in_vtex(ctx)
            return
        if self._already_applied(action, vtex_order, row):
            self._event(ctx, "reconcile", action=str(action), attempt=row.intent_attempt, message="applied")
            self._applied(ctx, action, vtex_order, via="reconciled: VTEX shows it took effect")
            return
        if action == Action.PLACE and vtex_order is not None:
            self._clear_intent(row)
            self._different_order(ctx, vtex_order)
            return
        self._event(
            ctx,
            "reconcile",
            action=str(action),
            attempt=row.intent_attempt,
            message="not applied; will send again",
        )
        self._clear_intent(row)
        self._catch_up(ctx, vtex_order)
        # Place answered 500 and VTEX has no order: VTEX refused it. That is what VTEX does, every
        # time, for an affiliate using the seller's payment methods, so give up after a few tries.
        refused = action == Action.PLACE and row.last_http_status == 500
        policy = self.policies.refused_by_server if refused else self.policies.retry_for(action)
        if policy.exhausted(row.attempts):
            exhausted = RetriesExhausted(
                row.attempts, row.last_error or "no answer", operation=str(action), order_id=row.order_id
            )
            reason = exhausted.describe()
            if refused:
                reason += (
                    " (VTEX answers 500 to Place when the affiliate is configured to use the seller's "
                    "payment methods: use an affiliate without them)"
                )
            self._fail(ctx, reason, row.last_error_code, action)

    async def _await(self, ctx: StepContext) -> None:
        vtex_order, ok = await self._fetch(ctx)
        if not ok:
            return
        if vtex_order is None:
            self._fail(ctx, f"VTEX has no order {ctx.row.order_id} any more", "NOT-FOUND")
            return
        if ctx.row.state == State.CANCELING:
            self._follow_cancellation(ctx, vtex_order)
            return
        self._catch_up(ctx, vtex_order)
        self._check_invoiced_by_us(ctx, vtex_order)

    def _check_invoiced_by_us(self, ctx: StepContext, vtex_order: Mapping[str, Any]) -> None:
        """VTEX reports the order invoiced, our invoice was sent, yet no package carries it:
        another system (or another account table) invoiced it. The order is not reported
        invoiced; it stops for a person, saying which invoices VTEX holds (`retry` sends ours
        again). An invoice not sent yet simply goes out next, and VTEX answers it."""
        row = ctx.row
        sent = row.sent_output_numbers
        if (
            row.state not in INVOICEABLE
            or not sent
            or not rules.is_invoiced(vtex_order)
            or any(rules.invoice_present(vtex_order, number) for number in sent)
        ):
            return
        held = ", ".join(str(p.get("invoiceNumber")) for p in rules.packages(vtex_order)) or "none"
        ours = ", ".join(sent)
        self._needs_attention(
            ctx,
            Attention.INVOICE_MISSING,
            f"VTEX shows the order invoiced, but not with our invoices {ours} (its invoices: {held})",
        )

    async def _fetch(self, ctx: StepContext) -> tuple[Mapping[str, Any] | None, bool]:
        """Get order; (order or None when VTEX has none, True) or (None, False) if VTEX did not answer."""
        row = ctx.row
        if self._waits_for_permission(ctx, "get-order"):
            return None, False
        try:
            call = await self.client.get_order(row.order_id)
        except VtexError as exc:
            self._record_call(ctx, exc.operation, exc)
            self._read_setback(ctx, exc)
            return None, False
        self._record_call(ctx, call.operation, call)
        body = call.body if isinstance(call.body, Mapping) else None
        if body is not None:
            status = rules.status_of(body)
            if status:
                if status != row.vtex_status or row.vtex_status_since is None:
                    row.vtex_status_since = ctx.now
                    if row.wait_code == Waiting.VTEX_HOLDS:
                        row.wait_code = None  # VTEX moved: the call it refused may go again
                row.vtex_status = status
                row.vtex_status_at = ctx.now
            ctx.workflow_error = rules.workflow_in_error(body)
        return body, True

    # -- outcomes --------------------------------------------------------------------------------

    def _applied(self, ctx: StepContext, action: str, vtex_order: Mapping[str, Any] | None, via: str) -> None:
        """`action` took effect: its step's transitions, as the table of states declares them
        (earlier steps it proves, the columns it stamps or remembers), then whatever more VTEX's
        view of the order proves."""
        row = ctx.row
        step = self.table.by_action[action]
        self._clear_intent(row)
        ctx.refused = False
        row.attempts = 0
        row.last_error = None
        row.last_error_code = None
        row.last_http_status = None
        for trigger in step.proves:
            if row.state in self.table.by_trigger[trigger].sources:
                self._fire(ctx, trigger, f"{action} accepted, which proves it")
        if step.remembers is not None:
            setattr(row, step.remembers, row.state)
        number = row.mark_sent(step.sends, self.clock()) if step.sends is not None else None
        if number is not None:
            via = f"{via} (invoice {number})"
            if step.sends != invoices.TRACKING:
                self._taken(row, number)
        self._fire(
            ctx, step.trigger, f"{via}; VTEX cancels asynchronously" if action == Action.CANCEL else via
        )
        if step.stamp is not None:
            vtex_time = (
                parse_time(vtex_order.get(step.stamp_from_vtex))
                if vtex_order and step.stamp_from_vtex
                else None
            )
            setattr(row, step.stamp, vtex_time or self.clock())  # when VTEX answered, not when we asked
        if vtex_order is None:
            return
        if row.state == State.CANCELING:
            self._follow_cancellation(ctx, vtex_order)
        else:
            self._catch_up(ctx, vtex_order)

    # -- setbacks: VTEX did not simply accept -----------------------------------------------------

    def _read_setback(self, ctx: StepContext, exc: VtexError) -> None:
        """Get order did not answer with the order: the setback its kind of failure calls for."""
        if isinstance(exc, RateLimited):
            self._rate_limited(ctx, exc, "")
        elif isinstance(exc, AuthError):
            self._bad_credentials(ctx, exc)
        elif isinstance(exc, MissingPermission):
            self._permission_missing(ctx, exc)
        elif isinstance(exc, EndpointError):
            self._endpoint_problem(ctx, exc)
        else:
            self._read_failed(ctx, exc)

    def _read_failed(self, ctx: StepContext, exc: VtexError) -> None:
        row = ctx.row
        delay = self.policies.read.delay(max(1, row.attempts + 1), self._rng)
        reason = f"cannot reach VTEX ({exc.message})"
        if row.intent and row.intent_at and ctx.now - row.intent_at > self.config.unknown_outcome_after:
            reason = (
                f"cannot tell whether {row.intent} took effect: VTEX unreachable since "
                f"{human(row.intent_at)} ({exc.message}); "
                "will keep checking, never re-sending blindly"
            )
        self._note_error(row, exc)
        self._later(ctx, delay, reason)

    def _rate_limited(self, ctx: StepContext, exc: RateLimited, what: str) -> None:
        """Wait as long as VTEX says (its advice, a minute, when it says nothing). A 429 is never
        an attempt of the order, so a Retry-After of 0 answered again and again would loop: the
        wait has a floor that doubles with every five requests the order made this hour."""
        if isinstance(exc, OutOfTime):
            self._later(ctx, timedelta(0), f"the step's lease ran out before {exc.operation}; next claim")
            return
        if exc.retry_after is not None:
            wait = timedelta(seconds=exc.retry_after)
        else:
            wait = self.policies.rate_limited
        if not isinstance(exc, Throttled):
            floor = timedelta(seconds=0.5 * 2 ** (ctx.row.requests_in_window / 5))
            wait = max(wait, min(floor, self.policies.rate_limited))
        source = "request budget" if isinstance(exc, Throttled) else "VTEX rate limit (429)"
        self._later(ctx, wait, f"{source}: waiting {wait.total_seconds():.0f}s{what}")

    def _retry_or_fail(self, ctx: StepContext, action: str, exc: VtexError) -> None:
        row = ctx.row
        row.attempts += 1
        self._note_error(row, exc)
        policy = self.policies.retry_for(action)
        if policy.exhausted(row.attempts):
            exhausted = RetriesExhausted(row.attempts, exc, operation=str(action), order_id=row.order_id)
            self._fail(ctx, exhausted.describe(), exc.code or str(exc.http_status or "TRANSPORT"), action)
            return
        delay = policy.delay(row.attempts, self._rng)
        self._later(ctx, delay, f"retrying {action} (attempt {row.attempts + 1}) after: {exc.message}")

    def _bad_credentials(self, ctx: StepContext, exc: AuthError) -> None:
        """Not this order's fault: the whole account pauses (one log line, one status entry)."""
        self._note_error(ctx.row, exc)
        reason = (
            f"VTEX rejected the credentials (HTTP {exc.http_status}); check VTEX_APP_KEY / VTEX_APP_TOKEN"
        )
        if self.guard is None:
            self._later(ctx, self.policies.bad_credentials, reason)
            return
        until = self.guard.credentials_rejected(
            ctx.now, exc.http_status, order_id=ctx.row.order_id, state=ctx.row.state, action=exc.operation
        )
        wait = max(until - ctx.now, timedelta(0))
        self._later(ctx, wait, f"account paused: {reason}", Waiting.CREDENTIALS)

    def _permission_missing(self, ctx: StepContext, exc: MissingPermission) -> None:
        """VTEX refused the call with 403: the app key lacks its License Manager resource. Only
        the calls needing that resource pause; the order waits for the pause's end."""
        self._note_error(ctx.row, exc)
        if self.guard is None:
            self._later(
                ctx, self.policies.bad_credentials, f"VTEX refused: {exc.describe()}", Waiting.PERMISSION
            )
            return
        pause = self.guard.permission_missing(
            ctx.now, exc.operation, exc.message, order_id=ctx.row.order_id, state=ctx.row.state
        )
        self._wait_for_permission(ctx, pause, pause.until)

    def _waits_for_permission(self, ctx: StepContext, operation: str) -> bool:
        """Whether `operation` must wait for a pause of the resource it needs (then scheduled)."""
        if self.guard is None:
            return False
        until = self.guard.permission_wait(operation, ctx.now)
        if until is None:
            return False
        pause = self.guard.permissions[resource_of(operation)]
        self._wait_for_permission(ctx, pause, until)
        return True

    def _wait_for_permission(self, ctx: StepContext, pause: PermissionPause, until: datetime) -> None:
        self._later(
            ctx,
            max(until - ctx.now, timedelta(0)),
            f"waiting for a VTEX permission: the app key lacks the License Manager resource "
            f"{pause.resource!r} (VTEX answered 403 to {pause.operation} since {human(pause.since)}); "
            f"grant it to the key's role in VTEX Admin; tried again at {human(until)}",
            Waiting.PERMISSION,
        )

    def _endpoint_problem(self, ctx: StepContext, exc: VtexError) -> None:
        """Not VTEX answering (an HTML page, a redirect, a body without end): not this order's
        fault, not an attempt of it; the whole account pauses, for longer while it lasts."""
        self._note_error(ctx.row, exc)
        if self.guard is None:
            self._later(ctx, self.policies.endpoint_pause, f"not a VTEX answer: {exc.message}")
            return
        until = self.guard.endpoint_failed(
            ctx.now, exc.message, order_id=ctx.row.order_id, state=ctx.row.state, action=exc.operation
        )
        self._later(
            ctx, max(until - ctx.now, timedelta(0)), f"account paused: {exc.message}", Waiting.ENDPOINT
        )

    def _needs_attention(self, ctx: StepContext, why: str, reason: str) -> None:
        """The order stops and waits for a person; `status --stuck` lists it with `reason`."""
        row = ctx.row
        row.needs_attention = why
        row.last_error = reason
        self._event(ctx, "error", action=why, message=reason)
        self._log.error(
            "order needs attention", order_id=row.order_id, state=row.state, action=why, reason=reason
        )
        row.next_run_at = None
        row.wait_reason = f"{reason[:200]} (`orchestrator retry {row.order_id}` tries again)"
        ctx.scheduled = True

    def _fail(self, ctx: StepContext, reason: str, code: str | None, action: str | None = None) -> None:
        row = ctx.row
        row.last_error = reason
        row.last_error_code = code
        if row.state == State.INVOICED:
            # Only a tracking update or a return can fail after invoiced: the order stays
            # invoiced, stopped for a person.
            why = Attention.RETURN_FAILED if action == Action.RETURN else Attention.TRACKING_FAILED
            self._needs_attention(ctx, why, reason)
            return
        if row.state in (State.FAILED, State.CANCELED):
            return
        row.failed_from = row.state
        self._fire(ctx, FAIL.trigger, reason)
        self._event(ctx, "error", error_code=code, message=reason)
        self._log.error(
            "order failed", order_id=row.order_id, state=row.state, action="fail", reason=reason, code=code
        )

    # -- cancellation, as VTEX does it ----------------------------------------------------------------

    def _cancel_locally(self, ctx: StepContext, force: bool = False) -> bool:
        """An order VTEX never received needs no VTEX call to be canceled."""
        row = ctx.row
        if not (force or (never_sent(row.state, row.failed_from) and not row.intent)):
            return False
        if row.state == State.CANCELING:
            self._fire(ctx, CANCELED_BY_VTEX.trigger, "VTEX has no such order: nothing left to cancel")
        elif row.state in (State.IMPORTED, State.FAILED):
            self._fire(ctx, CANCEL_LOCALLY.trigger, f"canceled before reaching VTEX: {row.cancel_reason}")
        else:
            self._fire(ctx, NOTICE_CANCELED.trigger, "VTEX has no such order: nothing left to cancel")
        row.cancel_reason = None
        return True

    def _follow_cancellation(self, ctx: StepContext, vtex_order: Mapping[str, Any]) -> None:
        """Canceling: VTEX shows canceled (done), still canceling (wait), or anything else: the
        seller denied it, and the order carries on from where it was."""
        row = ctx.row
        status = rules.status_of(vtex_order) or ""
        if rules.is_canceled(vtex_order):
            self._fire(ctx, CANCELED_BY_VTEX.trigger, "VTEX canceled the order")
            row.cancel_reason = None
            return
        if status in vtex_status.CANCELING or status == vtex_status.INCOMPLETE:
            return  # still deciding (an incomplete order says nothing about the cancellation)
        back = State(row.canceled_from or State.HANDLING)
        self._fire(ctx, denied_trigger(back), f"VTEX denied the cancellation; the order is {status} there")
        self._event(
            ctx, "note", action="cancel-denied", message=f"cancellation denied in VTEX (status {status})"
        )
        row.cancel_reason = None
        row.canceled_from = None
        self._catch_up(ctx, vtex_order)

    def _cancel_refused(self, ctx: StepContext, refusal: PermanentError) -> None:
        """VTEX will not cancel (e.g. an Output invoice exists): the order carries on as it was;
        the refusal is in its history and its last error, and the cancel request is dropped."""
        row = ctx.row
        row.cancel_reason = None
        row.attempts = 0
        self._event(
            ctx,
            "note",
            action="cancel-refused",
            error_code=refusal.code or str(refusal.http_status),
            message=f"VTEX refused to cancel: {refusal.describe()}",
        )
        self._log.warning(
            "VTEX refused to cancel; the order carries on",
            order_id=row.order_id,
            state=row.state,
            action=str(Action.CANCEL),
            error=refusal.describe(),
        )
        ctx.refused = False

    # -- the moves every path makes -------------------------------------------------------------------

    def _later(self, ctx: StepContext, delay: timedelta, reason: str, code: Waiting | None = None) -> None:
        ctx.row.next_run_at = ctx.now + delay
        ctx.row.wait_reason = reason[:300]
        ctx.row.wait_code = code
        ctx.scheduled = True

    def _catch_up(self, ctx: StepContext, vtex_order: Mapping[str, Any] | None) -> None:
        """Move along the main line as far as VTEX's view of the order proves we are."""
        row = ctx.row
        if vtex_order is None:
            return
        if rules.is_canceled(vtex_order):
            self._canceled_in_vtex(ctx)
            return
        self._note_invoices(ctx, vtex_order)
        for step in self.table.main_line:
            if row.state in step.sources and step.applied(vtex_order, row):
                self._fire(ctx, step.trigger)

    def _note_invoices(self, ctx: StepContext, vtex_order: Mapping[str, Any]) -> None:
        """What VTEX's view says of the order's invoices: its current value (which invoices must
        reach: it changes with price divergence and order changes), and invoices of ours it holds
        that we never saw it take (a crash between the call and its answer, a lost reply)."""
        row = ctx.row
        value = vtex_order.get("value")
        if isinstance(value, int) and not isinstance(value, bool):
            row.vtex_value = value
        held = {str(p.get("invoiceNumber")) for p in rules.packages(vtex_order)}
        if not held or not row.invoices:
            return
        kinds = {e["number"]: e["type"] for e in row.invoices}
        for number in row.mark_present(held, ctx.now):
            self._taken(row, number)
            step = SEND_RETURN if kinds[number] == invoices.INPUT else SEND_INVOICE
            if row.state in step.sources:
                self._fire(ctx, step.trigger, f"VTEX holds invoice {number}")

    def _taken(self, row: OrderRow, number: str) -> None:
        entry = invoices.find(row.invoices, number)
        if self._on_invoice is not None and entry is not None:
            self._on_invoice(entry["type"], int(entry["value"]))

    def _canceled_in_vtex(self, ctx: StepContext) -> None:
        """VTEX shows the order canceled: by our request (canceling), or on its own (its Admin)."""
        row = ctx.row
        if row.state == State.CANCELING:
            self._fire(ctx, CANCELED_BY_VTEX.trigger, "VTEX canceled the order")
        elif row.state not in (State.CANCELED, State.INVOICED):
            was = row.state
            self._fire(ctx, NOTICE_CANCELED.trigger, "VTEX reports the order canceled (canceled in VTEX)")
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
        change = self.table.machine.fire(row, trigger)
        if change.source != change.dest:
            row.state_changed_at = ctx.now
            row.attempts = 0  # attempts count per step
            if row.wait_code == Waiting.VTEX_HOLDS:
                row.wait_code = None  # a hold is on one step's call
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
        error = None if isinstance(outcome, Call) else outcome
        trace = dict(outcome.trace)  # VTEX's ids of the call, for its support (`show` displays them)
        self._event(
            ctx,
            "call",
            action=operation,
            attempt=attempt,
            http_status=outcome.http_status,
            duration_ms=outcome.duration_ms,
            error_code=None if error is None else (error.code or type(error).__name__),
            message=None if error is None else error.message[:500],
            detail=trace or None,
        )


Perform = Callable[[VtexClient, OrderRow], Awaitable[Call]]

# States in which nothing VTEX flags can change what the order does.
_SETTLED = frozenset({State.INVOICED, State.CANCELED, State.FAILED})


def _invoice(client: VtexClient, row: OrderRow) -> Awaitable[Call]:
    target = row.next_invoice
    assert target is not None
    return client.send_invoice(row.order_id, invoices.body_to_send(target))


def _return(client: VtexClient, row: OrderRow) -> Awaitable[Call]:
    target = row.next_return
    assert target is not None
    return client.send_invoice(row.order_id, invoices.body_to_send(target))


def _tracking(client: VtexClient, row: OrderRow) -> Awaitable[Call]:
    target = row.next_tracking
    assert target is not None and target["tracking"]
    return client.update_tracking(row.order_id, target["number"], target["tracking"])


# The VTEX call each write of the state table makes, from the order's row. A new write is a row
# here, beside its `Step` in `states` (docs/architecture.md, "Adding a VTEX step").
PERFORM: dict[str, Perform] = {
    Action.PLACE: lambda client, row: client.place_order(row.affiliate_id, row.place_body, row.sales_channel),
    Action.AUTHORIZE: lambda client, row: client.authorize_dispatch(
        row.affiliate_id, row.marketplace_order_id, row.sales_channel
    ),
    Action.START_HANDLING: lambda client, row: client.start_handling(row.order_id),
    Action.INVOICE: _invoice,
    Action.RETURN: _return,
    Action.TRACKING: _tracking,
    Action.CANCEL: lambda client, row: client.cancel_order(
        row.order_id, row.cancel_reason or "canceled by operator"
    ),
}


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _transient_refusal(refusal: PermanentError) -> bool:
    """A refusal that may pass while VTEX moves the order on (a status conflict), as opposed to
    one about our data (an FMT code, a bad body), which repeating cannot change."""
    return isinstance(refusal, Conflict)
