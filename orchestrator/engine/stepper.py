"""The step engine (`Stepper`): advance one claimed order by one durable step.

    claimed row ──► planner.plan(row) ──► WRITE:     commit intent ─► call VTEX ─► outcome
                                     ├─► RECONCILE: Get order ─► did the intent take effect?
                                     └─► AWAIT:     Get order ─► catch up with VTEX's status
    outcome: transitions (through the state machine) + history + next_run_at, committed together,
             fenced by the lease, then the lease is released.

An intent is committed before every VTEX write. If the process dies, or the answer is lost, the
intent is still there on the next claim and the engine reconciles it by the rule of its step in
`states` before anything is re-sent. Nothing lives only in memory.

What no answer may do: make an order loop. A refusal counts as an attempt and the next write waits
by the step's retry policy; a VTEX status the flow does not drive makes the order wait, looking
less and less often (the planner); an answer that is not VTEX's pauses the account instead of
spending the order's attempts; and every request counts against the order's hourly guard.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from orchestrator.engine import planner
from orchestrator.engine.cancel import Cancellation
from orchestrator.engine.context import (
    INVOICE_MISSING,
    TRACKING_REFUSED,
    Facts,
    Persistence,
    StepContext,
    StepperConfig,
    parse_time,
)
from orchestrator.engine.planner import GUARD_WINDOW, REQUEST_GUARD, Kind
from orchestrator.engine.setbacks import Setbacks
from orchestrator.store.rows import OrderRow
from orchestrator.vtex.client import Call, calls_end_by
from orchestrator.vtex.errors import (
    AmbiguousError,
    AuthError,
    Conflict,
    EndpointError,
    PermanentError,
    RateLimited,
    RetriesExhausted,
    RetryableError,
    VtexError,
)
from states import (
    INVOICEABLE,
    STEP_BY_ACTION,
    STEP_BY_TRIGGER,
    Action,
    State,
    rules,
)

__all__ = ["Persistence", "StepContext", "Stepper", "StepperConfig"]


class Stepper(Setbacks, Cancellation):
    """Advances one claimed order by one durable step (the heart of the product)."""

    # -- one step --------------------------------------------------------------------------------

    async def step(self, row: OrderRow) -> bool:
        """Advance `row` by one durable step; False when its lease turned out to be lost."""
        ctx = StepContext(row, self.clock())
        self._renew_guard_window(ctx)
        plan = planner.plan(row, ctx.now, self.config.grace_period, self.policies)
        with calls_end_by(self._calls_deadline(ctx)):
            if plan.kind is Kind.RECONCILE:
                await self._reconcile(ctx)
            elif plan.kind is Kind.WRITE:
                assert plan.action is not None
                if plan.action is Action.CANCEL and self._cancel_locally(ctx):
                    pass
                elif not await self._write(ctx, plan.action):
                    return False
            elif plan.kind is Kind.AWAIT:
                await self._await(ctx)
        return await self._finish(ctx)

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
        if row.requests_in_window >= self.policies.max_requests_per_hour and not row.needs_attention:
            row.needs_attention = REQUEST_GUARD
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
        nxt = planner.plan(row, ctx.now, self.config.grace_period, self.policies)
        row.next_run_at = nxt.due_at
        row.wait_reason = nxt.reason
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
            if row.needs_attention == REQUEST_GUARD:
                row.needs_attention = None

    # -- writes ----------------------------------------------------------------------------------

    async def _write(self, ctx: StepContext, action: Action) -> bool:
        row = ctx.row
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

    async def _perform(self, row: OrderRow, action: Action) -> Call:
        client = self.client
        if action is Action.PLACE:
            return await client.place_order(row.affiliate_id, row.place_body, row.sales_channel)
        if action is Action.AUTHORIZE:
            return await client.authorize_dispatch(
                row.affiliate_id, row.marketplace_order_id, row.sales_channel
            )
        if action is Action.START_HANDLING:
            return await client.start_handling(row.order_id)
        if action is Action.INVOICE:
            assert row.invoice is not None
            return await client.send_invoice(row.order_id, row.invoice)
        if action is Action.TRACKING:
            assert row.tracking is not None and row.invoice_number is not None
            return await client.update_tracking(row.order_id, row.invoice_number, row.tracking)
        if action is Action.CANCEL:
            return await client.cancel_order(row.order_id, row.cancel_reason or "canceled by operator")
        raise AssertionError(f"no VTEX call for {action}")

    async def _after_refusal(self, ctx: StepContext, action: Action, refusal: PermanentError) -> None:
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
        if vtex_order is not None and rules.is_canceled(vtex_order) and action is not Action.CANCEL:
            self._canceled_in_vtex(ctx)
            return
        if vtex_order is None and action is Action.CANCEL:
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
        if action is Action.CANCEL:
            self._cancel_refused(ctx, refusal)
            return
        if action is Action.PLACE and vtex_order is not None:
            self._different_order(ctx, vtex_order, refusal)  # "already exists", but not as ours
            return
        if action is Action.TRACKING:
            self._needs_attention(
                ctx, TRACKING_REFUSED, f"VTEX refused the tracking update: {refusal.describe()}"
            )
            return
        self._catch_up(ctx, vtex_order)
        if isinstance(refusal, Conflict) and action is Action.START_HANDLING:
            return  # not ready-for-handling yet: VTEX's grace period outlasts ours, or VTEX holds it
        if planner.held_by_vtex(row) is not None:
            return  # refused because VTEX holds the order somewhere: wait for it, do not fail
        if self.policies.retry_for(action).exhausted(row.attempts) or not _transient_refusal(refusal):
            self._fail(ctx, refusal.describe(), refusal.code or str(refusal.http_status))

    def _already_applied(self, action: Action, vtex_order: Mapping[str, Any] | None, row: OrderRow) -> bool:
        step = STEP_BY_ACTION[action]
        if not step.applied(vtex_order, Facts(row)):
            return False
        if action is Action.PLACE and vtex_order is not None:
            # The order is ours (the Place rule); its value must be ours too.
            value = vtex_order.get("value")
            return value is None or value == row.value
        return True

    def _different_order(
        self, ctx: StepContext, vtex_order: Mapping[str, Any], refusal: PermanentError | None = None
    ) -> None:
        """VTEX holds another order under this one's id: never ours to drive, so it fails, saying
        what differs (with VTEX's code when VTEX refused our Place for it, e.g. FMT009)."""
        row = ctx.row
        facts = Facts(row)
        found = rules.differences(vtex_order, facts.marketplace_order_id, facts.affiliate_id, facts.items)
        value = vtex_order.get("value")
        if not found and value is not None and value != row.value:
            found.append(f"value {value}, not {row.value}")
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
        action = Action(row.intent or "")
        vtex_order, ok = await self._fetch(ctx)
        if not ok:
            return
        if vtex_order is not None and rules.is_canceled(vtex_order) and action is not Action.CANCEL:
            self._clear_intent(row)
            self._canceled_in_vtex(ctx)
            return
        if self._already_applied(action, vtex_order, row):
            self._event(ctx, "reconcile", action=str(action), attempt=row.intent_attempt, message="applied")
            self._applied(ctx, action, vtex_order, via="reconciled: VTEX shows it took effect")
            return
        if action is Action.PLACE and vtex_order is not None:
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
        refused = action is Action.PLACE and row.last_http_status == 500
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
            self._fail(ctx, reason, row.last_error_code)

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
        number = row.invoice_number
        if (
            row.state not in INVOICEABLE
            or number is None
            or row.invoice_sent_at is None
            or not rules.is_invoiced(vtex_order)
            or rules.invoice_present(vtex_order, number)
        ):
            return
        held = ", ".join(str(p.get("invoiceNumber")) for p in rules.packages(vtex_order)) or "none"
        self._needs_attention(
            ctx,
            INVOICE_MISSING,
            f"VTEX shows the order invoiced, but not with our invoice {number} (its invoices: {held})",
        )

    async def _fetch(self, ctx: StepContext) -> tuple[Mapping[str, Any] | None, bool]:
        """Get order; (order or None when VTEX has none, True) or (None, False) if VTEX did not answer."""
        row = ctx.row
        try:
            call = await self.client.get_order(row.order_id)
        except RateLimited as exc:
            self._record_call(ctx, exc.operation, exc)
            self._rate_limited(ctx, exc, "")
            return None, False
        except AuthError as exc:
            self._record_call(ctx, exc.operation, exc)
            self._bad_credentials(ctx, exc)
            return None, False
        except EndpointError as exc:
            self._record_call(ctx, exc.operation, exc)
            self._endpoint_problem(ctx, exc)
            return None, False
        except VtexError as exc:
            self._record_call(ctx, exc.operation, exc)
            self._read_failed(ctx, exc)
            return None, False
        self._record_call(ctx, call.operation, call)
        body = call.body if isinstance(call.body, Mapping) else None
        if body is not None:
            status = rules.status_of(body)
            if status:
                if status != row.vtex_status or row.vtex_status_since is None:
                    row.vtex_status_since = ctx.now
                row.vtex_status = status
                row.vtex_status_at = ctx.now
        return body, True

    # -- outcomes --------------------------------------------------------------------------------

    def _applied(
        self, ctx: StepContext, action: Action, vtex_order: Mapping[str, Any] | None, via: str
    ) -> None:
        """`action` took effect: its step's transitions, as the table of states declares them
        (earlier steps it proves, the columns it stamps or remembers), then whatever more VTEX's
        view of the order proves."""
        row = ctx.row
        step = STEP_BY_ACTION[action]
        self._clear_intent(row)
        ctx.refused = False
        row.attempts = 0
        row.last_error = None
        row.last_error_code = None
        row.last_http_status = None
        for trigger in step.proves:
            if row.state in STEP_BY_TRIGGER[trigger].sources:
                self._fire(ctx, trigger, f"{action} accepted, which proves it")
        if step.remembers is not None:
            setattr(row, step.remembers, row.state)
        self._fire(
            ctx, step.trigger, f"{via}; VTEX cancels asynchronously" if action is Action.CANCEL else via
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


def _transient_refusal(refusal: PermanentError) -> bool:
    """A refusal that may pass while VTEX moves the order on (a status conflict), as opposed to
    one about our data (an FMT code, a bad body), which repeating cannot change."""
    return isinstance(refusal, Conflict)


StepFn = Callable[[OrderRow], Awaitable[bool]]
