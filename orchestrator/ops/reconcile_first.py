"""Operator actions with VTEX in the loop: an open intent is reconciled before anything changes.

`orchestrator.ops.operations` refuses to touch the step of an open intent (`OpenIntent`). Here the
intent is settled the way the daemon would settle it: one durable step of that order now, which
asks VTEX whether the call took effect. Then the operation is tried again, against whatever the
order has become (an invoice VTEX turned out to have is now "sent", and replacing it is refused
for that reason). If VTEX still cannot say, the operation is refused and nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.config.settings import Settings
from orchestrator.errors import OperationError
from orchestrator.ops.operations import OpenIntent, Outcome
from orchestrator.store.store import Store


def reconciling_first(
    settings: Settings, store: Store, order_id: str, operation: Callable[[], Outcome]
) -> Outcome:
    """`operation()`, after reconciling the order's open intent with VTEX if it touches one."""
    try:
        return operation()
    except OpenIntent:
        pass
    import asyncio

    from orchestrator.ops.step_now import step_order_now

    asyncio.run(step_order_now(settings, store, order_id))
    try:
        return operation()
    except OpenIntent as still_open:
        raise OperationError(still_open.refusal()) from None
