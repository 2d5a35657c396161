"""Operator actions with VTEX in the loop: an open intent is reconciled before anything changes.

`orchestrator.ops.operations` refuses to touch the step of an open intent (`OpenIntent`). Here the
intent is settled the way the daemon would settle it: one durable step of that order now, which
asks VTEX whether the call took effect. Then the change is tried again, against whatever the
order has become (an invoice VTEX turned out to have is now "sent", and replacing it is refused
for that reason). The same when a change needs what only VTEX knows (its current value of the
order, for an invoice past ours). If VTEX still cannot say, the change is refused and nothing
changes.
"""

from __future__ import annotations

import asyncio

from orchestrator.config.settings import Settings
from orchestrator.engine.clients import AccountClients
from orchestrator.errors import OperationError
from orchestrator.ops.operations import AskVtexFirst, Change, Outcome, apply_async
from orchestrator.ops.step_now import step_order_now
from orchestrator.store.store import Store


async def reconciling_first(
    settings: Settings,
    store: Store,
    clients: AccountClients,
    order_id: str,
    change: Change,
    *,
    actor: str | None = None,
) -> Outcome:
    """`change` applied, after reconciling the order's open intent with VTEX if it touches one
    (with that account's client from `clients`)."""
    try:
        return await apply_async(store, order_id, change, actor)
    except AskVtexFirst:
        pass
    await step_order_now(settings, store, order_id, clients)
    try:
        return await apply_async(store, order_id, change, actor)
    except AskVtexFirst as still_open:
        raise OperationError(still_open.refusal()) from None


def reconciling_first_once(
    settings: Settings, store: Store, order_id: str, change: Change, actor: str | None = None
) -> Outcome:
    """`reconciling_first` for a command: its own clients (made only if VTEX must be asked)."""

    async def run() -> Outcome:
        async with AccountClients.for_command(settings) as clients:
            return await reconciling_first(settings, store, clients, order_id, change, actor=actor)

    return asyncio.run(run())
