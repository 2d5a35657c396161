"""Builds the object graph from Settings: database, repository, VTEX client, engine, daemon.

The CLI, the demo and the tests all go through here, so they run the same product.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from orchestrator.account import AccountGuard
from orchestrator.budget import RequestBudget, SharedTokenBucket, TokenBucket
from orchestrator.clock import OffsetClock, utcnow
from orchestrator.daemon import Daemon, DaemonConfig
from orchestrator.database import StorageCheck, create_db_engine
from orchestrator.engine import Engine, EngineConfig
from orchestrator.errors import AuthError, VtexError
from orchestrator.log import get_logger
from orchestrator.metrics import Metrics
from orchestrator.migrate import current_revision
from orchestrator.policy import Policies
from orchestrator.probe_server import BACKLOG
from orchestrator.proxies import ProxyError, proxy_for
from orchestrator.repository import Repository
from orchestrator.rows import OrderRow
from orchestrator.serving import bind, url_of
from orchestrator.settings import ConfigurationError, Settings
from orchestrator.vtex_client import Call, CallObserver, VtexClient
from orchestrator.writer import BatchWriter, Database


def shared_budget(settings: Settings, database: Database) -> RequestBudget:
    """On PostgreSQL the budget lives in the database: N daemons share one budget, not N budgets."""
    repository = database.repository
    if repository.hooks.name != "postgresql":
        return TokenBucket(settings.vtex_max_rpm)
    account = settings.account_key

    async def take(want: int, capacity: float, rate: float) -> tuple[int, float]:
        result: tuple[int, float] = await database.run(repository.take_budget, account, want, capacity, rate)
        return result

    async def throttle(seconds: float) -> None:
        await database.run(repository.throttle_account, account, seconds)

    return SharedTokenBucket(settings.vtex_max_rpm, take, throttle)


def process_identity(name: str) -> str:
    """The lease owner of one process: the configured name plus a random instance token. Replicas
    sharing one environment (or containers whose daemons are all PID 1) get the same name; with
    the same identity one daemon's shutdown would release the other's leases."""
    return f"{name}#{secrets.token_hex(4)}"


def build_client(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    budget: RequestBudget | None = None,
    observer: CallObserver | None = None,
    identity: str | None = None,
) -> VtexClient:
    if settings.vtex_app_key is None or settings.vtex_app_token is None:
        raise ConfigurationError("set VTEX_APP_KEY and VTEX_APP_TOKEN (the VTEX app key and token)")
    try:
        proxy = proxy_for(settings.base_url)
    except ProxyError as exc:
        raise ConfigurationError(str(exc)) from None
    if transport is None and (settings.vtex_http_transport == "httpx" or proxy is not None):
        limits = httpx.Limits(
            max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
        )
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=True, proxy=proxy)
    return VtexClient(
        settings.base_url,
        app_key=settings.vtex_app_key.get_secret_value(),
        app_token=settings.vtex_app_token.get_secret_value(),
        timeout=settings.vtex_timeout.total_seconds(),
        max_connections=settings.concurrency,
        transport=transport,
        budget=budget if budget is not None else TokenBucket(settings.vtex_max_rpm),
        observer=observer,
        worker_id=identity or settings.worker_id,
        # A claimed order must not wait for the budget longer than a fraction of its lease.
        max_budget_wait=settings.lease.total_seconds() / 4,
    )


def engine_config(settings: Settings, identity: str) -> EngineConfig:
    return EngineConfig(
        grace_period=settings.grace_period,
        worker_id=identity,
        unknown_outcome_after=settings.unknown_outcome_after,
        policies=Policies.for_grace(
            settings.grace_period,
            settings.max_attempts,
            invoice_asap=settings.invoice_timing == "asap",
            max_requests_per_hour=settings.max_requests_per_order_hour,
        ),
    )


class DirectPersistence:
    """Commits at once, for a command that steps a single order outside the daemon."""

    def __init__(self, repository: Repository, owner: str) -> None:
        self._repository = repository
        self._owner = owner

    async def write_intent(self, row: OrderRow) -> bool:
        return self._repository.commit([row], [], self._owner)[0][0]

    async def save(self, row: OrderRow, events: list[dict[str, Any]]) -> bool:
        return self._repository.commit([], [(row, events)], self._owner)[1][0]


async def step_order_now(settings: Settings, repository: Repository, order_id: str) -> OrderRow | None:
    """One durable step for one order, right now; None if a running daemon holds the order."""
    owner = process_identity(f"{settings.worker_id}:cli")
    row = repository.claim_order(order_id, owner, utcnow(), settings.lease)
    if row is None:
        return None
    async with build_client(settings, identity=owner) as client:
        engine = Engine(client, DirectPersistence(repository, owner), engine_config(settings, owner))
        await engine.step(row)
    return repository.find(order_id)


@contextmanager
def single_daemon_guard(repository: Repository) -> Iterator[StorageCheck]:
    with repository.hooks.single_daemon(repository.engine.url) as check:
        yield check


async def run_daemon(
    settings: Settings,
    repository: Repository,
    *,
    until_done: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    install_signals: bool = True,
    on_ready: object = None,
    observer: CallObserver | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Daemon:
    """Run the daemon until stopped; returns it so callers can read its counters.

    `clock` is this host's clock (a test can skew it); it is corrected to the database server's
    clock on PostgreSQL."""
    identity = process_identity(settings.worker_id)
    daemon_clock = OffsetClock(clock)
    database = Database(repository)
    metrics = Metrics() if settings.metrics_port is not None else None
    metrics_socket = (
        bind(
            settings.metrics_host, settings.metrics_port, setting="ORCHESTRATOR_METRICS_PORT", backlog=BACKLOG
        )
        if settings.metrics_port is not None
        else None
    )

    def observe(call: Call, error: VtexError | None) -> None:
        if metrics is not None:
            metrics.observe_call(call, error)
        if observer is not None:
            observer(call, error)

    client = build_client(
        settings,
        transport=transport,
        observer=observe,
        budget=shared_budget(settings, database),
        identity=identity,
    )
    writer = BatchWriter(database, identity)
    log = get_logger(worker=identity)
    guard = AccountGuard(settings.account_key, Policies().bad_credentials, log)
    engine = Engine(
        client,
        writer,
        engine_config(settings, identity),
        clock=daemon_clock,
        guard=guard,
        on_transition=metrics.observe_transition if metrics is not None else None,
    )
    daemon = Daemon(
        DaemonConfig(
            worker_id=identity,
            concurrency=settings.concurrency,
            tick_interval=settings.tick_interval,
            lease=settings.lease,
            shutdown_timeout=settings.shutdown_timeout,
        ),
        database,
        engine,
        writer,
        guard=guard,
        clock=daemon_clock,
        metrics=metrics,
        metrics_socket=metrics_socket,
    )
    if metrics_socket is not None:
        daemon.metrics_url = url_of(metrics_socket)
        log.info(
            "metrics served", url=f"{daemon.metrics_url}/metrics", health=f"{daemon.metrics_url}/healthz"
        )
    guard.persist = daemon.persist_pause
    if callable(on_ready):
        on_ready(daemon)
    try:
        with single_daemon_guard(repository) as check:
            daemon._storage_check = check
            await daemon.run(until_done=until_done, install_signals=install_signals)
    finally:
        await client.aclose()
        database.close()
        if metrics_socket is not None:
            metrics_socket.close()
    return daemon


@dataclass(frozen=True)
class VtexView:
    order: dict[str, Any] | None
    error: str | None


async def fetch_vtex_order(settings: Settings, order_id: str) -> VtexView:
    """VTEX's current view of one order, or why it could not be had."""
    async with build_client(settings) as client:
        try:
            call = await client.get_order(order_id)
        except VtexError as exc:
            return VtexView(None, exc.describe())
    if call.body is None:
        return VtexView(None, f"VTEX has no order {order_id} (HTTP {call.http_status})")
    return VtexView(call.body if isinstance(call.body, dict) else None, None)


