"""Finding orders: by any id an operator is quoted, and listed with filters, a sort and keyset
pages (`orchestrator list`, `show`).

Keyset, not OFFSET: page 5,000 of a million orders costs what page 1 costs, and a page never skips
or repeats an order because orders changed between two pages' reads (an order whose sort key
changed may move, which is what "sorted by last change" means). The cursor is opaque to the user:
the sort it belongs to, the last row's sort value and its primary key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.errors import UsageError
from orchestrator.store.rows import OrderRow
from states import State

# name -> (column, descending by default). Each is served by an index: the primary key (import
# order), (state, state_changed_at) when states are given, the unique order id.
SORTS = {
    "created": ("id", True),
    "changed": ("state_changed_at", True),
    "order-id": ("order_id", False),
}


class CursorError(UsageError, ValueError):
    """An --after value that is not a cursor this sort printed."""


@dataclass(frozen=True)
class OrderFilter:
    states: Sequence[str] = ()
    affiliate: str | None = None
    older_than: timedelta | None = None  # in its state for longer than this
    error_code: str | None = None  # the last error's code (FMT007, OMS003, 401, ...)
    waiting: str | None = None  # words in the wait reason, or needs-attention's reason
    account: str | None = None  # the configured account's name
    partly_invoiced: bool = False  # VTEX took some of its invoices, and it is not invoiced yet
    returned: bool = False  # VTEX took a return (an Input invoice) of it
    # Part of an id (order, marketplace order, first invoice) or of the customer's name, any case:
    # what an operator on the phone with a customer has. A scan, not an index seek: it is bounded
    # by the page's limit and meant for a person's query, not a script's.
    text: str | None = None

    def matches(self, row: OrderRow, now: datetime) -> bool:
        """The same filter in Python, for the handful of orders a lookup by id found."""
        waits = f"{row.wait_reason or ''} {row.needs_attention or ''}".lower()
        searched = " ".join(
            (row.order_id, row.marketplace_order_id, row.invoice_number or "", customer_name(row.place_body))
        ).lower()
        return (
            (not self.states or row.state in self.states)
            and (not self.affiliate or row.affiliate_id == self.affiliate)
            and (self.older_than is None or row.state_changed_at < now - self.older_than)
            and (not self.error_code or row.last_error_code == self.error_code)
            and (not self.waiting or self.waiting.lower() in waits)
            and (not self.account or row.account == self.account)
            and (not self.partly_invoiced or (row.invoices_sent > 0 and row.state != "invoiced"))
            and (not self.returned or row.returns_sent > 0)
            and (not self.text or self.text.lower() in searched)
        )


def customer_name(place_body: dict[str, object] | None) -> str:
    """The customer's first and last name as the order was imported ("" when absent)."""
    profile = (place_body or {}).get("clientProfileData")
    if not isinstance(profile, dict):
        return ""
    return " ".join(str(profile.get(k) or "") for k in ("firstName", "lastName")).strip()


EVERY_ORDER = OrderFilter()  # no filter


@dataclass(frozen=True)
class Page:
    rows: list[OrderRow]
    next_cursor: str | None  # give it to --after for the next page; None on the last one


def parse_sort(text: str) -> tuple[str, bool]:
    """`changed` (ascending) or `-changed` (descending) -> (sort name, descending), the convention
    of most listing APIs; `list` defaults to `-created`, the newest first."""
    name = text.removeprefix("-").removeprefix("+")
    if name not in SORTS:
        raise ValueError(f"unknown sort {text!r} (one of {', '.join(SORTS)}; prefix - for descending)")
    return name, text.startswith("-")


def parse_states(values: Sequence[str]) -> list[str]:
    """States named one by one or comma-separated; an unknown one is refused (a typo would
    otherwise list nothing, as if no order were in that state)."""
    known = [str(s) for s in State]
    chosen = [part.strip() for text in values for part in text.split(",") if part.strip()]
    for state in chosen:
        if state not in known:
            raise ValueError(f"unknown state {state!r} (one of {', '.join(known)})")
    return chosen


def encode_cursor(sort: str, value: object, pk: int) -> str:
    raw = json.dumps([sort, value.isoformat() if isinstance(value, datetime) else value, pk])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(sort: str, cursor: str) -> tuple[object, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, value, pk = json.loads(raw)
        if name != sort or not isinstance(pk, int):
            raise ValueError
    except (ValueError, TypeError, json.JSONDecodeError):
        raise CursorError(f"--after: not a cursor of a listing sorted by {sort}") from None
    if sort == "changed":
        try:
            return datetime.fromisoformat(value), pk
        except (TypeError, ValueError):
            raise CursorError("--after: not a cursor of a listing sorted by changed") from None
    return value, pk
