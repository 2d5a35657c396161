"""The composition root: builds the objects from the settings (the store, the VTEX client, the
step engine, the daemon) and nothing else; running them is `orchestrator.runner`'s job.

The CLI, the demo, the API and the tests all build through here, so they run the same product.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx

from orchestrator.clock import OffsetClock, utcnow
from orchestrator.config.account_tables import AccountSettings
from orchestrator.config.settings import Settings
from orchestrator.engine.clients import build_client, process_identity, stepper_config
from orchestrator.engine.daemon import Daemon, DaemonConfig
from orchestrator.engine.feed import FeedReader, HookWanted
from orchestrator.engine.lanes import Lane
from orchestrator.engine.monitor.metrics import Metrics
from orchestrator.engine.monitor.probe_server import BACKLOG
from orchestrator.engine.monitor.watch import Watch
from orchestrator.engine.policy import Policies
from orchestrator.engine.stepper import Stepper
from orchestrator.log import get_logger
from orchestrator.serving import bind, url_of
from orchestrator.store.group_commit import BatchWriter
from orchestrator.store.store import Store
from orchestrator.store.thread import DatabaseThread
from orchestrator.vtex.budget import RequestBudget, SharedTokenBucket, TokenBucket
from orchestrator.vtex.client import Call, CallObserver, VtexClient
from orchestrator.vtex.errors import VtexError
from orchestrator.vtex.hook import hook_url
from orchestrator.vtex.pauses import AccountGuard
from orchestrator.vtex.recovery import Grant, Recovery, on_the_wall


def shared_budget(settings: Settings, account: AccountSettings, database: DatabaseThread) -> RequestBudget:
    """On PostgreSQL the budget and the recovery after 429s live in the database: N daemons share
    one budget and one probe, not N. On SQLite (one daemon) they live in the process, and the
    recovery is written down for `status`. A probe whose sender died is given up once no call
    could still be waiting for its answer (VTEX_TIMEOUT, and a second)."""
    store = database.store
    key = account.key
    probe_timeout = settings.vtex_timeout.total_seconds() + 1.0

    if store.hooks.name != "postgresql":

        async def record(state: Recovery, now: float) -> None:
            await database.run(store.save_recovery, key, on_the_wall(state, now))

        return TokenBucket(account.max_rpm, record=record, probe_timeout=probe_timeout)

    async def take(want: int, capacity: float, rate: float) -> Grant:
        grant: Grant = await database.run(store.take_budget, key, want, capacity, rate, probe_timeout)
        return grant

    async def throttle(retry_after: float | None) -> None:
        await database.run(store.throttle_account, key, retry_after)

    async def probe_done(was_answered: bool) -> None:
        await database.run(store.probe_done, key, was_answered)

    return SharedTokenBucket(account.max_rpm, take, throttle, probe_done)


@dataclass
class DaemonParts:
    """A daemon and what it owns, to be closed after it ran."""

    daemon: Daemon
    clients: list[VtexClient]
    database: DatabaseThread
    metrics_socket: socket.socket | None

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()
        self.database.close()
        if self.metrics_socket is not None:
            self.metrics_socket.close()


def build_daemon(
    settings: Settings,
    store: Store,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    observer: CallObserver | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> DaemonParts:
    """The daemon for `settings`: its own lease identity, a clock corrected to the database
    server's, the database thread, the group-commit writer, the probe server's socket if metrics
    are on, and for each configured account a lane (`orchestrator.engine.lanes`): the account's VTEX
    client with its shared budget, its pause guard and its step engine."""
    identity = process_identity(settings.worker_id)
    daemon_clock = OffsetClock(clock)
    database = DatabaseThread(store)
    accounts = settings.all_accounts
    metrics = Metrics(accounts=len(accounts) > 1) if settings.metrics_port is not None else None
    metrics_socket = (
        bind(
            settings.metrics_host, settings.metrics_port, setting="ORCHESTRATOR_METRICS_PORT", backlog=BACKLOG
        )
        if settings.metrics_port is not None
        else None
    )
    log = get_logger(worker=identity)
    watch = Watch(identity, database, log, metrics=metrics, stuck_rules=settings.stuck_rules)
    writer = BatchWriter(database, identity)
    lanes = [
        _lane(
            settings,
            account,
            identity=identity,
            database=database,
            writer=writer,
            watch=watch,
            clock=daemon_clock,
            log=log,
            transport=transport,
            observer=observer,
        )
        for name, account in accounts.items()
    ]
    daemon = Daemon(
        DaemonConfig(
            worker_id=identity,
            concurrency=settings.concurrency,
            tick_interval=settings.tick_interval,
            lease=settings.lease,
            shutdown_timeout=settings.shutdown_timeout,
        ),
        database,
        lanes,
        writer,
        clock=daemon_clock,
        metrics=metrics,
        metrics_socket=metrics_socket,
        watch=watch,
    )
    for lane in lanes:
        account = accounts[lane.name]
        if account.status_source != "poll":
            daemon.feeds.append(
                _feed_reader(settings, account, lane, database=database, daemon=daemon, log=log)
            )
    if metrics_socket is not None:
        daemon.metrics_url = url_of(metrics_socket)
    for lane in lanes:
        lane.guard.persist = partial(daemon.persist_pause, lane)
        lane.guard.persist_permission = partial(daemon.persist_permission, lane)
    return DaemonParts(daemon, [lane.client for lane in lanes], database, metrics_socket)


def _feed_reader(
    settings: Settings,
    account: AccountSettings,
    lane: Lane,
    *,
    database: DatabaseThread,
    daemon: Daemon,
    log: Any,
) -> FeedReader:
    """The account's Orders Feed reader; while the feed cannot be read, its orders are looked at
    as a polling account's are."""
    listening = Policies.for_account(settings, account)
    polling = Policies.for_account(settings, replace(account, status_source="poll"))

    def follow(works: bool) -> None:
        lane.stepper.policies = listening if works else polling

    return FeedReader(
        account.key,
        account.name,
        lane.client,
        database,
        daemon.config.worker_id,
        daemon.clock,
        daemon.wake,
        follow,
        log,
        choice=account.status_source,
        hook=_hook_wanted(account, lane),
        interval=settings.feed_interval.total_seconds(),
        # A daemon that died holding the feed keeps it no longer than its orders' leases (at most
        # 30 s), and never shorter than three reads.
        lease=max(timedelta(seconds=6), min(settings.lease, timedelta(seconds=30))),
        step_lease=settings.lease,
        paused=lane.is_paused,
    )


