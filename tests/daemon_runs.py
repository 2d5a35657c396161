"""Running the real daemon in-process against the sandbox, for as long as a scenario needs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.engine.daemon import Daemon
from orchestrator.intake.importer import import_lines
from orchestrator.runner import run_daemon
from orchestrator.store.store import Store


def run_until(
    settings: Settings,
    store: Store,
    done: Callable[[], bool],
    *,
    timeout: float = 60.0,
    during: Callable[[float], Any] | None = None,
) -> Daemon:
    """Run the daemon until `done()` (checked every 50 ms) or `timeout`, then stop it cleanly.

    `during(elapsed)` is called on each check, for scenarios that change the world mid-run."""

    async def scenario() -> Daemon:
        holder: dict[str, Daemon] = {}
        task = asyncio.create_task(
            run_daemon(settings, store, install_signals=False, on_ready=lambda d: holder.update(d=d))
        )
        started = time.monotonic()
        while "d" not in holder:
            await asyncio.sleep(0.01)
        while not done() and time.monotonic() - started < timeout:
            if during is not None:
                during(time.monotonic() - started)
            await asyncio.sleep(0.05)
        holder["d"].request_stop()
        return await task

    return asyncio.run(asyncio.wait_for(scenario(), timeout + 60))


def in_state(store: Store, order_id: str, state: str) -> bool:
    """Whether the order exists and is in `state` (a `run_until` condition)."""
    row = store.find(order_id)
    return row is not None and row.state == state


def states(store: Store) -> dict[str, int]:
    return {c.state: c.count for c in store.state_counts()}


def import_once_listening(
    store: Store, key: str, lines: list[str], column: str = "configured_at"
) -> Callable[[float], None]:
    """A `during` that imports `lines` once the account's reader has set the feed (or the Hook)
    up: orders in flight when the feed is first configured look at VTEX once (VTEX queues only
    later changes), which is the start-up, not the steady state these tests measure."""
    done: list[bool] = []

    def step(_elapsed: float) -> None:
        seen = store.feed(key)
        if not done and seen is not None and seen[column] is not None:
            import_lines(lines, store, utcnow())
            done.append(True)

    return step
