"""Reads for operators: one order and its history, counts per state, and the stuck orders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa

from orchestrator.store.base import StoreBase
from orchestrator.store.events import StoredEvent
from orchestrator.store.rows import OrderRow, ref_matches, the_one
from orchestrator.store.tables import EVENTS, ORDERS
from states import IN_FLIGHT, State


@dataclass(frozen=True)
class StateCount:
    state: str
    count: int
    oldest_since: datetime | None


class StuckThresholds(Protocol):
    """What the stuck query needs of the rules (`orchestrator.config.stuck_rules.StuckRules`)."""

    @property
    def thresholds(self) -> Mapping[str, timedelta]: ...

    @property
    def open_intent_after(self) -> timedelta: ...


class Reports(StoreBase):
    # -- reads for operators ----------------------------------------------------------------------

    def find(self, order_id: str) -> OrderRow | None:
        """The order `order_id` names (`ABC-1`, or `acme-br/ABC-1` to say which account's)."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(ORDERS).where(ref_matches(order_id, ORDERS.c)).limit(2)).mappings()
            return the_one(order_id, [OrderRow.from_mapping(r) for r in found])

    def get(self, pk: int) -> OrderRow | None:
        """The order by its row id: how code that already holds a row reads it again."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ORDERS).where(ORDERS.c.id == pk)).mappings().first()
        return OrderRow.from_mapping(row) if row else None

    def events(self, order_pk: int) -> list[StoredEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(EVENTS).where(EVENTS.c.order_pk == order_pk).order_by(EVENTS.c.id)
            ).mappings()
            return [StoredEvent(**r) for r in rows]  # type: ignore[typeddict-item]  # the table's columns

    def oldest_active_created_at(self) -> datetime | None:
        """When the oldest order that is not yet final was imported (failed ones count: they wait)."""
        c = ORDERS.c
        active = [str(s) for s in (*IN_FLIGHT, State.FAILED)]
        with self.engine.connect() as conn:
            oldest: datetime | None = conn.scalar(
                sa.select(sa.func.min(c.created_at)).where(c.state.in_(active))
            )
        return oldest

    def count_with_code(self, state: str, code: str) -> int:
        """Orders in `state` whose last error has `code` (one range of the state index)."""
        c = ORDERS.c
        with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).where(c.state == state, c.last_error_code == code)
            return conn.scalar(query.select_from(ORDERS)) or 0

    def oldest_active_order(self) -> OrderRow | None:
        """The order not yet final that was imported first (failed ones count: they wait)."""
        c = ORDERS.c
        active = [str(s) for s in (*IN_FLIGHT, State.FAILED)]
        with self.engine.connect() as conn:
            query = sa.select(ORDERS).where(c.state.in_(active)).order_by(c.created_at, c.id).limit(1)
            row = conn.execute(query).mappings().first()
        return OrderRow.from_mapping(row) if row else None

    def finished_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """(state, since when) of the orders that became invoiced or failed after `since`: one
        range of the (state, state_changed_at) index per state."""
        c = ORDERS.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.state, c.state_changed_at).where(
                    c.state.in_([str(State.INVOICED), str(State.FAILED)]), c.state_changed_at >= since
                )
            ).all()
        return [(state, changed) for state, changed in rows]

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

    def account_state_counts(self) -> dict[str, dict[str, int]]:
        """Orders per account and state (an index-only scan of (account, state))."""
        c = ORDERS.c
        counts: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for account, state, count in conn.execute(
                sa.select(c.account, c.state, sa.func.count()).group_by(c.account, c.state)
            ):
                counts.setdefault(account, {})[state] = count
        return counts

    def unconfigured_accounts(self, configured: Sequence[str]) -> dict[str, int]:
        """Orders of accounts the configuration no longer has (no daemon steps them), by account;
        a range of the (account, state) index, empty and cheap when there are none."""
        c = ORDERS.c
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(c.account, sa.func.count())
                .where(c.account.not_in(list(configured)))
                .group_by(c.account)
            )
            return {account: count for account, count in found}

    def _stuck_branches(
        self,
        now: datetime,
        rules: StuckThresholds,
        states: Sequence[str] | None,
        affiliate: str | None,
        older_than: timedelta | None,
        *,
        account: str | None = None,
    ) -> list[tuple[str, sa.ColumnElement[bool]]]:
        """The stuck condition as disjoint branches, each a range of an index read in order: one per
        state, plus open intents and orders that need a person, each not already counted. Each has
        the name of its reason (`failed`, `slow-<state>`, `open-intent`, `needs-attention`)."""
        c = ORDERS.c
        wanted = set(states) if states else None
        extra = older_than is not None and now - older_than
        by_state: list[tuple[str, sa.ColumnElement[bool]]] = []
        if wanted is None or str(State.FAILED) in wanted:
            failed: sa.ColumnElement[bool] = c.state == str(State.FAILED)
            by_state.append(("failed", sa.and_(failed, c.state_changed_at < extra) if extra else failed))
        for state, limit in rules.thresholds.items():
            if wanted is None or state in wanted:
                cutoff = min(now - limit, extra) if extra else now - limit
                by_state.append((f"slow-{state}", sa.and_(c.state == state, c.state_changed_at < cutoff)))
        counted = sa.or_(sa.false(), *(clause for _name, clause in by_state))
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
        branches = [*by_state, ("open-intent", intents), ("needs-attention", attention)]
        if affiliate:
            branches = [(name, sa.and_(b, c.affiliate_id == affiliate)) for name, b in branches]
        if account:
            branches = [(name, sa.and_(b, c.account == account)) for name, b in branches]
        return branches

    def stuck_counts(self, now: datetime, rules: StuckThresholds) -> dict[str, int]:
        """How many orders are stuck, by reason (the daemon's `orchestrator_stuck_orders` gauge)."""
        with self.engine.connect() as conn:
            return {
                name: conn.scalar(sa.select(sa.func.count()).select_from(ORDERS).where(branch)) or 0
                for name, branch in self._stuck_branches(now, rules, None, None, None)
            }

    def stuck(
        self,
        now: datetime,
        rules: StuckThresholds,
        *,
        states: Sequence[str] | None = None,
        affiliate: str | None = None,
        older_than: timedelta | None = None,
        limit: int = 100,
        account: str | None = None,
    ) -> tuple[list[OrderRow], int]:
        """The stuck orders, oldest first (at most `limit`), and how many there are in all.

        One OR over all the conditions made PostgreSQL fetch every stuck row from the table (two
        seconds cold with a million orders); as separate index ranges each branch is counted from
        the index alone and read in order, and only the rows shown are fetched whole."""
        c = ORDERS.c
        branches = [
            b for _name, b in self._stuck_branches(now, rules, states, affiliate, older_than, account=account)
        ]
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
