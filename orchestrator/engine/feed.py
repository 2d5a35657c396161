"""Listening to VTEX instead of asking: an account's Orders Feed (v3) as its status source.

For an account whose `status_source` is `feed`, one daemon at a time reads its feed (a lease in
`vtex_feeds`, as a claim's). It makes sure the feed is configured as the engine needs it (at
start, every hour, and when VTEX answers 404 to a read: VTEX deletes a configuration no event
reached within its retention), then reads up to 10 items at a time:

    read ─► every item into the inbox (one transaction, once per eventId)
         ─► commit every handle at once: the store's own orders' and unknown states' too, since
            an uncommitted item blocks the feed
         ─► apply the inbox to the orders it concerns (each becomes due, with VTEX's status)

and reads again at once while batches come back full, otherwise every few seconds. An item
committed but not yet applied is safe in the inbox; one applied but not committed comes back and
is a duplicate the inbox drops. The engine then moves each woken order by the status alone
(`Stepper._catch_up_from_event`); Get order stays for what events do not carry.

A gap in the feed (its configuration recreated) is followed by a sweep: every in-flight order of
the account looks at VTEX once. A feed that cannot be used (the app key lacks "Feed v3 and Hook
Admin", VTEX unreachable) is one log line and a note for `status`; the account's orders are then
looked at as a polling account's are, until the feed works again. Nothing here stops an order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from orchestrator.store.errors import explain, is_database_error
from orchestrator.store.thread import DatabaseThread
from orchestrator.vtex.client import VtexClient
from orchestrator.vtex.errors import MissingPermission, RateLimited, VtexError
from states import vtex_status

MAX_LOT = 10  # VTEX's limit per read
VISIBILITY_SECONDS = 240
RETENTION_SECONDS = 1_209_600  # 14 days, VTEX's longest: the most outage a feed survives
# The configuration the engine needs. The retention key is sent in both spellings VTEX's
# documents use (the POST schema's and the guide's and GET example's).
CONFIGURATION: dict[str, Any] = {
    "filter": {"type": "FromWorkflow", "status": list(vtex_status.FEED_STATUSES)},
    "queue": {
        "visibilityTimeoutInSeconds": VISIBILITY_SECONDS,
        "MessageRetentionPeriodInSeconds": RETENTION_SECONDS,
        "messageRetentionPeriodInSeconds": RETENTION_SECONDS,
    },
}
CHECK_EVERY = timedelta(hours=1)
# A feed that fails for this long (VTEX unreachable, answers that are not VTEX's) is given up for
# polling; a shorter outage is only retried. A missing permission is given up at once.
FALL_BACK_AFTER = timedelta(minutes=2)
KEEP_EVENTS = timedelta(seconds=RETENTION_SECONDS) + timedelta(days=1)  # past it VTEX resends none


def configured_as_needed(config: Mapping[str, Any] | None) -> bool:
    """Whether VTEX's feed configuration is the one the engine needs."""
    if not isinstance(config, Mapping):
        return False
    flt, queue = config.get("filter"), config.get("queue")
    if not isinstance(flt, Mapping) or not isinstance(queue, Mapping):
        return False
    retention = queue.get("MessageRetentionPeriodInSeconds", queue.get("messageRetentionPeriodInSeconds"))
    return (
        flt.get("type") == "FromWorkflow"
        and set(flt.get("status") or ()) == set(vtex_status.FEED_STATUSES)
        and queue.get("visibilityTimeoutInSeconds") == VISIBILITY_SECONDS
        and retention == RETENTION_SECONDS
    )


