"""What every command shares: settings from the --config option, consoles, friendly errors."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from orchestrator.database import DatabaseError
from orchestrator.importer import InputChanged
from orchestrator.operations import OperationError
from orchestrator.settings import ConfigurationError, Settings, load_settings

__all__ = [
    "ConfigurationError",
    "Context",
    "OperationError",
    "err",
    "friendly_errors",
    "json_file",
    "out",
    "progress",
    "repository_for",
    "step_until_settled",
    "tracking_file",
]

out = Console(soft_wrap=False)
err = Console(stderr=True)


class Context:
    def __init__(self, config: Path | None) -> None:
        self.config = config

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(self.config, **{k: v for k, v in overrides.items() if v is not None})


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Expected failures become one clear line and a non-zero exit, not a traceback."""
    try:
        yield
    except (ConfigurationError, DatabaseError, InputChanged, OperationError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def repository_for(settings: Settings) -> Any:
    from orchestrator.storage import open_repository

    return open_repository(settings)


def json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OperationError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise OperationError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def tracking_file(file: str, repository: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every line checked (JSON, fields, known order) before anything is attached."""
    from orchestrator.operations import tracking_problems

    lines = (
        sys.stdin.read().splitlines() if file == "-" else Path(file).read_text(encoding="utf-8").splitlines()
    )
    updates, problems = [], []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: (line): not valid JSON: {exc.msg}")
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("orderId"), str):
            problems.append(f"line {number}: orderId: is required")
            continue
        problems += [f"line {number}: {p}" for p in tracking_problems(entry)]
        if repository.find(entry["orderId"]) is None:
            problems.append(f"line {number}: orderId: no order {entry['orderId']!r}")
        updates.append((entry["orderId"], entry))
    if problems:
        raise OperationError("nothing attached:\n" + "\n".join(problems))
    return updates


def step_until_settled(settings: Settings, repository: Any, order_id: str, until: Any = None) -> Any:
    """Step one order a few times now (an open intent is reconciled first, then the call is sent)."""
    from orchestrator.wiring import step_order_now

    row = None
    for _ in range(3):
        row = asyncio.run(step_order_now(settings, repository, order_id))
        if row is None or row.state in ("canceled", "failed") or row.next_run_at is None:
            break
        if until is not None and until(row):
            break
        if row.tracking is not None and row.tracking_sent_at is not None and until is None:
            break
    return row


def progress(items: list[Any], label: str) -> Any:
    """Iterate with a progress bar when the output is a terminal and the job is long."""
    if len(items) < 200 or not err.is_terminal:
        return items
    from rich.progress import track as progress_track

    return progress_track(items, description=label, console=err)