async def check_setup(settings: Settings) -> list[tuple[str, bool, str]]:
    """The database, then the VTEX credentials with one harmless read (a Get order VTEX answers 404 to).

    Nothing is created or migrated: `check` says what is there."""
    from orchestrator.database import explain
    from orchestrator.migrate import head_revision
    from orchestrator.redaction import mask_url

    results: list[tuple[str, bool, str]] = []
    where = mask_url(settings.database_url)
    try:
        engine, hooks = create_db_engine(settings.database_url, create=False)
        try:
            revision = current_revision(engine)
        finally:
            engine.dispose()
        head = head_revision()
        if revision == head:
            results.append(
                ("database", True, f"{hooks.name} at {where} reachable, schema at revision {revision}")
            )
        elif revision is None:
            results.append(
                ("database", False, f"{where} holds no orchestrator tables (`orchestrator migrate`)")
            )
        else:
            results.append(
                (
                    "database",
                    False,
                    f"schema at revision {revision}, this version needs {head} (`orchestrator migrate`)",
                )
            )
    except Exception as exc:  # any failure is the answer to "does the database work?"
        results.append(("database", False, explain(exc)))
    try:
        client = build_client(settings)
    except ConfigurationError as exc:
        results.append(("VTEX", False, str(exc)))
        return results
    async with client:
        try:
            call = await client.get_order("orchestrator-check-0")
        except AuthError as exc:
            results.append(
                ("VTEX", False, f"{settings.base_url} rejected the credentials (HTTP {exc.http_status})")
            )
        except VtexError as exc:
            results.append(("VTEX", False, f"cannot use {settings.base_url}: {exc.describe()}"))
        else:
            results.append(
                ("VTEX", True, f"{settings.base_url} accepts the credentials (HTTP {call.http_status})")
            )
    return results
