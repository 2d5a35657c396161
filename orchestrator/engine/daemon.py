"""The daemon: APScheduler ticks, each tick has due orders claimed and stepped, one durable step each.

There are no per-order jobs. Per-order timing lives in `orders.next_run_at`; APScheduler runs
fixed jobs only: the tick, and a periodic progress report. The tick does not do the work itself: it
wakes the *claim pump*, one task that claims as many due orders as there are free slots and starts
a step for each. A step that leaves its order due again at once wakes the pump too, so a fast VTEX
is not slowed down to the tick rate, and a slow claim never makes APScheduler overlap its own job.

Each configured VTEX account is a lane (`orchestrator.engine.lanes`): the pump claims for each lane that
is not paused, up to that lane's free slots, so one account's trouble or backlog never takes the
slots or the claims another account's orders need.

Shutdown (SIGTERM, SIGINT, or `--until-done` finding nothing left to do): stop claiming, give the
steps in flight `shutdown_timeout` to finish and record their outcomes, cancel what is left (its
intent stays committed and is reconciled on the next claim), release every lease this worker
still holds, and return. If the database is unusable by then, the leases are left to expire and
the reason is one log line (`stop_error`), not a traceback.

A database that fails is retried with a growing pause (one explained log line per kind of
failure, not one per tick); the probes say so (`orchestrator.engine.monitor.health`). A SQLite file that is
deleted or replaced under the daemon stops it at once: every later write would be lost.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from orchestrator.clock import OffsetClock, utcnow
from orchestrator.engine.feed import FeedReader
from orchestrator.engine.lanes import Lane
from orchestrator.engine.monitor.health import Health
from orchestrator.engine.monitor.metrics import Metrics, probe_handler
from orchestrator.engine.monitor.probe_server import ProbeServer
from orchestrator.engine.monitor.systemd import SystemdNotifier
from orchestrator.engine.monitor.watch import HEARTBEAT_SECONDS, Watch
from orchestrator.log import get_logger
from orchestrator.store.dialects import StorageCheck
from orchestrator.store.errors import DatabaseError, explain, is_database_error
from orchestrator.store.group_commit import BatchWriter
from orchestrator.store.patience import patiently
from orchestrator.store.rows import OrderRow
from orchestrator.store.thread import DatabaseThread
from orchestrator.vtex.pauses import AccountPause, PermissionPause
from states import Waiting

MAX_CLAIM = 500
ACCOUNT_REFRESH = timedelta(seconds=2)  # how often a pause recorded by another daemon is picked up
CLAIM_BACKOFF_CAP = 30.0  # seconds between claims while the database keeps failing
CLOCK_SYNC_INTERVAL = timedelta(minutes=1)
CLOCK_WARN_OFFSET = timedelta(seconds=2)
SHUTDOWN_PATIENCE = 10.0  # seconds a stopping daemon waits out a database that is away


@dataclass(frozen=True)
class DaemonConfig:
    worker_id: str
    concurrency: int
    tick_interval: timedelta
    lease: timedelta
    shutdown_timeout: timedelta
    report_interval: timedelta = timedelta(seconds=30)
    metrics_interval: timedelta = timedelta(seconds=5)


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        database: DatabaseThread,
        lanes: Sequence[Lane],
        writer: BatchWriter,
        *,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        metrics_socket: socket.socket | None = None,
        storage_check: StorageCheck | None = None,
        watch: Watch | None = None,
        feeds: Sequence[FeedReader] = (),
    ) -> None:
        self.feeds = list(feeds)  # the Orders Feed readers of accounts that listen
        self._feeds_stop = asyncio.Event()
        self._feed_tasks: list[asyncio.Task[None]] = []
        self.metrics = metrics
        self.watch = watch
        self.systemd = SystemdNotifier()
        self.metrics_url: str | None = None
        self._metrics_socket = metrics_socket
        self.health = Health(config.tick_interval)
        self.storage_check = storage_check
        self.stop_error: str | None = None  # why the daemon stopped on its own, when it had to
        self.stopped_paused = False  # `--until-done` stopped with orders held by an account pause
        self._claim_failures = 0
        self._claim_paused_until = 0.0
        self.config = config
        self.db = database
        self.lanes = {lane.name: lane for lane in lanes}
        self._claim_order = list(self.lanes)  # rotated after each claim round: no lane always first
        self.writer = writer
        writer.on_commit = self.database_result
        self.clock = clock
        self.in_flight: dict[int, asyncio.Task[bool]] = {}
        self.steps_done = 0
        self.ticks = 0
        self.stop_reason: str | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._until_done = False
        self._account_read_at: datetime | None = None
        self._background: set[asyncio.Future[object]] = set()
        self._pump_task: asyncio.Task[None] | None = None
        self._log = get_logger(worker=config.worker_id)
        self._scheduler: AsyncIOScheduler | None = None
        self._probe_server: ProbeServer | None = None
        self._clock_warned = False

    def request_stop(self, reason: str = "requested") -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._log.info("stopping", reason=reason)
            self._stop.set()

    def reload_credentials(self) -> None:
        """SIGHUP: read every account's credential files again (rotated secrets, e.g. a mounted
        Kubernetes secret that was updated), without a restart."""
        changed = [lane.name for lane in self.lanes.values() if lane.reload_credentials()]
        self._log.info("credential files read again (SIGHUP)", changed=changed)

    def _fatal(self, error: str) -> None:
        """Stop because carrying on would lose work; the CLI exits non-zero with `error`."""
        if self.stop_error is None:
            self.stop_error = error
            self._log.error("stopping: cannot carry on", error=error)
        self.request_stop(error)

    def persist_pause(self, lane: Lane, pause: AccountPause | None) -> None:
        """Record an account pause (or its end) for status and for other daemons; at its end,
        the account's orders parked until then are due at once."""
        now = self.clock()
        self._spawn(
            self.db.run(self.db.store.save_account_pause, lane.guard.account, pause, now), "recording a pause"
        )
        if pause is None:
            self._spawn(self.db.run(self.db.store.wake_paused, lane.name, now), "waking parked orders")

    def persist_permission(self, lane: Lane, resource: str, pause: PermissionPause | None) -> None:
        """Record that the account's calls needing `resource` pause (or go on again), for status
        and for other daemons; when they go on, the orders parked for it are due at once."""
        now = self.clock()
        self._spawn(
            self.db.run(self.db.store.save_permission_pause, lane.guard.account, resource, pause, now),
            "recording a permission pause",
        )
        if pause is None:
            self._spawn(self.db.run(self.db.store.wake_paused, lane.name, now), "waking parked orders")

    def _spawn(self, work: Coroutine[Any, Any, object], what: str) -> None:
        """A background write the daemon does not wait for (an account pause recorded, parked
        orders woken), watched: a database that failed is one line (the next pause or lift writes
        again), anything else is a bug that stops the daemon, rather than asyncio's "Task
        exception was never retrieved" and a daemon that carries on wrong."""
        task = asyncio.ensure_future(work)
        self._background.add(task)

        def done(finished: asyncio.Future[object]) -> None:
            self._background.discard(finished)
            if finished.cancelled() or finished.exception() is None:
                return
            exc = finished.exception()
            assert exc is not None
            if is_database_error(exc):
                self._log.warning("could not record; the database failed", what=what, error=explain(exc))
            else:
                self._fatal(f"{what} failed ({type(exc).__name__}: {_first_line(exc)})")

        task.add_done_callback(done)

    def _supervise(self, task: asyncio.Task[Any], name: str) -> None:
        """A side task the daemon cannot work without (the claim pump, the group-commit writer):
        should it end while the daemon runs, the daemon stops with one line saying which and why,
        so that its supervisor (systemd, Kubernetes) restarts it, as procrastinate's worker does."""

        def done(finished: asyncio.Task[Any]) -> None:
            if self._stopping or finished.cancelled():
                return
            exc = finished.exception()
            why = f"{type(exc).__name__}: {_first_line(exc)}" if exc is not None else "it returned"
            self._fatal(f"the {name} ended unexpectedly ({why})")

        task.add_done_callback(done)

    async def run(self, *, until_done: bool = False, install_signals: bool = True) -> None:
        self._until_done = until_done
        loop = asyncio.get_running_loop()
        handlers = {
            signal.SIGTERM: lambda: self.request_stop("SIGTERM"),
            signal.SIGINT: lambda: self.request_stop("SIGINT"),
            signal.SIGHUP: self.reload_credentials,
        }
        with signals_handled(loop, handlers if install_signals else {}):
            self._supervise(self.writer.start(), "group-commit writer")
            self._pump_task = asyncio.create_task(self._pump(), name="claim-pump")
            self._supervise(self._pump_task, "claim pump")
            for reader in self.feeds:
                task = asyncio.create_task(reader.run(self._feeds_stop), name=f"feed-{reader.name}")
                self._feed_tasks.append(task)
                self._supervise(task, f"Orders Feed reader of account {reader.name}")
            scheduler = self._scheduler_for(loop)
            if self.metrics is not None and self._metrics_socket is not None:
                self._probe_server = ProbeServer(
                    self._metrics_socket, probe_handler(self.metrics, self.health)
                )
                self._probe_server.start()
            scheduler.start()
            self._scheduler = scheduler
            self._log.info("daemon started", concurrency=self.config.concurrency, until_done=until_done)
            self.systemd.ready(f"stepping orders, {self.config.concurrency} at a time")
            try:
                await self._stop.wait()
            finally:
                await self._shutdown()

    def _scheduler_for(self, loop: asyncio.AbstractEventLoop) -> AsyncIOScheduler:
        """APScheduler with the daemon's fixed jobs (there are no per-order jobs). It keeps time by
        this host's system clock, so its jobs are scheduled by it (`utcnow`), not by `self.clock`,
        which follows the database server's."""
        scheduler = AsyncIOScheduler(event_loop=loop, timezone="UTC")
        now = utcnow()
        scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.config.tick_interval.total_seconds(),
            next_run_time=now,
            id="tick",
            coalesce=True,
            misfire_grace_time=None,
        )
        # (job, every, first run; None: after one interval): each skips a run on a database failure.
        jobs: list[tuple[Callable[[], Awaitable[None]], timedelta, datetime | None]] = [
            (self.report, self.config.report_interval, None),
            (self.maintain, timedelta(hours=1), now + timedelta(minutes=1)),
        ]
        if isinstance(self.clock, OffsetClock) and self.db.store.hooks.server_clock:
            jobs.append((self.sync_clock, CLOCK_SYNC_INTERVAL, now))
        if self.watch is not None:
            jobs.append((self.heartbeat, timedelta(seconds=HEARTBEAT_SECONDS), now))
        if self.metrics is not None:
            jobs.append((self.refresh_metrics, self.config.metrics_interval, now))
        for job, every, first in jobs:
            # APScheduler reads an explicit next_run_time=None as "paused": left out, it means one interval.
            when = {"next_run_time": first} if first is not None else {}
            scheduler.add_job(
                self._quietly(job),
                "interval",
                seconds=every.total_seconds(),
                id=job.__name__,
                max_instances=1,
                coalesce=True,
                **when,
            )
        return scheduler

    def _quietly(self, job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """`job` as a scheduled job: a database that is away is one log line (and the probes say
        so), never an exception for APScheduler to print with its traceback; the next run tries
        again. Anything else is a bug and is raised."""

        async def run() -> None:
            try:
                await job()
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                reason = explain(exc)
                self.health.database_failed(reason)
                self._log.warning("periodic job skipped; the database failed", job=job.__name__, error=reason)

        run.__name__ = job.__name__
        return run

    # -- ticking ---------------------------------------------------------------------------------

    async def tick(self) -> None:
        """The scheduler's heartbeat: check the storage is still the one opened, then wake the
        claim pump (orders whose time has come)."""
        self.ticks += 1
        self.health.ticked()
        self.systemd.alive(self.health.liveness()[0])
        if self.metrics is not None:
            self.metrics.last_tick.set(time.time())
        if self.storage_check is not None:
            try:
                self.storage_check()
            except DatabaseError as exc:
                self._fatal(str(exc))
                return
        self._wake.set()

    async def _pump(self) -> None:
        """Claim while there are free slots and due orders; then sleep until woken."""
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            if time.monotonic() < self._claim_paused_until:
                continue
            try:
                await self._claim_until_full()
            except Exception as exc:
                self._claim_failed(exc)
            else:
                self._claim_failures = 0

    def _claim_failed(self, exc: Exception) -> None:
        """The database may be briefly unavailable, or broken for good (read-only, full, corrupt):
        try again after a pause that grows, and say why in one line, not a traceback per tick."""
        self._claim_failures += 1
        pause = min(CLAIM_BACKOFF_CAP, 2.0 ** min(self._claim_failures - 1, 8))
        self._claim_paused_until = time.monotonic() + pause
        reason = explain(exc)
        self.health.database_failed(reason)
        self._log.error("claim failed; will try again", error=reason, retry_in_s=pause)

    def database_result(self, error: Exception | None) -> None:
        """Every commit of the writer reports here: the probes follow the database's health."""
        if error is None:
            self.health.database_ok()
        else:
            self.health.database_failed(explain(error))

    async def _claim_until_full(self) -> None:
        """Claim for each account that is not paused, as many of its due orders as it has free
        slots; again while some account filled all its slots (more may be due)."""
        while not self._stopping:
            now = self.clock()
            await self._refresh_accounts(now)
            active = [self.lanes[name] for name in self._claim_order if self.lanes[name].may_claim(now)]
            self._claim_order.append(self._claim_order.pop(0))
            more = False
            claimed = 0
            for lane in active:
                free = min(lane.free, MAX_CLAIM)
                if free <= 0 or self._stopping:
                    continue
                rows: list[OrderRow] = await self.db.run(
                    self.db.store.claim_due, self.config.worker_id, now, self.config.lease, free, lane.name
                )
                self.health.database_ok()
                if lane.guard.permissions and any(r.wait_code == Waiting.PERMISSION for r in rows):
                    # Orders parked for a permission are due before its pause ends: someone lifted
                    # it (`resume`, another daemon's probe). Read it now, not at the next refresh,
                    # or they would park again until the old end.
                    await self._refresh_accounts(now, force=True)
                for row in rows:
                    lane.in_flight.add(row.id)
                    self.in_flight[row.id] = asyncio.create_task(
                        self._step(lane, row), name=f"step-{row.order_id}"
                    )
                claimed += len(rows)
                more = more or len(rows) == free
            if not claimed and self._until_done and not self.in_flight:
                await self._stop_if_done(now, active)
            if not more:
                return  # everything due is claimed; the next wake-up brings more

    async def _stop_if_done(self, now: datetime, active: list[Lane]) -> None:
        """`--until-done`: stop once no order of an account that is not paused can move; a
        paused account's orders wait for its pause, so the reason names it."""
        if active and not await self._nothing_left([lane.name for lane in active]):
            return  # scheduled for later
        paused = [(lane.name, lane.guard.pause_state) for lane in self.lanes.values() if lane.is_paused(now)]
        if paused:
            many = len(self.lanes) > 1
            reasons = "; ".join(f"{name}: {p.reason}" if many else p.reason for name, p in paused if p)
            self.stopped_paused = True
            self.request_stop("account paused: " + reasons)
        else:
            self.request_stop("no order can progress without outside input")

    async def _refresh_accounts(self, now: datetime, *, force: bool = False) -> None:
        """Adopt the pauses other daemons recorded (or lifted): one read for every account."""
        fresh = self._account_read_at is not None and now - self._account_read_at < ACCOUNT_REFRESH
        if fresh and not force:
            return
        self._account_read_at = now
        stored = {p.account: p for p in await self.db.run(self.db.store.account_pauses)}
        permissions: dict[str, list[PermissionPause]] = {}
        for missing in await self.db.run(self.db.store.permission_pauses):
            permissions.setdefault(missing.account, []).append(missing)
        for lane in self.lanes.values():
            lane.guard.adopt(stored.get(lane.guard.account), permissions.get(lane.guard.account, []))

    async def _step(self, lane: Lane, row: OrderRow) -> bool:
        try:
            return await lane.stepper.step(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A database outage or a bug. The lease will expire and the order will be claimed
            # again; an intent it committed is reconciled then, so nothing is sent twice.
            if is_database_error(exc):
                self._log.error(
                    "step not saved; the database failed",
                    order_id=row.order_id,
                    state=row.state,
                    action=row.intent,
                    error=explain(exc),
                )
            else:
                self._log.exception("step crashed", order_id=row.order_id, state=row.state, action=row.intent)
            return False
        finally:
            self.in_flight.pop(row.id, None)
            lane.in_flight.discard(row.id)
            self.steps_done += 1
            due_now = row.next_run_at is not None and row.next_run_at <= self.clock()
            if due_now or (self._until_done and not self.in_flight):
                self._wake.set()

    async def _nothing_left(self, accounts: list[str] | None) -> bool:
        count: int = await self.db.run(self.db.store.count_progressable, accounts)
        return count == 0

    async def sync_clock(self) -> None:
        """Measure this host's clock against the database server's (see `OffsetClock`)."""
        if self._stopping or not isinstance(self.clock, OffsetClock):
            return
        offset = await self.db.run(self.clock.measure, self.db.store.server_now)
        off_by = abs(offset)
        if off_by > CLOCK_WARN_OFFSET and not self._clock_warned:
            self._clock_warned = True
            self._log.warning(
                "this host's clock differs from the database server's; timings follow the server's",
                offset_s=round(offset.total_seconds(), 3),
            )
        elif off_by <= CLOCK_WARN_OFFSET:
            self._clock_warned = False

    async def refresh_metrics(self) -> None:
        if not self._stopping and self.watch is not None:
            await self.watch.refresh_metrics(self.clock(), len(self.in_flight))

    async def heartbeat(self) -> None:
        if self._stopping or self.watch is None:
            return
        try:
            await self.watch.heartbeat(self.clock())
        except Exception as exc:  # the claims report a broken database; a heartbeat stays quiet
            if not is_database_error(exc):
                raise

    async def maintain(self) -> None:
        """Hourly upkeep of the database: fresh planner statistics keep `status` fast."""
        if not self._stopping:
            await self.db.run(self.db.store.optimize)

    async def report(self) -> None:
        if self._stopping:
            return
        counts = await self.db.run(self.db.store.state_counts)
        self._log.info(
            "progress",
            in_flight=len(self.in_flight),
            steps_done=self.steps_done,
            **{c.state.replace("-", "_"): c.count for c in counts},
        )

    # -- stopping --------------------------------------------------------------------------------

    def wake(self) -> None:
        """Orders were made due from outside the claim loop (an Orders Feed event): claim now."""
        self._wake.set()

    async def _shutdown(self) -> None:
        self._stopping = True
        self.systemd.stopping()
        self.health.stopping = True
        self._feeds_stop.set()
        if self._feed_tasks:
            await asyncio.wait(self._feed_tasks, timeout=10)
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        self._wake.set()
        if self._pump_task is not None:
            # A claim under way finishes first, so the steps it starts are waited for too.
            with suppress(asyncio.CancelledError, Exception):
                await self._pump_task
        pending = dict(self.in_flight)
        cut_short: list[int] = []
        if pending:
            timeout = self.config.shutdown_timeout.total_seconds()
            self._log.info("waiting for steps in flight", count=len(pending), timeout_s=timeout)
            _done, still = await asyncio.wait(pending.values(), timeout=timeout)
            cut_short = [pk for pk, task in pending.items() if task in still]
            for task in still:
                task.cancel()
            for task in still:
                with suppress(asyncio.CancelledError, Exception):
                    await task
            if still:
                self._log.warning("steps cut short; their intents will be reconciled", count=len(still))
        try:
            await self.writer.close()
            if self._background:
                await asyncio.wait(list(self._background), timeout=5)
            store, now, owner = self.db.store, self.clock(), self.config.worker_id
            released = await self.db.run(
                lambda: patiently(
                    lambda: store.release_leases(owner, now, cut_short),
                    what="releasing leases",
                    log=self._log,
                    patience=SHUTDOWN_PATIENCE,
                )
            )
            if self.watch is not None:
                # Saying "stopped" is a courtesy to `status`: its failure is no reason to exit 1
                # (the heartbeat ages out by itself).
                with suppress(Exception):
                    await self.watch.heartbeat(self.clock(), stopped=True)
        except Exception as exc:  # the database is unusable: the leases expire by themselves
            reason = explain(exc)
            self.stop_error = self.stop_error or f"the database is unusable: {reason}"
            self._log.error(
                "stopped without releasing leases; they expire by themselves",
                error=reason,
                lease_s=self.config.lease.total_seconds(),
            )
        else:
            self._log.info("daemon stopped", steps_done=self.steps_done, leases_released=released)
        finally:
            if self._probe_server is not None:
                self._probe_server.stop()


def _first_line(exc: BaseException | None) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200] if exc is not None else ""


@contextmanager
def signals_handled(
    loop: asyncio.AbstractEventLoop, handlers: Mapping[signal.Signals, Callable[[], object]]
) -> Iterator[None]:
    """The daemon's signal handlers, installed for the life of the block and removed after it
    (SIGTERM and SIGINT stop it gracefully, SIGHUP reads the credential files again)."""
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler)
    try:
        yield
    finally:
        for sig in handlers:
            loop.remove_signal_handler(sig)
