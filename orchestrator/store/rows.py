"""`OrderRow`: the engine's working copy of one `orders` row.

A plain mutable object rather than the sqlmodel class: the state machine writes its `state`
attribute, and steps for hundreds of orders are built and saved per second, so it must be cheap.
Only the store turns it into SQL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from orchestrator.config.account_tables import DEFAULT_ACCOUNT
from orchestrator.errors import OperationError
from states import invoices, rules


@dataclass(slots=True)
class OrderRow:
    id: int
    order_id: str
    affiliate_id: str
    marketplace_order_id: str
    sales_channel: str | None
    state: str
    failed_from: str | None
    place_body: dict[str, Any]
    value: int
    # `states.invoices` entries: every Output and Input invoice, sent or waiting, with its tracking
    invoices: list[dict[str, Any]] | None
    invoice_number: str | None  # the first invoice's number (an indexed column: `show NF-1`)
    cancel_reason: str | None
    canceled_from: str | None
    needs_attention: str | None
    attempts: int
    last_error: str | None
    last_error_code: str | None
    last_http_status: int | None
    wait_reason: str | None
    vtex_status: str | None
    vtex_status_at: datetime | None
    vtex_status_since: datetime | None
    requests_window_at: datetime | None
    requests_in_window: int
    intent: str | None
    intent_attempt: int | None
    intent_at: datetime | None
    next_run_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    version: int
    authorized_at: datetime | None
    created_at: datetime
    updated_at: datetime
    state_changed_at: datetime
    account: str = DEFAULT_ACCOUNT  # its configured VTEX account (`orchestrator.config.account_tables`)
    wait_code: str | None = None  # `states.Waiting`: it waits on its account (a pause)
    # An Orders Feed (or Hook) event was applied then and no step has taken it in since
    vtex_event_at: datetime | None = None
    # The order's value as VTEX last showed it (Get order's `value`): invoices must reach it, and
    # it may differ from our marketplacePaymentValue (price divergence, order changes).
    vtex_value: int | None = None
    # What VTEX took, summed for reports and metrics (kept in step with `invoices`).
    invoiced_value: int = 0
    invoices_sent: int = 0
    returned_value: int = 0
    returns_sent: int = 0

    @classmethod
    def from_mapping(cls, row: Any) -> OrderRow:
        return cls(**{name: row[name] for name in COLUMNS})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ref(self) -> str:
        """How commands and messages name it: `ABC-1`, or `acme-br/ABC-1` outside the default
        account (the same order id may exist in several accounts)."""
        return ref_of(self.account, self.order_id)

    @property
    def tracking_number(self) -> str | None:
        """The tracking number of the order's latest invoice that has one."""
        found = [e["tracking"]["trackingNumber"] for e in self.invoices or () if e.get("tracking")]
        return found[-1] if found else None

    @property
    def target_value(self) -> int:
        """What the Output invoices must add up to: VTEX's value once seen, else ours."""
        return self.vtex_value if self.vtex_value is not None else self.value

    def mark_sent(self, sends: str, at: datetime) -> str | None:
        """VTEX took what a write sends (`Step.sends`): the waiting entry an open intent of it
        targets is recorded as sent. Returns its invoice number (None: nothing was waiting, as
        when VTEX's view already showed it and the entry was marked then)."""
        entries = self.invoices or []
        if sends == invoices.TRACKING:
            target = invoices.tracking_waiting(entries)
            if target is None:
                return None
            target["tracking_sent_at"] = at.isoformat()
            self.invoices = list(entries)  # a new list: the store sees the column changed
        else:
            target = invoices.waiting(entries, sends)
            if target is None:
                return None
            self._sent(target, at)
        return str(target["number"])

    def mark_present(self, numbers: set[str], at: datetime) -> list[str]:
        """Entries VTEX shows in its packages without our having seen its answer (a reconcile, a
        sweep): recorded as sent. Returns their numbers."""
        found = [e for e in self.invoices or () if e.get("sent_at") is None and e["number"] in numbers]
        for e in found:
            self._sent(e, at)
        return [e["number"] for e in found]

    def _sent(self, target: dict[str, Any], at: datetime) -> None:
        target["sent_at"] = at.isoformat()
        if target.get("tracking"):
            target["tracking_sent_at"] = at.isoformat()  # it went inside the invoice
        entries = list(self.invoices or ())
        self.invoices = entries  # a new list: the store sees the column changed
        for name, value in invoices.sums(entries).items():
            setattr(self, name, value)

    # -- what the state table's rules ask of our side (`states.Facts`) -------------------------

    @property
    def items(self) -> dict[str, int]:
        return rules.item_quantities(self.place_body.get("items"))

    @property
    def output_numbers(self) -> list[str]:
        return [e["number"] for e in invoices.of_type(self.invoices, invoices.OUTPUT)]

    @property
    def sent_output_numbers(self) -> list[str]:
        return [e["number"] for e in invoices.of_type(self.invoices, invoices.OUTPUT) if e.get("sent_at")]

    @property
    def invoice_sent(self) -> bool:
        return self.invoices_sent > 0

    @property
    def invoice_waiting(self) -> bool:
        return invoices.waiting(self.invoices, invoices.OUTPUT) is not None

    @property
    def return_waiting(self) -> bool:
        return invoices.waiting(self.invoices, invoices.INPUT) is not None

    @property
    def tracking_sent(self) -> bool:
        """VTEX got the tracking number of every invoice that has one (and there is one)."""
        tracked = [e for e in self.invoices or () if e.get("tracking")]
        return bool(tracked) and all(e.get("tracking_sent_at") for e in tracked)

    @property
    def tracking_waiting(self) -> bool:
        return invoices.tracking_waiting(self.invoices) is not None

    @property
    def next_invoice(self) -> dict[str, Any] | None:
        return invoices.waiting(self.invoices, invoices.OUTPUT)

    @property
    def next_return(self) -> dict[str, Any] | None:
        return invoices.waiting(self.invoices, invoices.INPUT)

    @property
    def next_tracking(self) -> dict[str, Any] | None:
        return invoices.tracking_waiting(self.invoices)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(OrderRow))

