"""Orders Feed v3, as VTEX documents it (Orders API, "Feed v3"; the Orders Feed guide).

One feed per app key (here: per sandbox account). `POST /api/orders/feed/config` sets its filter
and queue; from then on every status change the filter lets through is an item in the queue:

    {eventId, handle, domain, state, lastState, orderId, lastChange, currentChange}

`GET /api/orders/feed?maxlot=N` (N at most 10) hands out visible items and hides each for the
queue's visibility timeout, under a new `handle`; an item not committed (`POST /api/orders/feed
{"handles": [...]}`) by then is handed out again. Items older than the retention period are
dropped, committed or not, and a feed without any event for as long is deleted. Like the SQS
queue behind VTEX's feed, it does not keep order and may deliver an item twice: two fault options
(`shuffle`, `duplicate`) make that happen on purpose.

No timers run: time-driven moves are computed when the feed is read (the OMS advances its orders
first), so a test clock drives everything.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from orchestrator.sandbox.filters import filter_refusal, idle_too_long, kept, lets_through

MAX_LOT = 10
RETENTION_MIN = 345_600  # 4 days
RETENTION_MAX = 1_209_600  # 14 days
DEFAULT_VISIBILITY = 240


@dataclass
class FeedItem:
    event_id: str
    order_id: str
    state: str
    last_state: str | None
    last_change: float
    current_change: float
    visible_at: float = 0.0
    handle: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "handle": self.handle,
            "domain": "Fulfillment",
            "state": self.state,
            "lastState": self.last_state,
            "orderId": self.order_id,
            "lastChange": iso(self.last_change),
            "currentChange": iso(self.current_change),
        }


@dataclass
class FeedFaults:
    """The queue's documented liberties, on purpose: items handed out in any order (`shuffle`),
    and each handed-out item also left in the queue as a copy with the same eventId, with this
    probability (`duplicate`)."""

    shuffle: bool = False
    duplicate: float = 0.0
    seed: int = 0


@dataclass
class Feed:
    clock: Callable[[], float]
    config: dict[str, Any] | None = None
    configured_at: float = 0.0
    last_event_at: float | None = None
    items: list[FeedItem] = field(default_factory=list)
    faults: FeedFaults = field(default_factory=FeedFaults)
    delivered: int = 0
    committed: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.faults.seed)

    def set_faults(self, faults: FeedFaults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)

    # -- configuration -----------------------------------------------------------------------

    def configure(self, body: Any) -> str | None:
        """Set the configuration; the refusal's text when the body is not one VTEX takes."""
        if not isinstance(body, Mapping):
            return "Invalid request body: expected {filter, queue}"
        flt, queue = body.get("filter"), body.get("queue")
        refusal = filter_refusal(flt)
        if refusal is not None:
            return refusal
        if not isinstance(queue, Mapping):
            return "queue is required"
        retention = queue.get("MessageRetentionPeriodInSeconds", queue.get("messageRetentionPeriodInSeconds"))
        retention = RETENTION_MIN if retention is None else retention
        visibility = queue.get("visibilityTimeoutInSeconds", DEFAULT_VISIBILITY)
        if not isinstance(retention, int) or not RETENTION_MIN <= retention <= RETENTION_MAX:
            return f"MessageRetentionPeriodInSeconds must be from {RETENTION_MIN} to {RETENTION_MAX}"
        if not isinstance(visibility, int) or visibility <= 0:
            return "visibilityTimeoutInSeconds must be a positive integer"
        self.config = {
            "filter": kept(body["filter"]),
            "queue": {"visibilityTimeoutInSeconds": visibility, "MessageRetentionPeriodInSeconds": retention},
        }
        self.configured_at = self.clock()
        return None

    def view(self) -> dict[str, Any] | None:
        """`GET /api/orders/feed/config`: the configuration with the queue's size and age."""
        if not self._alive():
            return None
        assert self.config is not None
        now = self.clock()
        oldest = min((i.current_change for i in self.items), default=None)
        queue = dict(self.config["queue"])
        # The GET's example spells the retention key with a small m: give both.
        queue["messageRetentionPeriodInSeconds"] = queue["MessageRetentionPeriodInSeconds"]
        return {
            "filter": self.config["filter"],
            "queue": queue,
            "quantity": len(self.items),
            "approximateAgeOfOldestMessageInSeconds": 0 if oldest is None else round(now - oldest),
        }

    def delete(self) -> bool:
        existed = self.config is not None
        self.config = None
        self.items.clear()
        return existed

    def _alive(self) -> bool:
        """VTEX deletes a feed no event reached within its retention period."""
        if self.config is None:
            return False
        retention = self.config["queue"]["MessageRetentionPeriodInSeconds"]
        if idle_too_long(self.last_event_at, self.configured_at, self.clock(), retention):
            self.delete()
            return False
        return True

    # -- events ---------------------------------------------------------------------------------

    def status_changed(
        self, order_id: str, last_state: str | None, state: str, last_change: float, at: float
    ) -> None:
        if not self._alive():
            return
        assert self.config is not None
        if not lets_through(self.config["filter"], last_state, state):
            return
        self.last_event_at = at
        self.items.append(FeedItem(uuid.uuid4().hex.upper(), order_id, state, last_state, last_change, at))

    def read(self, maxlot: int) -> list[dict[str, Any]] | None:
        """Up to `maxlot` visible items, each hidden for the visibility timeout under a new handle;
        None when there is no feed (VTEX answers 404)."""
        if not self._alive():
            return None
        assert self.config is not None
        now = self.clock()
        retention = self.config["queue"]["MessageRetentionPeriodInSeconds"]
        kept = [i for i in self.items if now - i.current_change <= retention]
        self.dropped += len(self.items) - len(kept)
        self.items = kept
        visible = [i for i in self.items if i.visible_at <= now]
        if self.faults.shuffle:
            self._rng.shuffle(visible)
        lot = visible[: max(1, min(MAX_LOT, maxlot))]
        hidden_for = self.config["queue"]["visibilityTimeoutInSeconds"]
        for item in lot:
            item.handle = uuid.uuid4().hex
            item.visible_at = now + hidden_for
            if self.faults.duplicate and self._rng.random() < self.faults.duplicate:
                self.items.append(replace(item, handle=None, visible_at=now))
        self.delivered += len(lot)
        return [item.as_json() for item in lot]

    def commit(self, handles: list[str]) -> None:
        wanted = set(handles)
        before = len(self.items)
        self.items = [i for i in self.items if i.handle not in wanted]
        self.committed += before - len(self.items)


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
