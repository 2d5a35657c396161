"""What the store's order writes take and give: an order to import, a replacement of one VTEX
never accepted, a conflict with a stored order, and the import's outcome (the writes themselves
are `Store`'s, in `store.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.config.account_tables import DEFAULT_ACCOUNT
from orchestrator.store.events import Event
from orchestrator.store.rows import OrderRow
from states import invoices


@dataclass(frozen=True)
class NewOrder:
    order_id: str
    affiliate_id: str
    marketplace_order_id: str
    sales_channel: str | None
    place_body: dict[str, Any]
    value: int
    # Its invoices as the import gave them (validated bodies, values in cents), in order.
    invoices: tuple[dict[str, Any], ...] = ()
    line: int = 0  # where the import read it, for messages
    account: str = DEFAULT_ACCOUNT

    def invoice_entries(self, now: datetime) -> list[dict[str, Any]] | None:
        """The invoices as the order's row keeps them (`states.invoices` entries), or None."""
        stamp = now.isoformat()
        return [invoices.entry(body, stamp) for body in self.invoices] or None

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


MAX_CONFLICTS = 1000
