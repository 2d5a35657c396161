"""`Store`: every read and write of the product's data, in one class for the rest of the code.

Written once in SQLAlchemy Core for SQLite and PostgreSQL (`DialectHooks` carries the rest). One
class in one module, in sections: the orders' writes (the import, claims, the steps' fenced
writes, operators' changes), the account-wide state every daemon shares, the reports operators
read, finding and listing orders, the daemons' heartbeats, and the API's tokens and sessions. The
values each section takes and gives live beside it (`orders.py`, `listing.py`, `reports.py`,
`daemons.py`, `tokens.py`); the engine sees only the two-method `Persistence` protocol.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from orchestrator.errors import NoSuchOrder, OperationError
from orchestrator.store.daemons import FORGET_AFTER, DaemonBeat
from orchestrator.store.dialects import DialectHooks
from orchestrator.store.events import Event, StoredEvent, new_event
from orchestrator.store.fitting import ORDER_LIMITS, fit, fit_events
from orchestrator.store.listing import EVERY_ORDER, SORTS, OrderFilter, Page, decode_cursor, encode_cursor
from orchestrator.store.orders import MAX_CONFLICTS, Conflict, Decide, ImportOutcome, NewOrder, Replacement
from orchestrator.store.reports import StateCount, StuckThresholds
from orchestrator.store.rows import (
    COLUMNS,
    STEP_COLUMNS,
    AmbiguousOrder,
    OrderRow,
    ref_matches,
    ref_of,
    split_ref,
    the_one,
)
from orchestrator.store.tables import (
    ACCOUNTS,
    API_TOKENS,
    CONSOLE_SESSIONS,
    DAEMONS,
    EVENTS,
    FEEDS,
    ORDERS,
    PERMISSIONS,
    VTEX_EVENTS,
)
from orchestrator.store.tokens import TokenRecord
from orchestrator.vtex.pauses import AccountPause, PermissionPause
from orchestrator.vtex.recovery import (
    PROBE_TIMEOUT,
    Grant,
    Recovery,
    allowance,
    answered,
    throttled,
    unanswered,
)
from states import ACCOUNT_WAITS, IN_FLIGHT, State, Waiting, behind, vtex_status

CHUNK = 500  # rows per IN (...) list and per executemany batch


def batched(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def escape_like(text: str) -> str:
    """`text` matched literally inside LIKE: an operator's `%` or `_` is a character, not a pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _pause(row: Any) -> AccountPause | None:
    if row is None or row["paused_until"] is None:
        return None
    return AccountPause(
        row["account"],
        row["paused_until"],
        row["pause_reason"] or "",
        row["paused_since"] or row["paused_until"],
    )


