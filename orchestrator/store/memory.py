"""An in-memory store for the step engine: the same fencing as the real one, with state to inspect.

What the engine needs of a store is small (`orchestrator.engine.stepper.Persistence`: write an intent, save a
step's outcome, both fenced by lease owner and version), and what a daemon needs to drive it is a
claim under a lease. `MemoryStore` does exactly that in a dictionary, so the engine's decisions
(the grace period, backoff, reconciling, lease expiry) can be tested with a fake clock in
milliseconds, and a user can rehearse an integration without a database. It is not a second
implementation of the product's storage: reports, accounts and operator commands use `Store`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from orchestrator.store.events import Event, new_event
from orchestrator.store.orders import NewOrder
from orchestrator.store.rows import STEP_COLUMNS, OrderRow
from states import State


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[int, OrderRow] = {}
        self.events: list[Event] = []
        self.saves = 0
        self._next_id = 1

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    # -- what the import does -------------------------------------------------------------------

    def insert(self, order: NewOrder, now: datetime) -> OrderRow:
        row = OrderRow(
            id=self._next_id,
            order_id=order.order_id,
            account=order.account,
            affiliate_id=order.affiliate_id,
            marketplace_order_id=order.marketplace_order_id,
            sales_channel=order.sales_channel,
            state=str(State.IMPORTED),
            failed_from=None,
            place_body=order.place_body,
            value=order.value,
            invoices=order.invoice_entries(now),
            invoice_number=order.invoices[0]["invoiceNumber"] if order.invoices else None,
            cancel_reason=None,
            canceled_from=None,
            needs_attention=None,
            attempts=0,
            last_error=None,
            last_error_code=None,
            last_http_status=None,
            wait_reason=None,
            vtex_status=None,
            vtex_status_at=None,
            vtex_status_since=None,
            requests_window_at=None,
            requests_in_window=0,
            intent=None,
            intent_attempt=None,
            intent_at=None,
            next_run_at=now,
            lease_owner=None,
            lease_expires_at=None,
            version=0,
            authorized_at=None,
            created_at=now,
            updated_at=now,
            state_changed_at=now,
        )
        self.rows[row.id] = row
        self._next_id += 1
        self.events.append(new_event(row.id, now, "import", to_state=str(State.IMPORTED)))
        return copy.deepcopy(row)

    def change(self, order_id: str, **values: Any) -> None:
        """An operator's change (a cancel asked for, an invoice attached): a new version."""
        row = self.find(order_id)
        self.rows[row.id] = replace(row, version=row.version + 1, **values)

    # -- what the daemon does ---------------------------------------------------------------------

    def due(self, now: datetime) -> list[OrderRow]:
        return sorted(
            (r for r in self.rows.values() if r.next_run_at is not None and r.next_run_at <= now),
            key=lambda r: (r.next_run_at, r.id),
        )

    def next_due_at(self) -> datetime | None:
        times = [r.next_run_at for r in self.rows.values() if r.next_run_at is not None]
        return min(times, default=None)

    def claim(self, row_id: int, owner: str, now: datetime, lease: timedelta) -> OrderRow | None:
        """Lease one order if it is due (its lease, if any, expired): the step's copy of it."""
        row = self.rows[row_id]
        if row.next_run_at is None or row.next_run_at > now:
            return None
        until = now + lease
        self.rows[row_id] = replace(
            row, lease_owner=owner, lease_expires_at=until, next_run_at=until, version=row.version + 1
        )
        return copy.deepcopy(self.rows[row_id])

    # -- the engine's Persistence ---------------------------------------------------------------------

    async def write_intent(self, row: OrderRow) -> bool:
        stored = self.rows[row.id]
        if (stored.lease_owner, stored.version) != (row.lease_owner, row.version):
            return False
        self.rows[row.id] = replace(
            stored,
            intent=row.intent,
            intent_attempt=row.intent_attempt,
            intent_at=row.intent_at,
            updated_at=row.updated_at,
            version=stored.version + 1,
        )
        return True

    async def save(self, row: OrderRow, events: list[Event]) -> bool:
        stored = self.rows[row.id]
        if stored.lease_owner is None or stored.version != row.version:
            return False
        self.saves += 1
        self.rows[row.id] = replace(stored, **{name: getattr(row, name) for name in STEP_COLUMNS})
        self.events += [e.copy() for e in events]
        return True

    # -- inspection ---------------------------------------------------------------------------------

    def find(self, order_id: str) -> OrderRow:
        for row in self.rows.values():
            if row.order_id == order_id:
                return copy.deepcopy(row)
        raise KeyError(order_id)

    def history(self, order_id: str) -> list[Event]:
        pk = self.find(order_id).id
        return [e for e in self.events if e["order_pk"] == pk]

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts

    def all(self) -> Iterable[OrderRow]:
        return [copy.deepcopy(r) for r in self.rows.values()]
