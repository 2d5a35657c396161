"""Logging set-up: structlog, JSON lines when output is not a terminal, readable lines on one.

Engine log lines are bound to the order (`order_id`, `state`, `action`). Values are passed as
key-values, never formatted into the message, and no code path ever binds a credential.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time of the write (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    target: Any = stream if stream is not None else _CurrentStderr()
    use_json = fmt == "json" or (fmt == "auto" and not target.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        # Tracebacks without frame locals: a local could hold a request's headers, and with them
        # the VTEX credentials.
        else structlog.dev.ConsoleRenderer(
            colors=target.isatty(),
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False),
        )
    )
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(target),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library; keep them quiet unless something is wrong.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic", "uvicorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def redirected(stream: TextIO, level: str = "info") -> Iterator[None]:
    """Log JSON lines to `stream` for a while (the demo keeps the terminal for its progress view)."""
    previous = structlog.get_config()
    configure(level, "json", stream=stream)
    try:
        yield
    finally:
        structlog.configure(**previous)


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("orchestrator").bind(**bound)