def _stamp(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _when(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _recovery(row: sa.RowMapping) -> Recovery:
    return Recovery(
        strikes=row["throttle_strikes"] or 0,
        paused_until=_stamp(row["throttled_until"]),
        probe_at=_stamp(row["probe_at"]),
        ramp_from=_stamp(row["ramp_from"]),
    )


def _recovery_values(state: Recovery) -> dict[str, Any]:
    return {
        "throttle_strikes": state.strikes,
        "throttled_until": _when(state.paused_until),
        "probe_at": _when(state.probe_at),
        "ramp_from": _when(state.ramp_from),
    }


def _live(now: datetime) -> list[sa.ColumnElement[bool]]:
    c = API_TOKENS.c
    return [c.revoked_at.is_(None), sa.or_(c.expires_at.is_(None), c.expires_at > now)]


def _record(row: sa.RowMapping) -> TokenRecord:
    return TokenRecord(
        row["name"], row["role"], row["created_at"], row["revoked_at"], row["last_used_at"], row["expires_at"]
    )


class _RollBack(Exception):
    pass


# States in which an event can change nothing (failed can still learn it was canceled in VTEX).
_SETTLED_STATES = (str(State.INVOICED), str(State.CANCELED))


def _vtex_time(value: Any) -> datetime | None:
    """A feed item's ISO 8601 time (VTEX writes them with a Z, sometimes with 7 fractional digits)."""
    if not isinstance(value, str):
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Store:
    """The store of one database: pass it to whatever needs the data."""

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

    def _lease_now(self, conn: sa.Connection, local_now: datetime) -> datetime:
        """The time leases are compared with: the server's where there is one, else ours."""
        return self.hooks.now(conn) if self.hooks.server_clock else local_now

    def server_now(self) -> datetime:
        """The clock leases and shared state are kept by: the server's on PostgreSQL."""
        with self.engine.connect() as conn:
            return self.hooks.now(conn)

    def optimize(self) -> None:
        with self.engine.begin() as conn:
            self.hooks.optimize(conn)

    # -- orders: the import, claims, the steps' fenced writes, operators' changes ------------------
    #
    # Orders' writes: the import, claims under a lease, the steps' intents and outcomes, and the
    # operators' changes.
    #
    # Every write that completes a step is fenced: it only lands if the row still carries the lease
    # owner and version the step claimed it with, so a worker that lost its lease (paused, partitioned,
    # presumed dead) can never overwrite another worker's progress. An operator's change needs the
    # order unleased and its version unchanged.

    def insert_orders(
        self,
        orders: Iterable[NewOrder],
        now: datetime,
        worker: str | None = None,
        progress: Callable[[int], None] | None = None,
        decide: Decide | None = None,
        *,
        dry_run: bool = False,
    ) -> ImportOutcome:
        """Insert the orders not already present, all in one transaction, with an import event
        each; read chunk by chunk so that a large import never holds all its orders in memory.

        Orders already stored are left alone, unless `decide` says to replace one; if it finds
        any line in conflict, the whole import is rolled back and the conflicts returned.
        `dry_run` does all of it and rolls back: the outcome says what an import would do."""
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
                if conflicts or dry_run:
                    raise _RollBack
        except _RollBack:
            if conflicts:
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
                    message=_imported(o),
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
        return {
            "account": order.account,
            "order_id": order.order_id,
            "affiliate_id": order.affiliate_id,
            "marketplace_order_id": order.marketplace_order_id,
            "sales_channel": order.sales_channel,
            "state": str(State.IMPORTED),
            "place_body": order.place_body,
            "value": order.value,
            "invoices": order.invoice_entries(now),
            "invoice_number": order.invoices[0]["invoiceNumber"] if order.invoices else None,
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
                    c.wait_code.in_([str(w) for w in ACCOUNT_WAITS]),
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

    # -- accounts: pauses, the shared request budget, the pause after a 429 ------------------------
    #
    # Account-wide state every daemon shares: pauses (rejected credentials, an endpoint that does not
    # answer like VTEX), the request budget as a token bucket, and the pause after a 429.

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

    def take_budget(
        self, account: str, want: int, capacity: float, rate: float, probe_timeout: float = PROBE_TIMEOUT
    ) -> Grant:
        """Draw up to `want` request tokens from the account's shared bucket, as its recovery after
        429s allows (nothing while paused, the one probe, then the ramp).

        One row lock serialises all daemons on the bucket; the recovery's times are kept by the
        database server's clock, so every daemon sees the same pause, probe and ramp."""
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    now = self.hooks.now(conn)
                    row = self._locked_account(conn, account, now, capacity)
                    state, allow = allowance(_recovery(row), now.timestamp(), rate, probe_timeout)
                    values: dict[str, Any] = {**_recovery_values(state), "updated_at": now}
                    if allow.wait or allow.probe:  # nothing accrues until the ramp: it starts empty
                        values.update(budget_tokens=0.0, budget_refilled_at=now)
                        granted, wait = (1, 0.0) if allow.probe else (0, allow.wait)
                    else:
                        size = allow.capacity or capacity
                        speed = allow.rate or rate
                        tokens = capacity if row["budget_tokens"] is None else row["budget_tokens"]
                        refilled = row["budget_refilled_at"] or now
                        tokens = min(size, tokens + max(0.0, (now - refilled).total_seconds()) * speed)
                        granted = min(want, int(tokens + 1e-9))
                        tokens = max(0.0, tokens - granted)
                        values.update(budget_tokens=tokens, budget_refilled_at=now)
                        wait = 0.0 if granted else (1.0 - tokens) / speed
                    conn.execute(sa.update(ACCOUNTS).where(ACCOUNTS.c.account == account).values(**values))
                    return Grant(granted, wait, allow.probe, state, now.timestamp())
            except sa.exc.IntegrityError as exc:  # two daemons created the row at once: read it again
                if attempt == 2 or not self.hooks.is_duplicate_key(exc):
                    raise
        raise AssertionError("unreachable")

    def _locked_account(
        self, conn: sa.Connection, account: str, now: datetime, capacity: float = 0.0
    ) -> sa.RowMapping:
        """The account's row, locked for this transaction (created when there is none yet)."""
        select = sa.select(ACCOUNTS).where(ACCOUNTS.c.account == account).with_for_update()
        found = conn.execute(select).mappings().first()
        if found is not None:
            return found
        fresh = {"budget_tokens": capacity, "budget_refilled_at": now, "throttle_strikes": 0}
        conn.execute(sa.insert(ACCOUNTS).values(account=account, updated_at=now, **fresh))
        return conn.execute(select).mappings().one()

    def throttle_account(self, account: str, retry_after: float | None) -> None:
        """A 429: every daemon of the account pauses (longer for 429s in a row; never shortening a
        pause), then probes again."""
        self._change_recovery(account, lambda state, now: throttled(state, now, retry_after))

    def probe_done(self, account: str, was_answered: bool) -> None:
        """The probe after a pause was answered (not a 429): the ramp begins, for every daemon. It
        got no answer at all: it told nothing, and the next request, any daemon's, probes."""
        if was_answered:
            self._change_recovery(account, answered)
        else:
            self._change_recovery(account, lambda state, _now: unanswered(state))

    def save_recovery(self, account: str, recovery: Recovery) -> None:
        """One daemon's own recovery (SQLite), in epoch seconds: for `status` and the metrics."""
        self._change_recovery(account, lambda _state, _now: recovery)

    def _change_recovery(self, account: str, change: Callable[[Recovery, float], Recovery]) -> None:
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    now = self.hooks.now(conn)
                    row = self._locked_account(conn, account, now)
                    state = change(_recovery(row), now.timestamp())
                    values: dict[str, Any] = {**_recovery_values(state), "updated_at": now}
                    conn.execute(sa.update(ACCOUNTS).where(ACCOUNTS.c.account == account).values(**values))
                    return
            except sa.exc.IntegrityError as exc:
                if attempt == 2 or not self.hooks.is_duplicate_key(exc):
                    raise

    def account_recoveries(self) -> dict[str, tuple[Recovery, float]]:
        """Accounts recovering from 429s (paused, probing or ramping), each with the database's
        clock's now (epoch seconds) to read the recovery's phase by."""
        with self.engine.connect() as conn:
            now = self.hooks.now(conn)
            rows = conn.execute(sa.select(ACCOUNTS).where(ACCOUNTS.c.throttled_until.is_not(None))).mappings()
            return {row["account"]: (_recovery(row), now.timestamp()) for row in rows}

    def account_pause(self, account: str) -> AccountPause | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ACCOUNTS).where(ACCOUNTS.c.account == account)).mappings().first()
        return _pause(row)

    def save_permission_pause(
        self, account: str, resource: str, pause: PermissionPause | None, now: datetime
    ) -> None:
        """Record that the calls needing `resource` pause (VTEX answered 403), or that they go on."""
        c = PERMISSIONS.c
        with self.engine.begin() as conn:
            conn.execute(sa.delete(PERMISSIONS).where(c.account == account, c.resource == resource))
            if pause is not None:
                conn.execute(
                    sa.insert(PERMISSIONS).values(
                        account=account,
                        resource=resource[:120],
                        operation=pause.operation[:32],
                        message=pause.message[:300],
                        since=pause.since,
                        until=pause.until,
                        updated_at=now,
                    )
                )

    def permission_pauses(self, account: str | None = None) -> list[PermissionPause]:
        """The resources VTEX refused calls for, of one account or of all, oldest first."""
        query = sa.select(PERMISSIONS).order_by(PERMISSIONS.c.since)
        if account is not None:
            query = query.where(PERMISSIONS.c.account == account)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            PermissionPause(
                r["account"], r["resource"], r["until"], r["since"], r["operation"], r["message"] or ""
            )
            for r in rows
        ]

    def clear_permission_pauses(self, account: str) -> int:
        """An operator says the permissions were granted: no call waits for them any more (the
        first 403 pauses them again). `wake_paused` makes the orders that waited due."""
        with self.engine.begin() as conn:
            return conn.execute(sa.delete(PERMISSIONS).where(PERMISSIONS.c.account == account)).rowcount

    def account_pauses(self) -> list[AccountPause]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(sa.select(ACCOUNTS).where(ACCOUNTS.c.paused_until.is_not(None))).mappings().all()
            )
        return [p for p in (_pause(r) for r in rows) if p is not None]

    # -- the Orders Feed: who reads an account's feed, its inbox, events applied to orders --------
    #
    # One daemon reads an account's feed at a time (a lease, like a claim's). What it reads goes
    # into the inbox first (one row per VTEX eventId: the feed delivers some twice), and is then
    # applied to its order, if the order is ours and not being stepped right now: the order gets
    # VTEX's status and is due at once. An event never moves an order's known status backwards.

    def lead_feed(self, account: str, worker: str, now: datetime, lease: timedelta) -> bool:
        """Take or keep the lease on the account's feed; False while another daemon holds it."""
        c = FEEDS.c
        with self.engine.begin() as conn:
            now = self._lease_now(conn, now)
            free = sa.or_(c.owner.is_(None), c.owner == worker, c.lease_until < now)
            taken = conn.execute(
                sa.update(FEEDS)
                .where(c.account == account, free)
                .values(owner=worker, lease_until=now + lease, updated_at=now)
            ).rowcount
            if taken:
                return True
            exists = conn.execute(sa.select(c.account).where(c.account == account)).first()
            if exists is not None:
                return False
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(FEEDS).values(
                        account=account, owner=worker, lease_until=now + lease, updated_at=now
                    )
                )
        except sa.exc.IntegrityError:
            return False  # another daemon created it first: it leads
        return True

    def release_feed(self, account: str, worker: str) -> None:
        c = FEEDS.c
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(FEEDS)
                .where(c.account == account, c.owner == worker)
                .values(owner=None, lease_until=None)
            )

    def note_feed(self, account: str, worker: str, now: datetime, **seen: Any) -> None:
        """Record what the leading daemon saw of the feed (configured_at, read_at, event_at,
        problem), for `status` and `check`."""
        c = FEEDS.c
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(FEEDS).where(c.account == account, c.owner == worker).values(updated_at=now, **seen)
            )

    def feed_events_of(self, account: str, order_id: str) -> list[dict[str, Any]]:
        """What the feed and the Hook said about one order, oldest first (kept until past the
        feed's retention)."""
        c = VTEX_EVENTS.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.event_id, c.state, c.last_state, c.current_change, c.received_at, c.applied_at)
                .where(c.account == account, c.order_id == order_id)
                .order_by(c.received_at, c.id)
            ).mappings()
            return [dict(r) for r in rows]

    def note_hook_event(self, account: str, now: datetime) -> None:
        """VTEX's Hook pushed a notification now (`serve` is not the feed's reader: no owner)."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(FEEDS).where(FEEDS.c.account == account).values(hook_event_at=now))

    def feed(self, account: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(FEEDS).where(FEEDS.c.account == account)).mappings().first()
        return dict(row) if row is not None else None

    def feeds(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(FEEDS).order_by(FEEDS.c.account)).mappings()]

    def save_feed_items(self, account: str, items: Sequence[Mapping[str, Any]], now: datetime) -> int:
        """Put the feed's items into the inbox, each eventId once; how many were new."""
        c = VTEX_EVENTS.c
        wanted = {str(i["eventId"]): i for i in items}
        with self.engine.begin() as conn:
            known = set(
                conn.execute(
                    sa.select(c.event_id).where(c.account == account, c.event_id.in_(list(wanted)))
                ).scalars()
            )
            new = [
                {
                    "account": account,
                    "event_id": event_id[:100],
                    "order_id": str(item["orderId"])[:120],
                    "state": str(item.get("state") or "")[:64],
                    "last_state": (str(item["lastState"])[:64] if item.get("lastState") else None),
                    "current_change": _vtex_time(item.get("currentChange")),
                    "received_at": now,
                    "applied_at": None,
                }
                for event_id, item in wanted.items()
                if event_id not in known
            ]
            if new:
                conn.execute(sa.insert(VTEX_EVENTS), new)
        return len(new)

    def apply_feed_events(self, account: str, name: str, now: datetime) -> int:
        """Apply the inbox's events to their orders (of account `name`) that are not being stepped:
        VTEX's status, known since now, and the order due at once; an event older than one already
        applied to the order only leaves the inbox. Returns how many orders were made due."""
        e, o = VTEX_EVENTS.c, ORDERS.c
        woken = 0
        with self.engine.begin() as conn:
            lease_now = self._lease_now(conn, now)
            pending = conn.execute(
                sa.select(e.id, e.order_id, e.state, e.current_change)
                .where(e.account == account, e.applied_at.is_(None))
                .order_by(e.current_change, e.id)
            ).all()
            for event_pk, order_id, state, change in pending:
                order = conn.execute(
                    sa.select(o.id, o.lease_owner, o.lease_expires_at, o.vtex_status, o.state).where(
                        o.account == name, o.order_id == order_id
                    )
                ).first()
                if order is not None and order.lease_owner is not None and order.lease_expires_at > lease_now:
                    continue  # being stepped: applied on the next read
                newer = conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(VTEX_EVENTS)
                    .where(
                        e.account == account,
                        e.order_id == order_id,
                        e.applied_at.is_not(None),
                        e.current_change > change,
                    )
                )
                conn.execute(sa.update(VTEX_EVENTS).where(e.id == event_pk).values(applied_at=now))
                if order is None or order.state in _SETTLED_STATES or behind(order.state, state):
                    continue  # not ours, or older news than the order's own state
                if order.vtex_status in vtex_status.FINAL and state not in vtex_status.FINAL:
                    continue  # VTEX never leaves invoiced or canceled: a late event's news is old
                if newer and state not in vtex_status.FINAL:
                    continue  # VTEX's own times say a later change was already applied
                values: dict[str, Any] = {
                    "vtex_status": state,
                    "vtex_status_at": now,
                    "vtex_event_at": now,
                    "next_run_at": lease_now,  # claims compare with the leases' clock
                }
                if state != order.vtex_status:
                    values["vtex_status_since"] = now
                # Claimed since it was read above, it is left to its step (whose save would
                # otherwise carry the old status, and whose lease a due time would undo).
                unleased = sa.or_(o.lease_owner.is_(None), o.lease_expires_at <= lease_now)
                if conn.execute(
                    sa.update(ORDERS).where(o.id == order.id, unleased).values(**values)
                ).rowcount:
                    woken += 1
                else:
                    conn.execute(sa.update(VTEX_EVENTS).where(e.id == event_pk).values(applied_at=None))
        return woken

    def forget_feed_events(self, before: datetime) -> int:
        """Drop applied inbox rows received before `before` (past the feed's retention, VTEX
        cannot deliver them again)."""
        c = VTEX_EVENTS.c
        with self.engine.begin() as conn:
            return conn.execute(
                sa.delete(VTEX_EVENTS).where(c.received_at < before, c.applied_at.is_not(None))
            ).rowcount

    def sweep(self, name: str, now: datetime, only: Sequence[int] | None = None) -> int:
        """After a gap in the feed (its configuration recreated, events lost): every in-flight order
        of account `name` not stopped for a person looks at VTEX once, now (`Waiting.LOOK_ONCE`);
        `only`: of these orders (by row id)."""
        c = ORDERS.c
        query = sa.update(ORDERS).where(
            c.account == name,
            c.state.in_([str(s) for s in IN_FLIGHT if s != State.IMPORTED]),  # VTEX has them
            c.lease_owner.is_(None),
            c.needs_attention.is_(None),
            c.intent.is_(None),
        )
        if only is not None:
            query = query.where(c.id.in_(list(only)))
        with self.engine.begin() as conn:
            return conn.execute(query.values(next_run_at=now, wait_code=str(Waiting.LOOK_ONCE))).rowcount

    def held_in_flight(self, name: str) -> list[int]:
        """The in-flight orders of account `name` a step holds now (a sweep skips them)."""
        c = ORDERS.c
        flying = [str(s) for s in IN_FLIGHT if s != State.IMPORTED]
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(c.id).where(c.account == name, c.state.in_(flying), c.lease_owner.is_not(None))
            )
            return [pk for (pk,) in found]

    # -- reports: one order and its history, counts per state, stuck orders ------------------------
    #
    # Reads for operators: one order and its history, counts per state, and the stuck orders.

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

    def invoicing_counts(self) -> tuple[int, int]:
        """(orders partly invoiced, orders with a return): the first within the states still in
        flight (a range of the state index), the second from a partial index of the few there are."""
        c = ORDERS.c
        flying = [str(s) for s in IN_FLIGHT]
        with self.engine.connect() as conn:
            partly = conn.scalar(
                sa.select(sa.func.count()).where(c.state.in_(flying), c.invoices_sent > 0).select_from(ORDERS)
            )
            returned = conn.scalar(sa.select(sa.func.count()).where(c.returns_sent > 0).select_from(ORDERS))
        return partly or 0, returned or 0

    def oldest_active_order(self, account: str | None = None) -> OrderRow | None:
        """The order not yet final that was imported first (failed ones count: they wait), of
        one account or of all."""
        c = ORDERS.c
        active = [str(s) for s in (*IN_FLIGHT, State.FAILED)]
        query = sa.select(ORDERS).where(c.state.in_(active))
        if account is not None:
            query = query.where(c.account == account)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(c.created_at, c.id).limit(1)).mappings().first()
        return OrderRow.from_mapping(row) if row else None

    def finished_since(self, since: datetime, account: str | None = None) -> list[tuple[str, datetime]]:
        """(state, since when) of the orders that became invoiced or failed after `since`: one
        range of the (state, state_changed_at) index per state (of one account, or of all)."""
        c = ORDERS.c
        query = sa.select(c.state, c.state_changed_at).where(
            c.state.in_([str(State.INVOICED), str(State.FAILED)]), c.state_changed_at >= since
        )
        if account is not None:
            query = query.where(c.account == account)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
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

    # -- finding and listing orders ----------------------------------------------------------------
    #
    # Finding orders: by any id an operator is quoted, and listed with filters, a sort and keyset
    # pages (`orchestrator list`, `show`).
    #
    # Keyset, not OFFSET: page 5,000 of a million orders costs what page 1 costs, and a page never skips
    # or repeats an order because orders changed between two pages' reads (an order whose sort key
    # changed may move, which is what "sorted by last change" means). The cursor is opaque to the user:
    # the sort it belongs to, the last row's sort value and its primary key.

    def the_order(self, key: str) -> OrderRow:
        """The one order `key` names, by any id `find_any` takes (what every command that names an
        order accepts): NoSuchOrder when none, a refusal listing them when several."""
        found = self.find_any(key)
        if len(found) == 1:
            return found[0]
        if not found:
            raise NoSuchOrder(key)
        if all(r.order_id == split_ref(key)[1] for r in found):
            raise AmbiguousOrder(key, sorted(r.ref for r in found))  # one id, several accounts
        names = ", ".join(f"{r.ref} ({r.state})" for r in found)
        raise OperationError(f"{len(found)} orders match {key!r}: {names}; give the order id as listed")

    def find_any(self, key: str, limit: int = 20) -> list[OrderRow]:
        """The orders `key` names: the one whose VTEX order id it is (unique, so it wins), else
        those whose marketplace order id or invoice number it is (three index seeks in one query;
        those two may name several orders)."""
        c = ORDERS.c
        account, key = split_ref(key)  # `acme-br/100001`: that account's only
        match = sa.or_(c.order_id == key, c.marketplace_order_id == key, c.invoice_number == key)
        if account is not None:
            match = sa.and_(c.account == account, match)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(ORDERS).where(match).order_by(c.id).limit(limit)).mappings()
            found = [OrderRow.from_mapping(r) for r in rows]
            if not found:
                # An invoice after an order's first (a partial one, a return) is inside its list:
                # no index reaches it, so it is looked for only when nothing indexed matched.
                later = self.hooks.has_invoice_number(c.invoices, key)
                if account is not None:
                    later = sa.and_(c.account == account, later)
                rows = conn.execute(sa.select(ORDERS).where(later).order_by(c.id).limit(limit)).mappings()
                found = [OrderRow.from_mapping(r) for r in rows]
        exact = [row for row in found if row.order_id == key]
        return exact or found

    def list_orders(
        self,
        now: datetime,
        where: OrderFilter = EVERY_ORDER,
        *,
        sort: str = "created",
        descending: bool | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page:
        c = ORDERS.c
        column_name, default_desc = SORTS[sort]
        desc = default_desc if descending is None else descending
        key = c[column_name]
        query = self._filtered(sa.select(ORDERS), where, now)
        if after:
            value, pk = decode_cursor(sort, after)
            if column_name == "id":
                query = query.where(c.id < pk if desc else c.id > pk)
            elif desc:
                query = query.where(sa.or_(key < value, sa.and_(key == value, c.id < pk)))
            else:
                query = query.where(sa.or_(key > value, sa.and_(key == value, c.id > pk)))
        order = [key.desc(), c.id.desc()] if desc else [key.asc(), c.id.asc()]
        if column_name == "id":
            order = order[:1]
        with self.engine.connect() as conn:
            found = conn.execute(query.order_by(*order).limit(limit + 1)).mappings().all()
        rows = [OrderRow.from_mapping(r) for r in found[:limit]]
        more = len(found) > limit
        last = rows[-1] if rows else None
        cursor = encode_cursor(sort, getattr(last, column_name), last.id) if more and last else None
        return Page(rows, cursor)

    def count_orders(self, now: datetime, where: OrderFilter = EVERY_ORDER) -> int:
        """How many orders `list_orders` would walk through with this filter (the console's "all
        N matching", a bulk action's confirmation)."""
        query = self._filtered(sa.select(sa.func.count()).select_from(ORDERS), where, now)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _filtered(self, query: Any, where: OrderFilter, now: datetime) -> Any:
        c = ORDERS.c
        if where.states:
            query = query.where(c.state.in_(list(where.states)))
        if where.affiliate:
            query = query.where(c.affiliate_id == where.affiliate)
        if where.account:
            query = query.where(c.account == where.account)
        if where.older_than is not None:
            query = query.where(c.state_changed_at < now - where.older_than)
        if where.error_code:
            query = query.where(c.last_error_code == where.error_code)
        if where.waiting:
            words = f"%{where.waiting}%"
            query = query.where(sa.or_(c.wait_reason.ilike(words), c.needs_attention.ilike(words)))
        if where.partly_invoiced:
            query = query.where(c.invoices_sent > 0, c.state != str(State.INVOICED))
        if where.returned:
            query = query.where(c.returns_sent > 0)
        if where.text:
            words = f"%{escape_like(where.text)}%"
            query = query.where(
                sa.or_(
                    c.order_id.ilike(words, escape="\\"),
                    c.marketplace_order_id.ilike(words, escape="\\"),
                    c.invoice_number.ilike(words, escape="\\"),
                    self.hooks.customer_name(c.place_body).ilike(words, escape="\\"),
                )
            )
        return query

    # -- the daemons' heartbeats -------------------------------------------------------------------
    #
    # The daemons' heartbeats: one row per daemon process, so `status` can say who is running, and
    # say loudly when nobody is (a daemon that died without a word leaves a heartbeat that ages).

    def beat(self, beat: DaemonBeat) -> None:
        """Record that this daemon is alive now (its row created on the first beat)."""
        values = {
            "host": beat.host[:255],
            "pid": beat.pid,
            "version": beat.version[:40],
            "started_at": beat.started_at,
            "last_seen_at": beat.last_seen_at,
            "stopped_at": beat.stopped_at,
        }
        with self.engine.begin() as conn:
            updated = conn.execute(sa.update(DAEMONS).where(DAEMONS.c.worker == beat.worker).values(**values))
            if updated.rowcount == 0:
                conn.execute(sa.insert(DAEMONS).values(worker=beat.worker, **values))
            conn.execute(
                sa.delete(DAEMONS).where(
                    DAEMONS.c.last_seen_at < beat.last_seen_at - FORGET_AFTER, DAEMONS.c.worker != beat.worker
                )
            )

    def daemons(self) -> list[DaemonBeat]:
        """Every daemon seen in the last week, the most recently seen first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(DAEMONS).order_by(DAEMONS.c.last_seen_at.desc())).mappings().all()
        return [DaemonBeat(**dict(r)) for r in rows]

    # -- API tokens and console sessions -----------------------------------------------------------
    #
    # The HTTP API's bearer tokens (created with a role and an optional expiry, found by their hash,
    # revoked by name) and the console's sessions opened with them.

    def add_token(
        self, name: str, role: str, token_hash: str, now: datetime, expires_at: datetime | None = None
    ) -> bool:
        """False when a token of that name exists (revoked ones too: names stay unique for audit)."""
        with self.engine.begin() as conn:
            if conn.scalar(sa.select(API_TOKENS.c.name).where(API_TOKENS.c.name == name)) is not None:
                return False
            conn.execute(
                sa.insert(API_TOKENS).values(
                    name=name, role=role, token_hash=token_hash, created_at=now, expires_at=expires_at
                )
            )
        return True

    def token_by_hash(self, token_hash: str, now: datetime) -> TokenRecord | None:
        """The live token with this hash; None if unknown, revoked or expired."""
        with self.engine.connect() as conn:
            query = sa.select(API_TOKENS).where(API_TOKENS.c.token_hash == token_hash, *_live(now))
            row = conn.execute(query).mappings().first()
        return _record(row) if row is not None else None

    # -- console sessions ----------------------------------------------------------------------

    def start_session(self, id_hash: str, token_name: str, now: datetime, expires_at: datetime) -> None:
        """A console login; sessions ended or expired for a day are cleared on the way."""
        s = CONSOLE_SESSIONS.c
        with self.engine.begin() as conn:
            conn.execute(sa.delete(CONSOLE_SESSIONS).where(s.expires_at < now - timedelta(days=1)))
            conn.execute(sa.delete(CONSOLE_SESSIONS).where(s.ended_at < now - timedelta(days=1)))
            conn.execute(
                sa.insert(CONSOLE_SESSIONS).values(
                    id_hash=id_hash, token_name=token_name, created_at=now, expires_at=expires_at
                )
            )

    def session_token(self, id_hash: str, now: datetime) -> TokenRecord | None:
        """The token a live session was opened with: the session not ended nor expired, the token
        neither revoked nor expired (revoking a token ends its sessions at once)."""
        s = CONSOLE_SESSIONS.c
        query = (
            sa.select(API_TOKENS)
            .join(CONSOLE_SESSIONS, s.token_name == API_TOKENS.c.name)
            .where(s.id_hash == id_hash, s.ended_at.is_(None), s.expires_at > now, *_live(now))
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _record(row) if row is not None else None

    def end_session(self, id_hash: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(CONSOLE_SESSIONS)
                .where(CONSOLE_SESSIONS.c.id_hash == id_hash, CONSOLE_SESSIONS.c.ended_at.is_(None))
                .values(ended_at=now)
            )

    def touch_token(self, name: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(API_TOKENS).where(API_TOKENS.c.name == name).values(last_used_at=now))

    def revoke_token(self, name: str, now: datetime) -> bool:
        c = API_TOKENS.c
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(API_TOKENS).where(c.name == name, c.revoked_at.is_(None)).values(revoked_at=now)
            )
        return result.rowcount == 1

    def tokens(self) -> list[TokenRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(API_TOKENS).order_by(API_TOKENS.c.created_at)).mappings().all()
        return [_record(r) for r in rows]


def _imported(order: NewOrder) -> str:
    if not order.invoices:
        return "imported"
    numbers = ", ".join(str(body["invoiceNumber"]) for body in order.invoices)
    return (
        f"imported with invoice {numbers}"
        if len(order.invoices) == 1
        else f"imported with invoices {numbers}"
    )
