"""`Store`: every read and write of the product's data, in one class for the rest of the code.

Written once in SQLAlchemy Core for SQLite and PostgreSQL (`DialectHooks` carries the rest), in
three parts: `OrderWrites` (the import, claims, the steps' fenced writes, operators' changes),
`AccountState` (pauses and the shared request budget) and `Reports` (what operators read).
"""

from __future__ import annotations

from orchestrator.store.account_state import AccountState
from orchestrator.store.daemons import Heartbeats
from orchestrator.store.listing import Listing
from orchestrator.store.orders import ImportOutcome, NewOrder, OrderWrites
from orchestrator.store.reports import Reports, StateCount, StuckThresholds
from orchestrator.store.tokens import Tokens

__all__ = ["ImportOutcome", "NewOrder", "StateCount", "Store", "StuckThresholds"]


class Store(OrderWrites, AccountState, Reports, Listing, Heartbeats, Tokens):
    """The store of one database: pass it to whatever needs the data."""
