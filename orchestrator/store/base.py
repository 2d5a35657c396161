"""What every part of the store shares: the SQLAlchemy engine, the dialect's hooks, and the clock
leases are compared with."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from orchestrator.store.dialects import DialectHooks

CHUNK = 500  # rows per IN (...) list and per executemany batch


def batched(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class StoreBase:
    def __init__(self, engine: Engine, hooks: DialectHooks) -> None:
        self.engine = engine
        self.hooks = hooks

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
