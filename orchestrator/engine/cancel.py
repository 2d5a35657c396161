"""Cancellation as VTEX does it: locally when VTEX never had the order; otherwise VTEX's 200 only
starts it, the order waits in `canceling` until VTEX shows `canceled`, or shows the seller denied
it (the order goes back where it was); a refusal leaves the order going on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.engine.context import StepBase, StepContext
from orchestrator.vtex.errors import (
    PermanentError,
)
from states import (
    Action,
    State,
    denied_trigger,
    rules,
    vtex_status,
)


class Cancellation(StepBase):
    def _cancel_locally(self, ctx: StepContext, force: bool = False) -> bool:
        """An order VTEX never received needs no VTEX call to be canceled."""
        row = ctx.row
        never_placed = row.state == State.IMPORTED or (
            row.state == State.FAILED and row.failed_from == State.IMPORTED
        )
        if not (force or (never_placed and not row.intent)):
            return False
        if row.state == State.CANCELING:
            self._fire(ctx, "canceled", "VTEX has no such order: nothing left to cancel")
        elif row.state in (State.IMPORTED, State.FAILED):
            self._fire(ctx, "cancel_locally", f"canceled before reaching VTEX: {row.cancel_reason}")
        else:
            self._fire(ctx, "notice_canceled", "VTEX has no such order: nothing left to cancel")
        row.cancel_reason = None
        return True

    def _follow_cancellation(self, ctx: StepContext, vtex_order: Mapping[str, Any]) -> None:
        """Canceling: VTEX shows canceled (done), still canceling (wait), or anything else: the
        seller denied it, and the order carries on from where it was."""
        row = ctx.row
        status = rules.status_of(vtex_order) or ""
        if rules.is_canceled(vtex_order):
            self._fire(ctx, "canceled", "VTEX canceled the order")
            row.cancel_reason = None
            return
        if status in vtex_status.CANCELING:
            return
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