def _hook_wanted(account: AccountSettings, lane: Lane) -> HookWanted | None:
    """Where VTEX should push (`status_source = hook`), with the secret of the token in use."""
    if account.status_source != "hook" or not account.hook_url:
        return None
    return HookWanted(hook_url(account.hook_url, account.name), partial(lane.client.hook_secret, account.key))


def _lane(
    settings: Settings,
    account: AccountSettings,
    *,
    identity: str,
    database: DatabaseThread,
    writer: BatchWriter,
    watch: Watch,
    clock: Callable[[], datetime],
    log: Any,
    transport: httpx.AsyncBaseTransport | None,
    observer: CallObserver | None,
) -> Lane:
    """One account's lane: its client (URL, credentials, budget), pause guard and step engine."""
    name = account.name
    guard = AccountGuard(account.key, Policies().bad_credentials, log)
    budget = shared_budget(settings, account, database)
    watch.watch_account(name, guard, budget)
    metrics = watch.metrics

    def observe(call: Call, error: VtexError | None) -> None:
        watch.observe_call(call, error, name)
        if observer is not None:
            observer(call, error)

    def on_transition(trigger: str, source: str, dest: str) -> None:
        if metrics is not None:
            metrics.observe_transition(trigger, source, dest, name)

    def on_invoice(kind: str, value: int) -> None:
        if metrics is not None:
            metrics.observe_invoice(kind, value, name)

    client = build_client(
        settings, account, transport=transport, observer=observe, budget=budget, identity=identity
    )
    stepper = Stepper(
        client,
        writer,
        stepper_config(settings, account, identity),
        clock=clock,
        guard=guard,
        on_transition=on_transition if metrics is not None else None,
        on_invoice=on_invoice if metrics is not None else None,
    )
    return Lane(
        name, stepper, guard, client, slots=settings.concurrency, log=log, credentials=account.credentials
    )
