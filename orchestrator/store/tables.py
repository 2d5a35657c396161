"""The two tables: `orders` (one row per imported order, its whole durable state) and
`order_events` (append-only history). The engine never keeps anything only in memory: whatever a
step needs to decide is a column here.

Scheduling lives in `next_run_at`: a claim sets it to the lease expiry, so an order whose worker
died becomes due again by itself, and the due-order scan is one range read of one index.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from orchestrator.clock import UtcDateTime
from orchestrator.config.account_tables import DEFAULT_ACCOUNT

# Deterministic constraint names, so Alembic migrations and the models agree on every backend.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# SQLite only auto-increments an INTEGER PRIMARY KEY; elsewhere history ids get 64 bits. SQLite's
# INTEGER is 64 bits anyway, so 64-bit columns are declared INTEGER there.
_EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_INT64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UtcDateTime, nullable=nullable, index=index)


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        # Unique per account: two VTEX accounts may each have an order ABC-100001.
        sa.UniqueConstraint("account", "affiliate_id", "marketplace_order_id", name="uq_orders_identity"),
        sa.UniqueConstraint("account", "order_id", name="uq_orders_order_id"),
        # Only orders that can still move are scheduled; finished ones drop out of this index.
        sa.Index(
            "ix_orders_next_run_at",
            "next_run_at",
            sqlite_where=sa.text("next_run_at IS NOT NULL"),
            postgresql_where=sa.text("next_run_at IS NOT NULL"),
        ),
        # Each account's lane claims its own due orders: one range read per account.
        sa.Index(
            "ix_orders_account_next_run_at",
            "account",
            "next_run_at",
            sqlite_where=sa.text("next_run_at IS NOT NULL"),
            postgresql_where=sa.text("next_run_at IS NOT NULL"),
        ),
        sa.Index("ix_orders_state_since", "state", "state_changed_at"),
        # Counting per state scans this narrow index; the oldest per state is a seek in the one above.
        sa.Index("ix_orders_state", "state"),
        sa.Index("ix_orders_account_state", "account", "state"),  # per-account counts
        # Calls whose outcome is unknown: few at any time, found at once by `status --stuck`.
        sa.Index(
            "ix_orders_open_intent",
            "intent_at",
            sqlite_where=sa.text("intent IS NOT NULL"),
            postgresql_where=sa.text("intent IS NOT NULL"),
        ),
        # The ids store staff and carriers quote: `list`/`show` find an order by any of them.
        sa.Index("ix_orders_marketplace_order_id", "marketplace_order_id"),
        sa.Index("ix_orders_order_id", "order_id"),  # whichever account holds it
        sa.Index(
            "ix_orders_invoice_number",
            "invoice_number",
            sqlite_where=sa.text("invoice_number IS NOT NULL"),
            postgresql_where=sa.text("invoice_number IS NOT NULL"),
        ),
        # Orders with a return: few, counted by `status` without reading the rest.
        sa.Index(
            "ix_orders_returns_sent",
            "returns_sent",
            sqlite_where=sa.text("returns_sent > 0"),
            postgresql_where=sa.text("returns_sent > 0"),
        ),
        # Orders that stopped and need a person (a refused tracking update, the request guard).
        sa.Index(
            "ix_orders_needs_attention",
            "needs_attention",
            sqlite_where=sa.text("needs_attention IS NOT NULL"),
            postgresql_where=sa.text("needs_attention IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(
        default=DEFAULT_ACCOUNT, max_length=40, sa_column_kwargs={"server_default": DEFAULT_ACCOUNT}
    )
    order_id: str = Field(max_length=120, description="VTEX orderId: {affiliateId}-{marketplaceOrderId}")
    affiliate_id: str = Field(max_length=3)
    marketplace_order_id: str = Field(max_length=100)
    sales_channel: str | None = Field(default=None, max_length=20, description="VTEX `sc` query parameter")
    state: str = Field(max_length=32)
    failed_from: str | None = Field(default=None, max_length=32)

    place_body: dict[str, Any] = Field(sa_type=sa.JSON, nullable=False)
    value: int = Field(sa_type=_INT64, description="marketplacePaymentValue, in cents")
    # Every invoice of the order, Output and Input, sent or waiting (`states.invoices` entries).
    invoices: list[dict[str, Any]] | None = Field(default=None, sa_type=sa.JSON)
    invoice_number: str | None = Field(default=None, max_length=100, description="the first invoice's")
    vtex_value: int | None = Field(default=None, sa_type=_INT64, description="VTEX's value, as last seen")
    # What VTEX took, summed from `invoices` (reports and metrics read these, never the JSON).
    invoiced_value: int = Field(default=0, sa_type=_INT64, sa_column_kwargs={"server_default": "0"})
    invoices_sent: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    returned_value: int = Field(default=0, sa_type=_INT64, sa_column_kwargs={"server_default": "0"})
    returns_sent: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    cancel_reason: str | None = Field(default=None, max_length=500)
    canceled_from: str | None = Field(
        default=None, max_length=32, description="state to go back to if denied"
    )
    needs_attention: str | None = Field(
        default=None, max_length=32, description="why it stopped for a person"
    )

    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    last_error_code: str | None = Field(default=None, max_length=64)
    last_http_status: int | None = None
    wait_reason: str | None = Field(default=None, max_length=300)
    wait_code: str | None = Field(
        default=None, max_length=32, description="states.Waiting, when it waits on its account"
    )
    vtex_status: str | None = Field(default=None, max_length=64)
    vtex_status_at: datetime | None = _time()
    vtex_status_since: datetime | None = _time()  # since when VTEX shows vtex_status
    # When the last Orders Feed event about the order was applied (vtex_status then came from it).
    vtex_event_at: datetime | None = _time()
    # The per-order request guard: requests made in the hour that began at requests_window_at.
    requests_window_at: datetime | None = _time()
    requests_in_window: int = Field(default=0, sa_column_kwargs={"server_default": "0"})

    intent: str | None = Field(default=None, max_length=32)
    intent_attempt: int | None = None
    intent_at: datetime | None = _time()

    next_run_at: datetime | None = _time()
    lease_owner: str | None = Field(default=None, max_length=120)
    lease_expires_at: datetime | None = _time()
    version: int = 0

    authorized_at: datetime | None = _time()
    created_at: datetime = _time(nullable=False)
    updated_at: datetime = _time(nullable=False)
    state_changed_at: datetime = _time(nullable=False)


class OrderEvent(SQLModel, table=True):
    __tablename__ = "order_events"
    __table_args__ = (sa.Index("ix_order_events_order", "order_pk", "id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=_EVENT_ID)
    order_pk: int = Field(foreign_key="orders.id", nullable=False)
    at: datetime = _time(nullable=False)
    kind: str = Field(max_length=16, description="import, transition, call, reconcile, error, note")
    action: str | None = Field(default=None, max_length=32)
    from_state: str | None = Field(default=None, max_length=32)
    to_state: str | None = Field(default=None, max_length=32)
    attempt: int | None = None
    http_status: int | None = None
    duration_ms: float | None = None
    error_code: str | None = Field(default=None, max_length=64)
    message: str | None = Field(default=None, sa_type=sa.Text)
    worker: str | None = Field(default=None, max_length=120)
    # Structured detail beside the message, e.g. the body an order had before it was replaced.
    detail: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)


ORDERS: sa.Table = Order.__table__  # type: ignore[attr-defined]
EVENTS: sa.Table = OrderEvent.__table__  # type: ignore[attr-defined]


class VtexAccount(SQLModel, table=True):
    """Account-wide state shared by every daemon: a pause of all work (e.g. rejected credentials),
    the request budget and the pause after a 429."""

    __tablename__ = "vtex_accounts"

    account: str = Field(primary_key=True, max_length=200)
    paused_until: datetime | None = _time()
    pause_reason: str | None = Field(default=None, max_length=300)
    paused_since: datetime | None = _time()
    # The request budget as a token bucket every daemon draws from, and a 429 pause they all honour.
    budget_tokens: float | None = None
    budget_refilled_at: datetime | None = _time()
    throttled_until: datetime | None = _time()
    # The recovery after a 429 (`orchestrator.vtex.recovery`), shared by every daemon: 429s in a
    # row (each lengthens the pause), when the one probe after a pause went out, and when the
    # ramp back to the full budget began. A throttle is over once all three are clear.
    throttle_strikes: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    probe_at: datetime | None = _time()
    ramp_from: datetime | None = _time()
    updated_at: datetime = _time(nullable=False)


ACCOUNTS: sa.Table = VtexAccount.__table__  # type: ignore[attr-defined]


class VtexPermission(SQLModel, table=True):
    """A License Manager resource VTEX refused the account's calls for (403): the calls needing
    it pause until `until`, then one probes (`orchestrator.vtex.pauses`). Deleted once VTEX takes
    such a call again."""

    __tablename__ = "vtex_permissions"

    account: str = Field(primary_key=True, max_length=200)
    resource: str = Field(primary_key=True, max_length=120)
    operation: str = Field(max_length=32)  # the call VTEX refused
    message: str | None = Field(default=None, max_length=300)  # VTEX's words
    since: datetime = _time(nullable=False)
    until: datetime = _time(nullable=False)
    updated_at: datetime = _time(nullable=False)


PERMISSIONS: sa.Table = VtexPermission.__table__  # type: ignore[attr-defined]


class VtexEvent(SQLModel, table=True):
    """The Orders Feed's inbox: each item VTEX handed out, once per eventId (the feed delivers
    some twice), kept until applied to its order and for the feed's retention after that."""

    __tablename__ = "vtex_events"
    __table_args__ = (
        sa.UniqueConstraint("account", "event_id", name="uq_vtex_events_account_event"),
        sa.Index("ix_vtex_events_order", "account", "order_id"),
        sa.Index("ix_vtex_events_received", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_INT64)
    account: str = Field(max_length=200)
    event_id: str = Field(max_length=100)
    order_id: str = Field(max_length=120)
    state: str = Field(max_length=64)
    last_state: str | None = Field(default=None, max_length=64)
    current_change: datetime | None = _time()  # VTEX's time of the change
    received_at: datetime = _time(nullable=False)
    applied_at: datetime | None = _time()  # None: its order was busy; applied on the next read


VTEX_EVENTS: sa.Table = VtexEvent.__table__  # type: ignore[attr-defined]


class VtexFeed(SQLModel, table=True):
    """An account's Orders Feed: the one daemon that reads it (a lease), and what was last seen."""

    __tablename__ = "vtex_feeds"

    account: str = Field(primary_key=True, max_length=200)
    owner: str | None = Field(default=None, max_length=120)
    lease_until: datetime | None = _time()
    configured_at: datetime | None = _time()  # the configuration was last checked (and set) then
    read_at: datetime | None = _time()
    event_at: datetime | None = _time()  # the last item the feed handed out
    problem: str | None = Field(default=None, max_length=300)  # why the feed is not read (polling)
    declined: str | None = Field(default=None, max_length=300)  # `auto` polls by choice: why
    hook_configured_at: datetime | None = _time()  # VTEX's Hook was last checked (and set) then
    hook_event_at: datetime | None = _time()  # the last notification VTEX pushed
    hook_problem: str | None = Field(default=None, max_length=300)  # why the Hook is not set
    updated_at: datetime = _time(nullable=False)


FEEDS: sa.Table = VtexFeed.__table__  # type: ignore[attr-defined]


class Daemon(SQLModel, table=True):
    """One row per daemon process, its heartbeat: `status` shows who is running, and says so
    loudly when nobody is."""

    __tablename__ = "daemons"

    worker: str = Field(primary_key=True, max_length=120)
    host: str = Field(max_length=255)
    pid: int
    version: str = Field(max_length=40)
    started_at: datetime = _time(nullable=False)
    last_seen_at: datetime = _time(nullable=False)
    stopped_at: datetime | None = _time()


DAEMONS: sa.Table = Daemon.__table__  # type: ignore[attr-defined]


class ApiToken(SQLModel, table=True):
    """A bearer token of the HTTP API: only its SHA-256 is kept (the token itself is shown once,
    when created); revoking keeps the row, so history that names it stays readable."""

    __tablename__ = "api_tokens"
    __table_args__ = (sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),)

    name: str = Field(primary_key=True, max_length=100)
    role: str = Field(max_length=16)
    token_hash: str = Field(max_length=64)
    created_at: datetime = _time(nullable=False)
    revoked_at: datetime | None = _time()
    last_used_at: datetime | None = _time()
    expires_at: datetime | None = _time()  # None: until revoked


API_TOKENS: sa.Table = ApiToken.__table__  # type: ignore[attr-defined]


class ConsoleSession(SQLModel, table=True):
    """A console login, kept here so that logging out (or revoking the token it was opened with)
    ends it on every `serve` process at once. The cookie holds a random session id; only its
    SHA-256 is kept."""

    __tablename__ = "console_sessions"

    id_hash: str = Field(primary_key=True, max_length=64)
    token_name: str = Field(max_length=100, index=True)
    created_at: datetime = _time(nullable=False)
    expires_at: datetime = _time(nullable=False)
    ended_at: datetime | None = _time()


CONSOLE_SESSIONS: sa.Table = ConsoleSession.__table__  # type: ignore[attr-defined]
