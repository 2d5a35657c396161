"""Group commit: the durable writes of many concurrent steps, batched into few transactions.

Each step still follows the durable protocol one order at a time (its intent is committed before
its call, its outcome after), it simply waits for a shared commit. While one batch is being
written, the next one accumulates, so the number of transactions stays small under load and the
wait stays short when idle. All database work runs on the database thread (`store.thread`), so the
event loop never blocks on a disk write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from orchestrator.store.events import Event
from orchestrator.store.rows import OrderRow
from orchestrator.store.thread import DatabaseThread


class BatchWriter:
    def __init__(self, database: DatabaseThread, owner: str) -> None:
        self._db = database
        self._owner = owner
        self._intents: list[tuple[OrderRow, asyncio.Future[bool]]] = []
        self._saves: list[tuple[OrderRow, list[Event], asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Told the outcome of every commit (None: it worked), so the daemon's probes see outages.
        self.on_commit: Callable[[Exception | None], None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Start writing; the task is the daemon's to watch (it must not end while the daemon runs)."""
        self._task = asyncio.create_task(self._run(), name="batch-writer")
        return self._task

    async def write_intent(self, row: OrderRow) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._intents.append((row, future))
        self._wake.set()
        return await future

    async def save(self, row: OrderRow, events: list[Event]) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._saves.append((row, events, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        intents, self._intents = self._intents, []
        saves, self._saves = self._saves, []
        if not intents and not saves:
            return
        try:
            intent_ok, save_ok = await self._db.run(
                self._db.store.commit,
                [row for row, _ in intents],
                [(row, events) for row, events, _ in saves],
                self._owner,
            )
        except Exception as exc:  # the database is unavailable: every waiting step learns it
            if self.on_commit is not None:
                self.on_commit(exc)
            for _row, future in intents:
                if not future.done():
                    future.set_exception(exc)
            for _row, _events, future in saves:
                if not future.done():
                    future.set_exception(exc)
            return
        if self.on_commit is not None:
            self.on_commit(None)
        for (_row, future), ok in zip(intents, intent_ok, strict=True):
            if not future.done():
                future.set_result(ok)
        for (_row, _events, future), ok in zip(saves, save_ok, strict=True):
            if not future.done():
                future.set_result(ok)

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
