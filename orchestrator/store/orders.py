"""Orders' writes: the import, claims under a lease, the steps' intents and outcomes, and the
operators' changes.

Every write that completes a step is fenced: it only lands if the row still carries the lease
owner and version the step claimed it with, so a worker that lost its lease (paused, partitioned,
presumed dead) can never overwrite another worker's progress. An operator's change needs the
order unleased and its version unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from orchestrator.config.account_tables import DEFAULT_ACCOUNT
from orchestrator.store.base import StoreBase, batched
from orchestrator.store.dialects import DialectHooks
from orchestrator.store.events import Event, new_event
from orchestrator.store.fitting import ORDER_LIMITS, fit, fit_events
from orchestrator.store.rows import COLUMNS, STEP_COLUMNS, OrderRow, ref_matches, ref_of
from orchestrator.store.tables import EVENTS, ORDERS
from states import State, Waiting


@dataclass(frozen=True)
class NewOrder:
    order_id: str
    affiliate_id: str
    marketplace_order_id: str
    sales_channel: str | None
    place_body: dict[str, Any]
    value: int
    invoice: dict[str, Any] | None
    tracking: dict[str, Any] | None = None
    line: int = 0  # where the import read it, for messages
    account: str = DEFAULT_ACCOUNT

    @property
    def key(self) -> tuple[str, str]:
        return (self.account, self.order_id)


@dataclass(frozen=True)
class Replacement:
    """An already stored order to overwrite with a corrected import (`orchestrator.intake.replace`)."""

    order_id: str
    values: dict[str, Any]
    events: list[Event]
    was: str  # the state it was in, for the report


@dataclass(frozen=True)
class Conflict:
    """An import line that differs from the stored order and will not replace it."""

    line: int
    field: str
    message: str


# What to do with a line whose order is stored: (stored, new, canceled before reaching VTEX, now)
# -> None (the same order), a Replacement, or a Conflict that stops the whole import.
Decide = Callable[[OrderRow, NewOrder, bool, datetime], "Replacement | Conflict | None"]


@dataclass(frozen=True)
class ImportOutcome:
    inserted: list[str]
    already_present: list[str]
    replaced: list[Replacement] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)  # when any, nothing was written


class _RollBack(Exception):
    pass


MAX_CONFLICTS = 1000


class OrderWrites(StoreBase):
    def __init__(self, engine: Engine, hooks: DialectHooks) -> None:
        super().__init__(engine, hooks)
        c = ORDERS.c
        # A claim returns the order's body only when the step may place it: decoding every body
        # on every step of every order was a tenth of the daemon's database time.
        self._claimed_columns = [
            sa.case((c.state == str(State.IMPORTED), c.place_body), else_=sa.null()).label("place_body")
            if name == "place_body"
            else c[name]
            for name in COLUMNS
        ]
        self._fenced_step_update = (
            sa.update(ORDERS)
            .where(
                c.id == sa.bindparam("_pk"),
                c.lease_owner == sa.bindparam("_owner"),
                c.version == sa.bindparam("_version"),
            )
            .values({name: sa.bindparam(name) for name in STEP_COLUMNS})
        )
        self._fenced_intent_update = (
            sa.update(ORDERS)
            .where(
                c.id == sa.bindparam("_pk"),
                c.lease_owner == sa.bindparam("_owner"),
                c.version == sa.bindparam("_version"),
            )
            .values(
                intent=sa.bindparam("intent"),
                intent_attempt=sa.bindparam("intent_attempt"),
                intent_at=sa.bindparam("intent_at"),
                updated_at=sa.bindparam("updated_at"),
                # A new version: an operator change read before the intent was written can then
                # never land after it, so what an open intent will send never changes.
                version=c.version + 1,
            )
        )

    # -- import -----------------------------------------------------------------------------------

    def insert_orders(
        self,
        orders: Iterable[NewOrder],
        now: datetime,
        worker: str | None = None,
        progress: Callable[[int], None] | None = None,
        decide: Decide | None = None,
    ) -> ImportOutcome:
        """Insert the orders not already present, all in one transaction, with an import event
        each; read chunk by chunk so that a large import never holds all its orders in memory.

        Orders already stored are left alone, unless `decide` says to replace one; if it finds
        any line in conflict, the whole import is rolled back and the conflicts returned."""
        inserted: list[str] = []
        present: list[str] = []
        replaced: list[Replacement] = []
        conflicts: list[Conflict] = []
        try:
            with self.engine.begin() as conn:
                for chunk in batched(orders):
                    known = self._known(conn, chunk)
                    fresh = [o for o in chunk if o.key not in known]
                    if known and decide is None:
                        present += [o.order_id for o in chunk if o.key in known]
                    elif known and decide is not None:
                        stale = [o for o in chunk if o.key in known]
                        outcomes = self._decide(conn, stale, now, decide, worker)
                        for outcome, order in zip(outcomes, stale, strict=True):
                            if outcome is None:
                                present.append(order.order_id)
                            elif isinstance(outcome, Conflict):
                                if len(conflicts) < MAX_CONFLICTS:
                                    conflicts.append(outcome)
                            else:
                                replaced.append(outcome)
                    if fresh:
                        self._insert_fresh(conn, fresh, now, worker)
                        inserted += [o.order_id for o in fresh]
                    if progress is not None:
                        progress(len(inserted) + len(present) + len(replaced))
                if conflicts:
                    raise _RollBack
        except _RollBack:
            return ImportOutcome([], [], [], conflicts)
        return ImportOutcome(inserted, sorted(present), replaced)

    @staticmethod
    def _known(conn: sa.Connection, chunk: Sequence[NewOrder]) -> dict[tuple[str, str], int]:
        """Which of these orders are stored already, by (account, order id), with their row ids."""
        c = ORDERS.c
        ids = list({o.order_id for o in chunk})
        found = conn.execute(sa.select(c.account, c.order_id, c.id).where(c.order_id.in_(ids)))
        wanted = {o.key for o in chunk}
        return {(a, o): pk for a, o, pk in found if (a, o) in wanted}

    def _insert_fresh(
        self, conn: sa.Connection, fresh: list[NewOrder], now: datetime, worker: str | None
    ) -> None:
        conn.execute(sa.insert(ORDERS), [self._order_values(o, now) for o in fresh])
        pks = self._known(conn, fresh)
        conn.execute(
            sa.insert(EVENTS),
            [
                new_event(
                    pks[o.key],
                    now,
                    "import",
                    to_state=str(State.IMPORTED),
                    worker=worker,
                    message="imported with invoice data" if o.invoice else "imported",
                )
                for o in fresh
            ],
        )

    def _decide(
        self, conn: sa.Connection, stale: list[NewOrder], now: datetime, decide: Decide, worker: str | None
    ) -> list[Replacement | Conflict | None]:
        """Each stored order against its line; replacements written at once, fenced like any
        operator change (unleased, version unchanged), or turned into a conflict."""
        c = ORDERS.c
        rows = {
            (r["account"], r["order_id"]): OrderRow.from_mapping(r)
            for r in conn.execute(
                sa.select(ORDERS).where(c.order_id.in_([o.order_id for o in stale]))
            ).mappings()
        }
        outcomes: list[Replacement | Conflict | None] = []
        for order in stale:
            row = rows[order.key]
            outcome = decide(
                row, order, row.state == State.CANCELED and self._canceled_locally(conn, row.id), now
            )
            if isinstance(outcome, Replacement):
                events = [Event(**{**e, "worker": e["worker"] or worker}) for e in outcome.events]
                if not self._write_unleased(
                    conn, c.id == row.id, row.version, values=outcome.values, events=events, now=now
                ):
                    outcome = Conflict(
                        order.line,
                        "order.marketplaceOrderId",
                        f"{row.order_id} is being worked on by a daemon right now; import again in a moment",
                    )
            outcomes.append(outcome)
        return outcomes

    @staticmethod
    def _canceled_locally(conn: sa.Connection, pk: int) -> bool:
        """Whether the order was canceled before it ever reached VTEX (its last transition)."""
        e = EVENTS.c
        action = conn.scalar(
            sa.select(e.action)
            .where(e.order_pk == pk, e.kind == "transition", e.to_state == str(State.CANCELED))
            .order_by(e.id.desc())
            .limit(1)
        )
        return action == "cancel_locally"

    @staticmethod
    def _order_values(order: NewOrder, now: datetime) -> dict[str, Any]:
        invoice_number = order.invoice.get("invoiceNumber") if order.invoice else None
        return {
            "account": order.account,
            "order_id": order.order_id,
            "affiliate_id": order.affiliate_id,
            "marketplace_order_id": order.marketplace_order_id,
            "sales_channel": order.sales_channel,
            "state": str(State.IMPORTED),
            "place_body": order.place_body,
            "value": order.value,
            "invoice": order.invoice,
            "invoice_number": invoice_number,
            "tracking": order.tracking,
            "attempts": 0,
            "version": 0,
            "next_run_at": now,
            "created_at": now,
            "updated_at": now,
            "state_changed_at": now,
        }

    # -- the engine's side ------------------------------------------------------------------------

    def claim_due(
        self, owner: str, now: datetime, lease: timedelta, limit: int, account: str | None = None
    ) -> list[OrderRow]:
        """Lease up to `limit` due orders (of `account`, when given: each account's lane claims
        its own). Their `next_run_at` becomes the lease expiry, so an order whose worker vanished
        is simply due again when the lease runs out.

        On PostgreSQL "now" is the server's clock, not `now`: daemons on hosts whose clocks
        disagree must agree on when a lease has expired, or one steals the other's orders."""
        c = ORDERS.c
        with self.engine.begin() as conn:
            now = self._lease_now(conn, now)
            until = now + lease
            is_due = (
                c.next_run_at <= now
                if account is None
                else sa.and_(c.account == account, c.next_run_at <= now)
            )
            due = (
                sa.select(c.id)
                .where(is_due)
                .order_by(c.next_run_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            statement = (
                sa.update(ORDERS)
                .where(c.id.in_(due))
                .values(lease_owner=owner, lease_expires_at=until, next_run_at=until, version=c.version + 1)
                .returning(*self._claimed_columns)
            )
            rows = conn.execute(statement).mappings().all()
        return [OrderRow.from_mapping(r) for r in rows]

    def commit(
        self,
        intents: Sequence[OrderRow],
        saves: Sequence[tuple[OrderRow, list[Event]]],
        owner: str,
    ) -> tuple[list[bool], list[bool]]:
        """Commit intents and step outcomes (with their history) of many orders in one transaction.

        Each write is fenced by lease owner and version; the lists say which landed."""
        intent_params = [
            {
                "_pk": r.id,
                "_owner": owner,
                "_version": r.version,
                "intent": r.intent,
                "intent_attempt": r.intent_attempt,
                "intent_at": r.intent_at,
                "updated_at": r.updated_at,
            }
            for r in intents
        ]
        save_params = [self._step_params(row, owner) for row, _events in saves]
        with self.engine.begin() as conn:
            intents_landed = self._fenced(conn, self._fenced_intent_update, intent_params)
            saves_landed = self._fenced(conn, self._fenced_step_update, save_params)
            events = [e for (_row, evs), ok in zip(saves, saves_landed, strict=True) if ok for e in evs]
            if events:
                conn.execute(sa.insert(EVENTS), fit_events(events))
        return intents_landed, saves_landed

    @staticmethod
    def _step_params(row: OrderRow, owner: str) -> dict[str, Any]:
        params = fit({name: getattr(row, name) for name in STEP_COLUMNS}, ORDER_LIMITS)
        params.update(_pk=row.id, _owner=owner, _version=row.version)
        return params

    @staticmethod
    def _fenced(conn: sa.Connection, statement: sa.Update, params: list[dict[str, Any]]) -> list[bool]:
        if not params:
            return []
        result = conn.execute(statement, params)
        if result.rowcount == len(params):
            return [True] * len(params)
        # Rare: some lease was lost. Redo one by one to learn which (same transaction, idempotent).
        return [conn.execute(statement, p).rowcount == 1 for p in params]

    def claim_order(self, order_id: str, owner: str, now: datetime, lease: timedelta) -> OrderRow | None:
        """Lease one given order now (an operator command stepping it); None if a worker holds it."""
        c = ORDERS.c
        with self.engine.begin() as conn:
            now = self._lease_now(conn, now)
            until = now + lease
            statement = (
                sa.update(ORDERS)
                .where(ref_matches(order_id, c), sa.or_(c.lease_owner.is_(None), c.lease_expires_at < now))
                .values(lease_owner=owner, lease_expires_at=until, next_run_at=until, version=c.version + 1)
                .returning(*[c[name] for name in COLUMNS])
            )
            row = conn.execute(statement).mappings().first()
        return OrderRow.from_mapping(row) if row else None

    def order_ids_in_state(self, state: str) -> list[str]:
        """The orders in `state`, each as a reference commands take (`acme-br/ABC-1` outside the
        default account)."""
        c = ORDERS.c
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(c.account, c.order_id).where(c.state == state).order_by(c.id))
            return [ref_of(account, order_id) for account, order_id in found]

    def release_leases(self, owner: str, now: datetime, cut_short: Sequence[int] = ()) -> int:
        """Give back every order this worker still holds, due again now (graceful shutdown). The
        orders whose step was cut short (`cut_short`, row ids) get a line in their history: a call
        they had under way was abandoned, and is reconciled on the next claim."""
        c = ORDERS.c
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(ORDERS)
                .where(c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None, next_run_at=now, updated_at=now)
            )
            if cut_short:
                message = (
                    "step cut short by the daemon's shutdown: a VTEX call under way was abandoned; "
                    "an open intent is reconciled on the next claim"
                )
                notes = [
                    new_event(pk, now, "note", action="shutdown", message=message, worker=owner)
                    for pk in cut_short
                ]
                conn.execute(sa.insert(EVENTS), notes)
        return result.rowcount

    def count_progressable(self, accounts: Sequence[str] | None = None) -> int:
        """Orders (of these accounts) that will move again without outside input (scheduled, or
        leased right now)."""
        c = ORDERS.c
        query = sa.select(sa.func.count()).select_from(ORDERS).where(c.next_run_at.is_not(None))
        if accounts is not None:
            query = query.where(c.account.in_(list(accounts)))
        with self.engine.connect() as conn:
            return conn.scalar(query) or 0

    def wake_paused(self, account: str, now: datetime) -> int:
        """An account's pause was lifted: its orders parked until the pause's end are due now,
        not minutes later."""
        c = ORDERS.c
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(ORDERS)
                .where(
                    c.account == account,
                    c.next_run_at > now,
                    c.lease_owner.is_(None),
                    c.wait_code.in_([str(w) for w in Waiting]),
                )
                .values(next_run_at=now)
            )
        return result.rowcount

    # -- operator writes --------------------------------------------------------------------------

    def update_unleased(
        self,
        order_id: str,
        now: datetime,
        values: dict[str, Any],
        events: list[Event],
        expected_version: int,
    ) -> bool:
        """Write an operator change unless a worker holds the order; bumps the version."""
        return self.update_unleased_many([(order_id, values, events, expected_version)], now)

    def update_unleased_many(
        self, changes: Sequence[tuple[str, dict[str, Any], list[Event], int]], now: datetime
    ) -> bool:
        """Write several operator changes (order id, values, events, the version they were read
        at) in one transaction: all of them, or, if a worker holds any of those orders or any
        changed since it was read, none."""
        c = ORDERS.c
        try:
            with self.engine.begin() as conn:
                for order_id, values, events, expected_version in changes:
                    if not self._write_unleased(
                        conn,
                        ref_matches(order_id, c),
                        expected_version,
                        values=values,
                        events=events,
                        now=now,
                    ):
                        raise _RollBack
        except _RollBack:
            return False
        return True

    def _write_unleased(
        self,
        conn: sa.Connection,
        which: sa.ColumnElement[bool],
        expected_version: int,
        *,
        values: dict[str, Any],
        events: list[Event],
        now: datetime,
    ) -> bool:
        """The one fenced write of a change made outside a step (an operator, a replacing import):
        only while no worker holds the order and its version is the one the change was read at."""
        c = ORDERS.c
        lease_now = self._lease_now(conn, now)
        result = conn.execute(
            sa.update(ORDERS)
            .where(
                which,
                c.version == expected_version,
                sa.or_(c.lease_owner.is_(None), c.lease_expires_at < lease_now),
            )
            .values(
                **fit(dict(values), ORDER_LIMITS),
                lease_owner=None,
                lease_expires_at=None,
                version=c.version + 1,
                updated_at=now,
            )
        )
        if result.rowcount != 1:
            return False
        if events:
            conn.execute(sa.insert(EVENTS), fit_events(events))
        return True
