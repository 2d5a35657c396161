"""The store's work off the event loop: one thread runs every call (SQLite has a single writer,
and one thread keeps the order of writes the order they were asked in)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orchestrator.store.store import Store


class DatabaseThread:
    """Runs store calls on a dedicated thread (one thread: SQLite has a single writer)."""

    def __init__(self, store: Store, threads: int = 1) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db")

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