@dataclass
class FeedReader:
    """Reads one account's feed while this daemon leads it."""

    account: str  # the account's key (`vtex_feeds`, `vtex_events`)
    name: str  # its name in this deployment (`orders.account`)
    client: VtexClient
    db: DatabaseThread
    worker: str
    clock: Callable[[], datetime]
    wake: Callable[[], None]  # orders were made due: claim now
    listening: Callable[[bool], None]  # the feed works (True) or not: the orders' looks follow
    log: Any
    interval: float = 2.0
    lease: timedelta = timedelta(seconds=30)
    checked_at: datetime | None = None
    problem: str | None = None
    gap: bool = False  # events may have been lost before this daemon led: look at every order
    was_configured: bool = False  # a configuration had been set before (so a missing one is a gap)
    trouble_since: datetime | None = None  # the feed has failed since then
    _pruned_at: datetime | None = field(default=None, repr=False)

    async def run(self, stopping: asyncio.Event) -> None:
        """Read until `stopping` is set; then let another daemon lead."""
        try:
            while not stopping.is_set():
                wait = await self.once()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), wait)
        finally:
            try:
                await self.db.run(self.db.store.release_feed, self.account, self.worker)
            except Exception as exc:  # the lease runs out by itself
                if not is_database_error(exc):
                    raise

    async def once(self) -> float:
        """One round; the seconds until the next."""
        now = self.clock()
        try:
            if self.checked_at is None:
                await self._recall(now)
            if not await self.db.run(self.db.store.lead_feed, self.account, self.worker, now, self.lease):
                return self.lease.total_seconds() / 3  # another daemon reads it
            if self.checked_at is None or now - self.checked_at >= CHECK_EVERY:
                await self._ensure_configured(now)
            full = await self._read(now)
            await self._prune(now)
        except VtexError as exc:
            return await self._cannot_read(exc, now)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            self.log.warning(
                "the Orders Feed waits: the database failed", account=self.name, error=explain(exc)
            )
            return 5.0
        self.trouble_since = None
        if self.problem is not None:
            self.log.info("the Orders Feed is read again", account=self.name)
            self.problem = None
            self.listening(True)
            await self._note(now, problem=None)
        return 0.0 if full else self.interval

    async def _recall(self, now: datetime) -> None:
        """What was known of the feed before this daemon led it: whether a configuration had been
        set, and whether nobody read it for longer than VTEX keeps events (a gap)."""
        seen = await self.db.run(self.db.store.feed, self.account)
        self.was_configured = seen is not None and seen["configured_at"] is not None
        self.gap = self.was_configured and bool(
            now - seen["updated_at"] > timedelta(seconds=RETENTION_SECONDS)
        )

    async def _ensure_configured(self, now: datetime) -> None:
        """At start and hourly. A configuration missing where one was set (VTEX deletes idle ones),
        or a reader away longer than VTEX keeps events, is a gap: every order looks once."""
        call = await self.client.feed_config()
        if not configured_as_needed(call.body):
            await self._configure(now, gone=call.body is None and self.was_configured)
        elif self.gap:
            await self._sweep(now, "nobody read the feed for longer than VTEX keeps events")
        self.gap = False
        self.checked_at = now
        await self._note(now, configured_at=now)

    async def _configure(self, now: datetime, *, gone: bool) -> None:
        """Set the configuration. Where one had been set and is gone (VTEX deleted it), events may
        have been lost: every in-flight order looks at VTEX once."""
        await self.client.set_feed_config(CONFIGURATION)
        self.checked_at = now
        self.was_configured = True
        self.log.info("the Orders Feed configured", account=self.name)
        if gone or self.gap:
            await self._sweep(now, "the feed's configuration was missing (VTEX deletes idle ones)")

    async def _sweep(self, now: datetime, why: str) -> None:
        swept = await self.db.run(self.db.store.sweep, self.name, now)
        self.log.warning(f"{why}: every order in flight looks at VTEX once", account=self.name, swept=swept)
        if swept:
            self.wake()

    async def _read(self, now: datetime) -> bool:
        call = await self.client.read_feed(MAX_LOT)
        if call.body is None:  # VTEX's 404: the configuration is gone
            await self._configure(now, gone=True)
            return False
        items = [i for i in call.body if isinstance(i, Mapping)]
        if items:
            await self.db.run(self.db.store.save_feed_items, self.account, items, now)
            await self.client.commit_feed([str(i["handle"]) for i in items])
            await self._note(now, event_at=now)
        woken = await self.db.run(self.db.store.apply_feed_events, self.account, self.name, now)
        if woken:
            self.wake()
        return len(items) >= MAX_LOT

    async def _note(self, now: datetime, **seen: Any) -> None:
        """What was seen of the feed, for `status` and `check`."""
        await self.db.run(partial(self.db.store.note_feed, self.account, self.worker, now, **seen))

    async def _prune(self, now: datetime) -> None:
        if self._pruned_at is None or now - self._pruned_at >= CHECK_EVERY:
            self._pruned_at = now
            await self.db.run(self.db.store.forget_feed_events, now - KEEP_EVENTS)

    async def _cannot_read(self, exc: VtexError, now: datetime) -> float:
        """The feed cannot be read now: the orders are looked at as a polling account's are."""
        if isinstance(exc, RateLimited):
            return max(1.0, exc.retry_after or 60.0)
        if self.trouble_since is None:
            self.trouble_since = now
        if not isinstance(exc, MissingPermission) and now - self.trouble_since < FALL_BACK_AFTER:
            self.log.warning("the Orders Feed failed; trying again", account=self.name, error=exc.describe())
            return 5.0  # a passing outage: the orders' safety-net looks are enough meanwhile
        if isinstance(exc, MissingPermission):
            why = f"the app key lacks the License Manager resource {exc.resource!r}"
            wait = 300.0
        else:
            why = exc.describe()
            wait = 30.0
        if self.problem is None:
            self.log.error(
                "the Orders Feed cannot be read; the account's orders are looked at by polling",
                account=self.name,
                error=why,
            )
            self.listening(False)
            swept = await self.db.run(self.db.store.sweep, self.name, now)
            if swept:
                self.wake()
        self.problem = why
        await self._note(now, problem=why[:300])
        return wait
