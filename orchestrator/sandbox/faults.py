"""Fault injection for the sandbox, seeded so a failing run can be replayed.

Random faults, each drawn per VTEX request with its own probability:
  latency (+ jitter)   every request waits before being handled
  error_before         5xx and the request is NOT applied
  error_after          the request IS applied, then 5xx
  drop_after           the request IS applied, then the connection is closed without a response
  slow                 the request IS applied, then the response is held longer than any sane
                       client timeout
  drip                 the request IS applied, then VTEX's answer is sent one byte every
                       `drip_seconds`: every read sees progress, only a deadline on the whole
                       call ends it
  rate_limit           429 with Retry-After, not applied

Answers that are not VTEX's, none applied (a proxy, a WAF, a storefront or CDN URL set by
mistake answered instead of VTEX):
  html                 200 with an HTML page
  empty                200 with an empty body
  wrong_json           200 with JSON that is not what VTEX answers to that call
  redirect             302 to another host (`redirect_to`)
  endless              200 with a body that never ends

Holds (for deterministic crash tests): a request for one order and operation is parked before or
after it is applied until the test releases it, so a test can kill the client at an exact point.
Released, a "before" hold either applies the request or discards it; an "after" hold either
answers or drops the connection (`then`: "apply", "discard", "respond", "drop").
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "error_before",
    "error_after",
    "drop_after",
    "slow",
    "drip",
    "rate_limit",
    "html",
    "empty",
    "wrong_json",
    "redirect",
    "endless",
)
NOT_VTEX = frozenset({"html", "empty", "wrong_json", "redirect", "endless"})


@dataclass
class FaultConfig:
    seed: int = 0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_before: float = 0.0
    error_after: float = 0.0
    drop_after: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 120.0
    drip: float = 0.0
    drip_seconds: float = 0.5
    rate_limit: float = 0.0
    retry_after_seconds: float = 2.0
    html: float = 0.0
    empty: float = 0.0
    wrong_json: float = 0.0
    redirect: float = 0.0
    redirect_to: str = "https://www.example-store.com.br/login"
    endless: float = 0.0
    only_writes: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Hold:
    """Park requests for `order_id`/`operation` at `when` ("before" or "after" applying)."""

    order_id: str
    operation: str
    when: str
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    then: str = "apply"
    hits: int = 0
    skip: int = 0  # matching requests let through untouched first (the second invoice of an order)


class Faults:
    def __init__(self, config: FaultConfig | None = None) -> None:
        self.configure(config or FaultConfig())
        self.holds: list[Hold] = []

    def configure(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)

    def delay(self) -> float:
        base = self.config.latency_ms
        if self.config.jitter_ms:
            base += self._rng.uniform(0, self.config.jitter_ms)
        return base / 1000.0

    def draw(self, is_write: bool) -> str | None:
        """At most one fault per request, each kind with its configured probability."""
        if self.config.only_writes and not is_write:
            return None
        roll = self._rng.random()
        for kind in KINDS:
            chance = getattr(self.config, kind)
            if not chance:
                continue
            if kind in ("error_after", "drop_after") and not is_write:
                continue  # a read has nothing to apply; these would only be "error_before"
            if roll < chance:
                return kind
            roll -= chance
        return None

    def hold_for(self, order_id: str | None, operation: str, when: str) -> Hold | None:
        for hold in self.holds:
            if hold.order_id == order_id and hold.operation == operation and hold.when == when:
                return hold
        return None
