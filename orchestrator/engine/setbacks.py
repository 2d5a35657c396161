"""What a step does when VTEX does not simply accept: wait (a 429, a rejected credential, an answer
that is not VTEX's, VTEX unreachable), try again after a growing delay, fail with the reason, or
stop for a person. None of these re-sends at once."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.engine.context import TRACKING_FAILED, StepBase, StepContext
from orchestrator.timefmt import human
from orchestrator.vtex.errors import (
    AuthError,
    OutOfTime,
    RateLimited,
    RetriesExhausted,
    Throttled,
    VtexError,
)
from states import (
    Action,
    State,
)


class Setbacks(StepBase):
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

    def _retry_or_fail(self, ctx: StepContext, action: Action, exc: VtexError) -> None:
        row = ctx.row
        row.attempts += 1
        self._note_error(row, exc)
        policy = self.policies.retry_for(action)
        if policy.exhausted(row.attempts):
            exhausted = RetriesExhausted(row.attempts, exc, operation=str(action), order_id=row.order_id)
            self._fail(ctx, exhausted.describe(), exc.code or str(exc.http_status or "TRANSPORT"))
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
        self._later(ctx, max(until - ctx.now, timedelta(0)), f"account paused: {reason}")

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
        self._later(ctx, max(until - ctx.now, timedelta(0)), f"account paused: {exc.message}")

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

    def _fail(self, ctx: StepContext, reason: str, code: str | None) -> None:
        row = ctx.row
        row.last_error = reason
        row.last_error_code = code
        if row.state == State.INVOICED:
            # Only the tracking update can fail after invoiced: the order stays invoiced, stopped.
            self._needs_attention(ctx, TRACKING_FAILED, reason)
            return
        if row.state in (State.FAILED, State.CANCELED):
            return
        row.failed_from = row.state
        self._fire(ctx, "fail", reason)
        self._event(ctx, "error", error_code=code, message=reason)
        self._log.error(
            "order failed", order_id=row.order_id, state=row.state, action="fail", reason=reason, code=code
        )
