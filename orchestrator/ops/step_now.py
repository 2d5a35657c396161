"""One durable step of one order, right now, outside the daemon: what an operator command (or
`serve`) does when it must settle an open intent with VTEX first, or send a tracking number at
once. The store is synchronous, so its calls run in a thread; the VTEX call runs on the loop."""

from __future__ import annotations

import asyncio

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.engine.clients import AccountClients, stepper_config
from orchestrator.engine.stepper import Stepper
from orchestrator.ops.pause import ensure_not_paused
from orchestrator.store.events import Event
from orchestrator.store.rows import OrderRow
from orchestrator.store.store import Store


class DirectPersistence:
    """Commits at once, for a command that steps a single order outside the daemon."""

    def __init__(self, store: Store, owner: str) -> None:
        self._store = store
        self._owner = owner

    async def write_intent(self, row: OrderRow) -> bool:
        done = await asyncio.to_thread(self._store.commit, [row], [], self._owner)
        return done[0][0]

    async def save(self, row: OrderRow, events: list[Event]) -> bool:
        done = await asyncio.to_thread(self._store.commit, [], [(row, events)], self._owner)
        return done[1][0]


async def step_order_now(
    settings: Settings, store: Store, order_id: str, clients: AccountClients
) -> OrderRow | None:
    """One durable step for one order, right now, with its account's client from `clients`;
    None if a running daemon holds the order."""
    found = await asyncio.to_thread(store.find, order_id)
    if found is None:
        return None
    account = settings.account(found.account)  # its own account's URL, credentials and rules
    await asyncio.to_thread(ensure_not_paused, account, store)  # never call VTEX behind a pause's back
    owner = clients.identity
    row = await asyncio.to_thread(store.claim_order, found.ref, owner, utcnow(), settings.lease)
    if row is None:
        return None
    stepper = Stepper(
        clients.client(account), DirectPersistence(store, owner), stepper_config(settings, account, owner)
    )
    await stepper.step(row)
    return await asyncio.to_thread(store.get, row.id)


def step_order_now_once(settings: Settings, store: Store, order_id: str) -> OrderRow | None:
    """`step_order_now` for a command: its own clients, closed when the step is done."""

    async def step() -> OrderRow | None:
        async with AccountClients.for_command(settings) as clients:
            return await step_order_now(settings, store, order_id, clients)

    return asyncio.run(step())