# What a step may change. Everything else (identity, body) is written only by import and operator
# commands, so a step's save can never undo an operator's edit (operator writes
# need the order unleased and its version unchanged, and every step runs under a lease).
STEP_COLUMNS: tuple[str, ...] = (
    "state",
    "failed_from",
    "cancel_reason",
    "canceled_from",
    "needs_attention",
    "invoices",  # a step marks an entry sent; only import and operators add entries
    "invoiced_value",
    "invoices_sent",
    "returned_value",
    "returns_sent",
    "vtex_value",
    "attempts",
    "last_error",
    "last_error_code",
    "last_http_status",
    "wait_reason",
    "wait_code",
    "vtex_status",
    "vtex_status_at",
    "vtex_status_since",
    "requests_window_at",
    "requests_in_window",
    "intent",
    "intent_attempt",
    "intent_at",
    "next_run_at",
    "lease_owner",
    "lease_expires_at",
    "authorized_at",
    "updated_at",
    "state_changed_at",
    "vtex_event_at",  # a step clears it once it took the event in; the inbox writes it unleased only
)


class AmbiguousOrder(OperationError):
    """An order id that several accounts hold, given without saying which."""

    def __init__(self, ref: str, matches: list[str]) -> None:
        super().__init__(f"{ref} exists in several accounts: name one of {', '.join(matches)}")
        self.matches = matches

    def details(self) -> dict[str, Any]:
        return {"matches": self.matches}


def ref_of(account: str, order_id: str) -> str:
    """The one rule for naming an order: its id in the default account, `account/id` elsewhere."""
    return order_id if account == DEFAULT_ACCOUNT else f"{account}/{order_id}"


def split_ref(ref: str) -> tuple[str | None, str]:
    """`acme-br/ABC-1` -> ("acme-br", "ABC-1"); `ABC-1` -> (None, "ABC-1"). VTEX order ids never
    hold a `/`, so the first one separates the account."""
    account, sep, order_id = ref.partition("/")
    return (account, order_id) if sep else (None, ref)


def ref_matches(ref: str, columns: Any) -> sa.ColumnElement[bool]:
    """The SQL condition for the order(s) `ref` names (`columns` is the orders table's `.c`)."""
    account, order_id = split_ref(ref)
    if account is None:
        return columns.order_id == order_id  # type: ignore[no-any-return]
    return sa.and_(columns.account == account, columns.order_id == order_id)


def the_one(ref: str, rows: list[OrderRow]) -> OrderRow | None:
    """The order `ref` names, or None; several accounts holding it is a question for the user."""
    if len(rows) > 1:
        raise AmbiguousOrder(ref, sorted(r.ref for r in rows))
    return rows[0] if rows else None
