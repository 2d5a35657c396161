"""One durable step of one order, right now, outside the daemon: what an operator command does
when it must settle an open intent with VTEX first, or send a tracking number at once."""

from __future__ import annotations

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.engine.stepper import Stepper
from orchestrator.store.events import Event
from orchestrator.store.rows import OrderRow
from orchestrator.store.store import Store
from orchestrator.wiring import build_client, process_identity, stepper_config


class DirectPersistence:
    """Commits at once, for a command that steps a single order outside the daemon."""

    def __init__(self, store: Store, owner: str) -> None:
        self._store = store
        self._owner = owner

    async def write_intent(self, row: OrderRow) -> bool:
        return self._store.commit([row], [], self._owner)[0][0]

    async def save(self, row: OrderRow, events: list[Event]) -> bool:
        return self._store.commit([], [(row, events)], self._owner)[1][0]


async def step_order_now(settings: Settings, store: Store, order_id: str) -> OrderRow | None:
    """One durable step for one order, right now; None if a running daemon holds the order."""
    from orchestrator.ops.pause import ensure_not_paused

    found = store.find(order_id)
    if found is None:
        return None
    account = settings.account(found.account)  # its own account's URL, credentials and rules
    ensure_not_paused(account, store)  # a command never calls VTEX behind a pause's back
    owner = process_identity(f"{settings.worker_id}:cli")
    row = store.claim_order(found.ref, owner, utcnow(), settings.lease)
    if row is None:
        return None
    async with build_client(account, identity=owner) as client:
        stepper = Stepper(client, DirectPersistence(store, owner), stepper_config(account, owner))
        await stepper.step(row)
    return store.get(row.id)
