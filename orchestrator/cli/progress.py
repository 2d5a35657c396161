"""Progress on the terminal for long commands: importing a large file, `run --until-done`.

Shown on standard error, only when it is a terminal (or when asked with --progress), so scripts
and log collectors get the plain output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.progress_bar import ProgressBar

from orchestrator.config.settings import Settings
from orchestrator.store.errors import is_database_error
from orchestrator.store.store import Store
from states import State

SETTLED = (str(State.INVOICED), str(State.CANCELED), str(State.FAILED))


@contextmanager
def import_progress(console: Console, enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A (stage, done, total) callback drawing one bar per stage, or None when not shown."""
    if not enabled:
        yield None
        return
    bars = Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    with bars:
        yield update


async def run_with_progress(console: Console, store: Store, daemon_run: Any) -> Any:
    """Run the daemon while a live view shows how many orders are settled; logs scroll above it."""
    task = asyncio.ensure_future(daemon_run)
    counts: dict[str, int] = {}

    async def look() -> None:
        nonlocal counts
        try:
            counts = {c.state: c.count for c in await asyncio.to_thread(store.state_counts)}
        except Exception as exc:  # the daemon rides through a database that is away; so does the view
            if not is_database_error(exc):
                raise

    with Live(console=console, refresh_per_second=4, redirect_stderr=True) as live:
        while not task.done():
            await look()
            live.update(_view(counts))
            await asyncio.wait({task}, timeout=1.0)
        await look()
        live.update(_view(counts))
    return task.result()


def _view(counts: dict[str, int]) -> Group:
    total = sum(counts.values()) or 1
    settled = sum(counts.get(s, 0) for s in SETTLED)
    detail = ", ".join(f"{state} {n}" for state, n in counts.items() if n)
    return Group(
        ProgressBar(total=total, completed=settled, width=50), f"{settled}/{total} settled: {detail}"
    )


def show_progress(flag: bool | None, console: Console) -> bool:
    return console.is_terminal if flag is None else flag


__all__ = ["Settings", "import_progress", "run_with_progress", "show_progress"]
