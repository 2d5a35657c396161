"""How an account's VTEX client and step engine are made from the settings, in one place: the
daemon (through `orchestrator.wiring`), `serve` and the commands that call VTEX themselves
(`check`, `resume`, a step taken now) all build them here, so they call VTEX alike.

An account's values (URL, credentials, budget, grace period) come from its `AccountSettings`;
the deployment's (concurrency, timeout, lease, transport) from `Settings`.
"""

from __future__ import annotations

import secrets
from types import TracebackType

import httpx

from orchestrator.config.account_tables import AccountSettings
from orchestrator.config.checks import ConfigurationError
from orchestrator.config.settings import Settings
from orchestrator.engine.policy import Policies
from orchestrator.engine.stepper import StepperConfig
from orchestrator.vtex.budget import RequestBudget, TokenBucket
from orchestrator.vtex.client import CallObserver, VtexClient
from orchestrator.vtex.proxies import ProxyError, proxy_for


def process_identity(name: str) -> str:
    """The lease owner of one process: the configured name plus a random instance token. Replicas
    sharing one environment (or containers whose daemons are all PID 1) get the same name; with
    the same identity one daemon's shutdown would release the other's leases."""
    return f"{name}#{secrets.token_hex(4)}"


def build_client(
    settings: Settings,
    account: AccountSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    budget: RequestBudget | None = None,
    observer: CallObserver | None = None,
    identity: str | None = None,
) -> VtexClient:
    """The VTEX client of `account`; ConfigurationError when it cannot call VTEX (no credentials,
    no URL, a proxy setting that does not parse)."""
    if account.app_key is None or account.app_token is None:
        raise ConfigurationError(
            account.credentials_problem or "set VTEX_APP_KEY and VTEX_APP_TOKEN (the VTEX app key and token)"
        )
    try:
        proxy = proxy_for(account.base_url)
    except ProxyError as exc:
        raise ConfigurationError(str(exc)) from None
    if transport is None and (settings.vtex_http_transport == "httpx" or proxy is not None):
        limits = httpx.Limits(
            max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
        )
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=True, proxy=proxy)
    return VtexClient(
        account.base_url,
        app_key=account.app_key.get_secret_value(),
        app_token=account.app_token.get_secret_value(),
        timeout=settings.vtex_timeout.total_seconds(),
        max_connections=settings.concurrency,
        transport=transport,
        budget=budget if budget is not None else TokenBucket(account.max_rpm),
        observer=observer,
        worker_id=identity or settings.worker_id,
        # A claimed order must not wait for the budget longer than a fraction of its lease.
        max_budget_wait=settings.lease.total_seconds() / 4,
    )


def stepper_config(settings: Settings, account: AccountSettings, identity: str) -> StepperConfig:
    return StepperConfig(
        grace_period=account.grace_period,
        worker_id=identity,
        unknown_outcome_after=settings.unknown_outcome_after,
        lease=settings.lease,
        policies=Policies.for_account(settings, account),
    )


class AccountClients:
    """One VTEX client per account, made on first use and closed together: a long-lived process
    (`serve`) reuses each for its lifetime (its connections, its budget) instead of building one
    per request."""

    def __init__(self, settings: Settings, identity: str) -> None:
        self._settings = settings
        self.identity = identity  # the lease owner of the steps taken with these clients
        self._clients: dict[str, VtexClient] = {}

    @classmethod
    def for_command(cls, settings: Settings, role: str = "cli") -> AccountClients:
        """The clients of one command (or one `serve`), its steps leased under its own name."""
        return cls(settings, process_identity(f"{settings.worker_id}:{role}"))

    def client(self, account: AccountSettings) -> VtexClient:
        found = self._clients.get(account.name)
        if found is None:
            found = build_client(self._settings, account, identity=self.identity)
            self._clients[account.name] = found
        return found

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> AccountClients:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
