"""The storage boundary: every read and write of `orders` and `order_events`, in one class.

Written once in SQLAlchemy Core for SQLite and PostgreSQL; `DialectHooks` carries the rest.
Every write that completes a step is fenced: it only lands if the row still carries the lease
owner and version the step claimed it with, so a worker that lost its lease (paused, partitioned,
presumed dead) can never overwrite another worker's progress.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from orchestrator.account import AccountPause
from orchestrator.database import DialectHooks
from orchestrator.events import ORDER_LIMITS, fit, new_event
from orchestrator.models import ACCOUNTS, EVENTS, ORDERS
from orchestrator.rows import COLUMNS, STEP_COLUMNS, OrderRow
from orchestrator.stuck import StuckRules
from states import IN_FLIGHT, State

_CHUNK = 500  # rows per IN (...) list and per executemany batch


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


@dataclass(frozen=True)
class ImportOutcome:
    inserted: list[str]
    already_present: list[str]


@dataclass(frozen=True)
class StateCount:
    state: str
    count: int
    oldest_since: datetime | None


class LeaseBusy(Exception):
    """An operator command found the order leased by a running worker."""


def _batched(items: Iterable[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class Repository:
    def __init__(self, engine: Engine, hooks: DialectHooks) -> None:
        self.engine = engine
        self.hooks = hooks
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
    ) -> ImportOutcome:
        """Insert the orders not already present, all in one transaction, with an import event
        each; read chunk by chunk so that a large import never holds all its orders in memory."""
        inserted: list[str] = []
        present: list[str] = []
        with self.engine.begin() as conn:
            for chunk in _batched(orders):
                ids = [o.order_id for o in chunk]
                known = set(conn.scalars(sa.select(ORDERS.c.order_id).where(ORDERS.c.order_id.in_(ids))))
                fresh = [o for o in chunk if o.order_id not in known]
                present += known
                if fresh:
                    conn.execute(sa.insert(ORDERS), [self._order_values(o, now) for o in fresh])
                    found = conn.execute(
                        sa.select(ORDERS.c.order_id, ORDERS.c.id).where(
                            ORDERS.c.order_id.in_([o.order_id for o in fresh])
                        )
                    )
                    pks = {order_id: pk for order_id, pk in found}
                    conn.execute(
                        sa.insert(EVENTS),
                        [
                            new_event(
                                pks[o.order_id],
                                now,
                                "import",
                                to_state=str(State.IMPORTED),
                                worker=worker,
                                message="imported with invoice data" if o.invoice else "imported",
                            )
                            for o in fresh
                        ],
                    )
                    inserted += [o.order_id for o in fresh]
                if progress is not None:
                    progress(len(inserted) + len(present))
        return ImportOutcome(inserted, sorted(present))

    @staticmethod
    def _order_values(order: NewOrder, now: datetime) -> dict[str, Any]:
        invoice_number = order.invoice.get("invoiceNumber") if order.invoice else None
        return {
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

    def server_now(self) -> datetime:
        """The clock leases and shared state are kept by: the server's on PostgreSQL."""
        with self.engine.connect() as conn:
            return self.hooks.now(conn)

    def claim_due(self, owner: str, now: datetime, lease: timedelta, limit: int) -> list[OrderRow]:
        """Lease up to `limit` due orders. Their `next_run_at` becomes the lease expiry, so an order
        whose worker vanished is simply due again when the lease runs out.

        On PostgreSQL "now" is the server's clock, not `now`: daemons on hosts whose clocks
        disagree must agree on when a lease has expired, or one steals the other's orders."""
        c = ORDERS.c
        with self.engine.begin() as conn:
            now = self._lease_now(conn, now)
            until = now + lease
            due = (
                sa.select(c.id)
                .where(c.next_run_at <= now)
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

    def _lease_now(self, conn: sa.Connection, local_now: datetime) -> datetime:
        """The time leases are compared with: the server's where there is one, else ours."""
        return self.hooks.now(conn) if self.hooks.server_clock else local_now

    def commit(
        self,
        intents: Sequence[OrderRow],
        saves: Sequence[tuple[OrderRow, list[dict[str, Any]]]],
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
                conn.execute(sa.insert(EVENTS), events)
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
                .where(c.order_id == order_id, sa.or_(c.lease_owner.is_(None), c.lease_expires_at < now))
                .values(lease_owner=owner, lease_expires_at=until, next_run_at=until, version=c.version + 1)
                .returning(*[c[name] for name in COLUMNS])
            )
            row = conn.execute(statement).mappings().first()
        return OrderRow.from_mapping(row) if row else None

    def order_ids_in_state(self, state: str) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.scalars(
                    sa.select(ORDERS.c.order_id).where(ORDERS.c.state == state).order_by(ORDERS.c.id)
                )
            )

    def release_leases(self, owner: str, now: datetime) -> int:
        """Give back every order this worker still holds, due again now (graceful shutdown)."""
        c = ORDERS.c
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(ORDERS)
                .where(c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None, next_run_at=now, updated_at=now)
            )
        return result.rowcount

    def optimize(self) -> None:
        with self.engine.begin() as conn:
            self.hooks.optimize(conn)

    def count_progressable(self) -> int:
        """Orders that will move again without outside input (scheduled, or leased right now)."""
        with self.engine.connect() as conn:
            return (
                conn.scalar(
                    sa.select(sa.func.count()).select_from(ORDERS).where(ORDERS.c.next_run_at.is_not(None))
                )
                or 0
            )

    # -- account-wide state ------------------------------------------------------------------------

    def save_account_pause(self, account: str, pause: AccountPause | None, now: datetime) -> None:
        values = {
            "paused_until": pause.until if pause else None,
            "pause_reason": pause.reason[:300] if pause else None,
            "paused_since": pause.since if pause else None,
            "updated_at": now,
        }
        with self.engine.begin() as conn:
            updated = conn.execute(sa.update(ACCOUNTS).where(ACCOUNTS.c.account == account).values(**values))
            if updated.rowcount == 0:
                conn.execute(sa.insert(ACCOUNTS).values(account=account, **values))

    def take_budget(self, account: str, want: int, capacity: float, rate: float) -> tuple[int, float]:
        """Draw up to `want` request tokens from the account's shared bucket.

        Returns (granted, wait): `wait` is how long until a token could be had, or how long the
        account is throttled after a 429. One row lock serialises all daemons on the bucket."""
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    now = self.hooks.now(conn)
                    select = sa.select(ACCOUNTS).where(ACCOUNTS.c.account == account).with_for_update()
                    found = conn.execute(select).mappings().first()
                    fresh = {"budget_tokens": capacity, "budget_refilled_at": now, "throttled_until": None}
                    row: Mapping[str, Any] = dict(found) if found is not None else fresh
                    if found is None:
                        conn.execute(sa.insert(ACCOUNTS).values(account=account, updated_at=now, **row))
                    throttled = row["throttled_until"]
                    if throttled is not None and throttled > now:
                        return 0, (throttled - now).total_seconds()
                    tokens = capacity if row["budget_tokens"] is None else row["budget_tokens"]
                    refilled = row["budget_refilled_at"] or now
                    tokens = min(capacity, tokens + max(0.0, (now - refilled).total_seconds()) * rate)
                    granted = min(want, int(tokens + 1e-9))
                    tokens = max(0.0, tokens - granted)
                    conn.execute(
                        sa.update(ACCOUNTS)
                        .where(ACCOUNTS.c.account == account)
                        .values(budget_tokens=tokens, budget_refilled_at=now, updated_at=now)
                    )
                    return granted, 0.0 if granted else (1.0 - tokens) / rate
            except sa.exc.IntegrityError as exc:  # two daemons created the row at once: read it again
                if attempt == 2 or not self.hooks.is_duplicate_key(exc):
                    raise
        raise AssertionError("unreachable")

    def throttle_account(self, account: str, seconds: float) -> None:
        """A 429: every daemon of the account holds its calls for `seconds` (never shortens a pause)."""
        with self.engine.begin() as conn:
            now = self.hooks.now(conn)
            until = now + timedelta(seconds=seconds)
            updated = conn.execute(
                sa.update(ACCOUNTS)
                .where(
                    ACCOUNTS.c.account == account,
                    sa.or_(ACCOUNTS.c.throttled_until.is_(None), ACCOUNTS.c.throttled_until < until),
                )
                .values(throttled_until=until, updated_at=now)
            )
            if (
                updated.rowcount == 0
                and conn.execute(sa.select(ACCOUNTS.c.account).where(ACCOUNTS.c.account == account)).first()
                is None
            ):
                conn.execute(
                    sa.insert(ACCOUNTS).values(account=account, throttled_until=until, updated_at=now)
                )

    def account_pause(self, account: str) -> AccountPause | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ACCOUNTS).where(ACCOUNTS.c.account == account)).mappings().first()
        return _pause(row)

    def account_pauses(self) -> list[AccountPause]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(sa.select(ACCOUNTS).where(ACCOUNTS.c.paused_until.is_not(None))).mappings().all()
            )
        return [p for p in (_pause(r) for r in rows) if p is not None]

    # -- reads for operators ----------------------------------------------------------------------

    def find(self, order_id: str) -> OrderRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ORDERS).where(ORDERS.c.order_id == order_id)).mappings().first()
        return OrderRow.from_mapping(row) if row else None

    def events(self, order_pk: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(EVENTS).where(EVENTS.c.order_pk == order_pk).order_by(EVENTS.c.id)
            ).mappings()
            return [dict(r) for r in rows]

    def oldest_active_created_at(self) -> datetime | None:
        """When the oldest order that is not yet final was imported (failed ones count: they wait)."""
        c = ORDERS.c
        active = [str(s) for s in (*IN_FLIGHT, State.FAILED)]
        with self.engine.connect() as conn:
            oldest: datetime | None = conn.scalar(
                sa.select(sa.func.min(c.created_at)).where(c.state.in_(active))
            )
        return oldest

    def state_counts(self) -> list[StateCount]:
        """Orders per state and the oldest in each. Counting scans the narrow state index once; the
        oldest is one index seek per state (with a million orders: tens of milliseconds, not hundreds)."""
        c = ORDERS.c
        with self.engine.connect() as conn:
            counts = conn.execute(sa.select(c.state, sa.func.count()).group_by(c.state)).all()
            oldest = sa.select(sa.func.min(c.state_changed_at)).where(c.state == sa.bindparam("state"))
            return [
                StateCount(state, count, conn.scalar(oldest, {"state": state})) for state, count in counts
            ]

    def _stuck_branches(
        self,
        now: datetime,
        rules: StuckRules,
        states: Sequence[str] | None,
        affiliate: str | None,
        older_than: timedelta | None,
    ) -> list[sa.ColumnElement[bool]]:
        """The stuck condition as disjoint branches, each a range of an index read in order: one per
        state, plus open intents and orders that need a person, each not already counted."""
        c = ORDERS.c
        wanted = set(states) if states else None
        extra = older_than is not None and now - older_than
        by_state: list[sa.ColumnElement[bool]] = []
        if wanted is None or str(State.FAILED) in wanted:
            failed: sa.ColumnElement[bool] = c.state == str(State.FAILED)
            by_state.append(sa.and_(failed, c.state_changed_at < extra) if extra else failed)
        for state, limit in rules.thresholds.items():
            if wanted is None or state in wanted:
                cutoff = min(now - limit, extra) if extra else now - limit
                by_state.append(sa.and_(c.state == state, c.state_changed_at < cutoff))
        counted = sa.or_(sa.false(), *by_state)
        open_intent = sa.and_(c.intent.is_not(None), c.intent_at < now - rules.open_intent_after)
        intents: sa.ColumnElement[bool] = sa.and_(open_intent, sa.not_(counted))
        # Stopped for a person (a refused tracking update, the request guard), whatever its age.
        attention: sa.ColumnElement[bool] = sa.and_(
            c.needs_attention.is_not(None), sa.not_(counted), sa.not_(open_intent)
        )
        if wanted is not None:
            intents = sa.and_(intents, c.state.in_(list(wanted)))
            attention = sa.and_(attention, c.state.in_(list(wanted)))
        if extra:
            intents = sa.and_(intents, c.state_changed_at < extra)
            attention = sa.and_(attention, c.state_changed_at < extra)
        branches = [*by_state, intents, attention]
        if affiliate:
            branches = [sa.and_(b, c.affiliate_id == affiliate) for b in branches]
        return branches

    def stuck(
        self,
        now: datetime,
        rules: StuckRules,
        *,
        states: Sequence[str] | None = None,
        affiliate: str | None = None,
        older_than: timedelta | None = None,
        limit: int = 100,
    ) -> tuple[list[OrderRow], int]:
        """The stuck orders, oldest first (at most `limit`), and how many there are in all.

        One OR over all the conditions made PostgreSQL fetch every stuck row from the table (two
        seconds cold with a million orders); as separate index ranges each branch is counted from
        the index alone and read in order, and only the rows shown are fetched whole."""
        c = ORDERS.c
        branches = self._stuck_branches(now, rules, states, affiliate, older_than)
        with self.engine.connect() as conn:
            total = sum(
                conn.scalar(sa.select(sa.func.count()).select_from(ORDERS).where(branch)) or 0
                for branch in branches
            )
            if limit <= 0 or total == 0:
                return [], total
            candidates: list[tuple[datetime, int]] = []
            for branch in branches:
                found = conn.execute(
                    sa.select(c.state_changed_at, c.id)
                    .where(branch)
                    .order_by(c.state_changed_at)
                    .limit(limit)
                )
                candidates += [(changed, pk) for changed, pk in found]
            chosen = [pk for _changed, pk in sorted(candidates)[:limit]]
            rows = conn.execute(
                sa.select(ORDERS).where(c.id.in_(chosen)).order_by(c.state_changed_at, c.id)
            ).mappings()
            return [OrderRow.from_mapping(r) for r in rows], total

    def all_rows(self) -> list[OrderRow]:
        with self.engine.connect() as conn:
            return [
                OrderRow.from_mapping(r)
                for r in conn.execute(sa.select(ORDERS).order_by(ORDERS.c.id)).mappings()
            ]

    # -- operator writes --------------------------------------------------------------------------

    def update_unleased(
        self,
        order_id: str,
        now: datetime,
        values: dict[str, Any],
        events: list[dict[str, Any]],
        expected_version: int,
    ) -> bool:
        """Write an operator change unless a worker holds the order; bumps the version."""
        c = ORDERS.c
        with self.engine.begin() as conn:
            lease_now = self._lease_now(conn, now)
            result = conn.execute(
                sa.update(ORDERS)
                .where(
                    c.order_id == order_id,
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
                conn.execute(sa.insert(EVENTS), events)
        return True


def _pause(row: Any) -> AccountPause | None:
    if row is None or row["paused_until"] is None:
        return None
    return AccountPause(
        row["account"],
        row["paused_until"],
        row["pause_reason"] or "",
        row["paused_since"] or row["paused_until"],
    )
