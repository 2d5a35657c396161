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

`status_source = auto` (the default) listens the same way when it can, and otherwise polls by
choice, not as a problem: when the app key may not read the feed, and when another integration
configured the key's feed (taking it over would drain that integration's events: one feed per
app key). It looks again every hour, so a permission granted later is used.

`status_source = hook` also keeps VTEX's Hook configured (at start, hourly, and every minute while
VTEX refuses it, e.g. because `serve` did not answer its ping): VTEX pushes each change to
`serve`, which puts it into the same inbox (`orchestrator.web.hook`). The feed then stays as the
backup VTEX recommends, read every 30 s instead of every 2 s; the inbox is applied every round.
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
from orchestrator.vtex import hook
from orchestrator.vtex.client import VtexClient
from orchestrator.vtex.errors import MissingPermission, RateLimited, VtexError
from states import vtex_status

MAX_LOT = 10  # VTEX's limit per read
VISIBILITY_SECONDS = 30  # read to commit takes milliseconds; a reader killed between them delays no longer
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
HOOK_RETRY = timedelta(minutes=1)  # a Hook VTEX refused is set again this soon
BACKUP_READ_EVERY = timedelta(seconds=30)  # the feed, while the Hook pushes


@dataclass(frozen=True)
class HookWanted:
    """Where VTEX should push the account's notifications, and the secret it should send (derived
    from the app token in use, `orchestrator.vtex.hook.secret`)."""

    url: str
    secret: Callable[[], str]


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
    choice: str = "feed"  # the account's status_source: auto, feed or hook
    hook: HookWanted | None = None
    interval: float = 2.0
    lease: timedelta = timedelta(seconds=30)
    # The orders' lease: how long a step in flight when the feed was configured may still run.
    step_lease: timedelta = timedelta(seconds=60)
    sweep_again_at: datetime | None = None
    sweep_again: list[int] = field(default_factory=list)  # the orders a step held then
    checked_at: datetime | None = None
    problem: str | None = None
    declined: str | None = None  # `auto` polls by choice: why
    hook_ok: bool = False  # VTEX has the Hook as wanted
    hook_checked_at: datetime | None = None
    hook_problem: str | None = None
    read_at: datetime | None = None
    gap: bool = False  # events may have been lost before this daemon led: look at every order
    was_configured: bool = False  # a configuration had been set before (so a missing one is a gap)
    trouble_since: datetime | None = None  # the feed has failed since then
    # The account is paused (an operator's pause, rejected credentials): the feed is not read
    # either. VTEX keeps the events queued, and the reads take them up after the pause.
    paused: Callable[[datetime], bool] = lambda _now: False
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
        if self.paused(now):
            return self.interval
        try:
            if self.checked_at is None:
                await self._recall(now)
            if not await self.db.run(self.db.store.lead_feed, self.account, self.worker, now, self.lease):
                return self.lease.total_seconds() / 3  # another daemon reads it
            if self.checked_at is None or now - self.checked_at >= CHECK_EVERY:
                await self._ensure_configured(now)
            if self.declined is not None:
                return CHECK_EVERY.total_seconds()
            await self._ensure_hook(now)
            if self.sweep_again_at is not None and now >= self.sweep_again_at:
                held, self.sweep_again_at, self.sweep_again = self.sweep_again, None, []
                if await self.db.run(self.db.store.sweep, self.name, now, held):
                    self.wake()
            full = await self._read(now) if self._read_due(now) else False
            await self._apply(now)
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

    def _read_due(self, now: datetime) -> bool:
        """Always, unless the Hook pushes: then the feed is the backup, read less often."""
        return not self.hook_ok or self.read_at is None or now - self.read_at >= BACKUP_READ_EVERY

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
            if self.choice == "auto" and call.body is not None and not self.was_configured:
                await self._decline(now, "the app key's Orders Feed is configured by another integration")
                return
            if call.body is not None:
                self.log.warning(
                    "the app key's Orders Feed was configured otherwise; setting it as the engine needs it",
                    account=self.name,
                )
            await self._configure(now, gone=call.body is None and self.was_configured)
        elif self.gap:
            await self._sweep(now, "nobody read the feed for longer than VTEX keeps events")
        self.gap = False
        self.checked_at = now
        if self.declined is not None:
            self.log.info("the Orders Feed is used now (status_source = auto)", account=self.name)
            self.declined = None
            self.listening(True)
        await self._note(now, configured_at=now, declined=None)

    async def _decline(self, now: datetime, why: str) -> None:
        """`auto` polls by choice: said once, looked at again in an hour."""
        self.checked_at = now
        if self.declined is None:
            self.log.info(
                "polling VTEX: status_source = auto does not use the Orders Feed",
                account=self.name,
                why=why,
                hint='set status_source = "feed" to use it anyway (a key of its own: one feed per app key)',
            )
            self.listening(False)
            swept = await self.db.run(self.db.store.sweep, self.name, now)
            if swept:
                self.wake()
        self.declined = why
        await self._note(now, declined=why[:300], problem=None)

    async def _ensure_hook(self, now: datetime) -> None:
        """Keep VTEX's Hook as wanted: at start, hourly (VTEX deletes a Hook that had nothing to
        push for 3 days), and every minute while VTEX refuses it. A Hook that cannot be set is a
        note for `status`; the feed goes on being read as often as without one."""
        wanted_hook = self.hook
        if wanted_hook is None:
            return
        every = CHECK_EVERY if self.hook_ok else HOOK_RETRY
        if self.hook_checked_at is not None and now - self.hook_checked_at < every:
            return
        self.hook_checked_at = now
        wanted = hook.configuration(wanted_hook.url, wanted_hook.secret(), vtex_status.FEED_STATUSES)
        try:
            if not hook.configured_as_needed((await self.client.hook_config()).body, wanted):
                await self.client.set_hook_config(wanted)
                self.log.info("VTEX's Hook configured", account=self.name, url=wanted_hook.url)
        except VtexError as exc:
            if isinstance(exc, RateLimited):
                self.hook_checked_at = None
                return
            why = exc.describe()
            if self.hook_ok or self.hook_problem is None:
                self.log.error(
                    "VTEX's Hook cannot be set; the Orders Feed is read instead", account=self.name, error=why
                )
            self.hook_ok, self.hook_problem = False, why
            await self._note(now, hook_problem=why[:300])
            return
        if not self.hook_ok and self.hook_problem is not None:
            self.log.info("VTEX's Hook is set again", account=self.name)
        self.hook_ok, self.hook_problem = True, None
        await self._note(now, hook_configured_at=now, hook_problem=None)

    async def _configure(self, now: datetime, *, gone: bool) -> None:
        """Set the configuration. VTEX queues only what happens after it: the changes of orders
        already in flight (the daemon's first start on the feed, a filter that was otherwise, a
        configuration VTEX deleted) may never come, so every in-flight order looks at VTEX once."""
        await self.client.set_feed_config(CONFIGURATION)
        self.checked_at = now
        self.was_configured = True
        self.log.info("the Orders Feed configured", account=self.name)
        if gone or self.gap:
            why = "the feed's configuration was missing (VTEX deletes idle ones)"
        else:
            why = "the feed is configured now (VTEX queues only later changes)"
        # The sweep skips orders a step holds: a change such a step caused before the configuration
        # (VTEX invoicing the order on our invoice) comes as no event. Those held now look once
        # more when their leases are over (only those: later changes come as events). Taken
        # before the sweep, so a step that ends in between is swept now.
        self.sweep_again = await self.db.run(self.db.store.held_in_flight, self.name)
        self.sweep_again_at = now + self.step_lease if self.sweep_again else None
        await self._sweep(now, why, quiet=not (gone or self.gap))

    async def _sweep(self, now: datetime, why: str, *, quiet: bool = False) -> None:
        swept = await self.db.run(self.db.store.sweep, self.name, now)
        if swept or not quiet:
            say = self.log.info if quiet else self.log.warning
            say(f"{why}: every order in flight looks at VTEX once", account=self.name, swept=swept)
        if swept:
            self.wake()

    async def _read(self, now: datetime) -> bool:
        self.read_at = now
        call = await self.client.read_feed(MAX_LOT)
        if call.body is None:  # VTEX's 404: the configuration is gone
            await self._configure(now, gone=True)
            return False
        items = [i for i in call.body if isinstance(i, Mapping)]
        if items:
            await self.db.run(self.db.store.save_feed_items, self.account, items, now)
            await self.client.commit_feed([str(i["handle"]) for i in items])
            await self._note(now, event_at=now)
        return len(items) >= MAX_LOT

    async def _apply(self, now: datetime) -> None:
        """The inbox's news (the feed's, the Hook's) to their orders, which become due."""
        woken = await self.db.run(self.db.store.apply_feed_events, self.account, self.name, now)
        if woken:
            self.wake()

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
        if isinstance(exc, MissingPermission) and self.choice == "auto" and not self.was_configured:
            await self._decline(now, f"the app key lacks the License Manager resource {exc.resource!r}")
            return CHECK_EVERY.total_seconds()
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
