"""What every command shares: settings from the --config option, consoles, one-line messages."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.text import Text

from orchestrator.config.checks import ConfigurationError
from orchestrator.config.settings import Settings, load_settings
from orchestrator.errors import NotFound, OperationError
from orchestrator.redaction import redact

__all__ = [
    "UNBOUNDED",
    "ConfigurationError",
    "Context",
    "NotFound",
    "OperationError",
    "err",
    "err_line",
    "json_file",
    "out",
    "progress",
    "step_until_settled",
    "store_for",
]


class _CommandConsole(Console):
    """On a terminal, its width; piped or redirected, no width at all (unless COLUMNS says one), so
    a table never breaks a word or an id across lines for the script or file that reads it.
    Decided each time something is printed, for the stream in use then (a command run in-process,
    a COLUMNS set after this module was imported), not once at import."""

    def __init__(self, *, stderr: bool) -> None:
        super().__init__(stderr=stderr, soft_wrap=False)
        self._width = None  # rich fixes COLUMNS at creation; here it is read at each print

    @property
    def size(self) -> ConsoleDimensions:
        stream = sys.stderr if self.stderr else sys.stdout
        height = super().size.height
        columns = os.environ.get("COLUMNS", "")
        if columns.isdigit():
            return ConsoleDimensions(int(columns), height)
        if not stream.isatty():
            return ConsoleDimensions(UNBOUNDED, height)
        return super().size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


UNBOUNDED = 100_000  # the width of output piped without COLUMNS: no line is ever wrapped
out = _CommandConsole(stderr=False)
err = _CommandConsole(stderr=True)


class Context:
    def __init__(self, config: Path | None) -> None:
        self.config = config

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(self.config, **{k: v for k, v in overrides.items() if v is not None})

    def logging_settings(self, **overrides: Any) -> Settings:
        """Settings, with logging configured by them: for commands that log (they talk to VTEX).
        Read-only commands skip it: importing structlog alone costs a tenth of a second."""
        settings = self.settings(**overrides)
        from orchestrator import log

        log.configure(settings.log_level, settings.log_format)
        return settings


def err_line(message: str, label: str = "error") -> None:
    """One line on standard error, never wrapped, with nothing a secret could hide in."""
    text = Text.assemble((f"{label}: ", "bold red"), redact(message))
    err.print(text, soft_wrap=True, highlight=False)


def store_for(
    settings: Settings, *, create: bool = False, log: Any = None, patience: float | None = None
) -> Any:
    """The store. Only commands meant to create a database (`import`, `migrate`, `run`, `token
    create`) pass `create=True`; the others fail clearly when there is none where settings point.
    The daemon passes `patience`: it waits out a database that is briefly away."""
    from orchestrator.store.open import open_store

    return open_store(
        settings.database_url,
        pool_size=max(5, settings.concurrency // 16),
        create=create,
        log=log,
        patience=patience,
    )


def json_file(path: Path) -> Any:
    from orchestrator.intake.strict_json import BadJson, load_json

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise OperationError(f"no such file: {path}") from None
    except OSError as exc:
        raise OperationError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return load_json(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise OperationError(f"{path}: not UTF-8 text") from None
    except BadJson as exc:
        raise OperationError(f"{path}: not valid JSON ({exc})") from None


def step_until_settled(settings: Settings, store: Any, order_id: str, until: Any = None) -> Any:
    """Step one order a few times now (an open intent is reconciled first, then the call is sent)."""
    from orchestrator.ops.step_now import step_order_now_once

    row = None
    for _ in range(3):
        row = step_order_now_once(settings, store, order_id)
        if row is None or row.state in ("canceled", "failed") or row.next_run_at is None:
            break
        if until is not None and until(row):
            break
        if until is None and row.tracking_sent:
            break
    return row


def progress(items: list[Any], label: str) -> Any:
    """Iterate with a progress bar when the output is a terminal and the job is long."""
    if len(items) < 200 or not err.is_terminal:
        return items
    from rich.progress import track as progress_track

    return progress_track(items, description=label, console=err)


class Report:
    """What a command prints: lines for people as they happen, or (`--json`) one JSON object at
    the end, `{"results": [...], ...summary}`, with the same facts under camelCase keys."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.results: list[dict[str, Any]] = []

    def line(self, message: str, **facts: Any) -> None:
        if self.as_json:
            self.results.append({**facts, "message": message})
        else:
            out.print(message, highlight=False, markup=False)

    def note(self, message: str) -> None:
        """A summary line for people; in JSON the summary's keys say it."""
        if not self.as_json:
            out.print(message, highlight=False, markup=False)

    def done(self, **summary: Any) -> None:
        if self.as_json:
            import typer

            typer.echo(json.dumps({"results": self.results, **summary}, indent=2, default=str))


def json_option() -> Any:
    import typer

    return typer.Option("--json", help="Print the outcome as one JSON object (see docs/commands.md).")
