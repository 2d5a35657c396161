"""Logging set-up: structlog, JSON lines when output is not a terminal, readable lines on one.

Engine log lines are bound to the order (`order_id`, `state`, `action`). Values are passed as
key-values, never formatted into the message, and no code path ever binds a credential. Two
processors guard the output whatever a caller passes: every text goes through the one redaction
point (`orchestrator.redaction`), and a line repeated identically many times in a minute (a
database outage makes every claim fail the same way) is let through a few times, then summarised,
so an outage cannot fill a disk with one message.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

from orchestrator.redaction import redact
from orchestrator.timefmt import human, iso

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time of the write (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def redact_values(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: no registered secret, no URL password, in any text of the line."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


class RepeatLimiter:
    """Lets `burst` identical lines through per `window` seconds, then drops the rest; the next
    line let through says how many were dropped. Identical means every key but the timestamp."""

    def __init__(
        self,
        burst: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 2048,
    ) -> None:
        self.burst = burst
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._seen: OrderedDict[tuple[Any, ...], list[float]] = OrderedDict()  # started, count, dropped

    def allow(self, key: tuple[Any, ...]) -> tuple[bool, int]:
        """(let it through?, lines dropped since the last one let through)."""
        now = self._clock()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window:
            dropped = int(state[2]) if state else 0
            self._seen[key] = [now, 1, 0]
            self._seen.move_to_end(key)
            if len(self._seen) > self._max_keys:
                self._seen.popitem(last=False)
            return True, dropped
        state[1] += 1
        if state[1] <= self.burst:
            return True, 0
        state[2] += 1
        return False, 0

    def __call__(
        self, _logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        key = (method, *sorted((k, str(v)) for k, v in event.items() if k != "timestamp"))
        allowed, dropped = self.allow(key)
        if not allowed:
            raise structlog.DropEvent
        if dropped:
            event["repeated_lines_dropped"] = dropped
        return event


class _StdlibGuard(logging.Filter):
    """The same two guards for libraries that log through the standard library (asyncio's
    "accept out of system resource" once wrote 180 MB in 40 s)."""

    def __init__(self) -> None:
        super().__init__()
        self._limiter = RepeatLimiter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        allowed, dropped = self._limiter.allow((record.name, record.levelno, message))
        if not allowed:
            return False
        record.msg = message + (f" (and {dropped} identical lines dropped)" if dropped else "")
        record.args = ()
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(formatted)
        return True


_GUARD = _StdlibGuard()


class _Stamp:
    """The output contract's two time formats (`orchestrator.timefmt`): ISO 8601 UTC with
    milliseconds in JSON lines, the terminal's human form on a console."""

    def __init__(self, use_json: bool) -> None:
        self._format = iso if use_json else human

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event["timestamp"] = self._format(datetime.now(UTC))
        return event


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
            _Stamp(use_json),
            structlog.processors.format_exc_info,
            RepeatLimiter(),
            redact_values,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(target),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library; keep them quiet unless something is wrong.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if _GUARD not in handler.filters:
            handler.addFilter(_GUARD)
    for noisy in ("httpx", "httpcore", "apscheduler", "alembic", "uvicorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("psycopg").setLevel(logging.ERROR)  # clean-up notes after an error we report


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
