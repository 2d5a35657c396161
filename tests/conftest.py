"""Shared fixtures: a sandbox (in-process or over a real socket), databases, settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.settings import Settings, load_settings
from orchestrator.sandbox import Catalog, Sandbox, SandboxConfig, SandboxOms, ServerThread, create_app
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from tests import backends
from tests.asgi import InProcessClient


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_sandbox() -> Callable[..., Sandbox]:
    def make(**config: Any) -> Sandbox:
        return Sandbox(SandboxOms(SandboxConfig(**config)))

    return make


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox(grace_seconds=0.5)


@pytest.fixture
def sandbox_server(sandbox: Sandbox) -> Iterator[ServerThread]:
    """The sandbox served over a real loopback socket, in a thread of the test process."""
    with ServerThread(sandbox) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Storage and engine tests run once per backend (see tests/backends.py)."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'orders.db'}"
        return
    name, url = backends.create_database()
    yield url
    backends.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'orders.db'}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    backends.drop_template()


_POSTGRES_FIXTURES = {"postgres_url"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The markers say what a test needs: `slow` for the acceptance tests (real processes and
    signals), `postgres` for every test that runs on a PostgreSQL server. A test marked
    `sqlite_only` checks what does not depend on the database, so its PostgreSQL run is left out
    (the storage, engine, import and upgrade tests run on both)."""
    twice = [item for item in items if _on_postgres(item) and item.get_closest_marker("sqlite_only")]
    if twice:
        config.hook.pytest_deselected(items=twice)
        items[:] = [item for item in items if item not in twice]
    for item in items:
        if "/acceptance/" in item.nodeid or item.nodeid.startswith("tests/acceptance"):
            item.add_marker(pytest.mark.slow)
        if _on_postgres(item) or _POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def _on_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("backend") == "postgresql"


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    def make(sandbox: Sandbox | None = None, url: str | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "grace_period": timedelta(seconds=0.5),
            "tick_interval": timedelta(milliseconds=100),
            "feed_interval": timedelta(milliseconds=300),  # events without the 2 s of a deployment
            "worker_id": "test-worker",
        }
        if sandbox is not None:
            values.update(
                vtex_base_url=url or "http://sandbox.invalid",
                vtex_app_key=sandbox.oms.config.app_key,
                vtex_app_token=sandbox.oms.config.app_token,
            )
        values.update(overrides)
        return load_settings(None, **values)

    return make


@pytest.fixture
def store(make_settings: Callable[..., Settings]) -> Store:
    return open_store(make_settings().database_url)


# -- the sandbox in-process, driven by a test clock ---------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_client(clock: Clock) -> Callable[..., InProcessClient]:
    def make(catalog: Catalog | None = None, **config: Any) -> InProcessClient:
        config.setdefault("grace_seconds", 60)
        oms = SandboxOms(SandboxConfig(**config), catalog, clock=clock)
        headers = {"X-VTEX-API-AppKey": oms.config.app_key, "X-VTEX-API-AppToken": oms.config.app_token}
        client = InProcessClient(create_app(Sandbox(oms)), headers)
        client.oms = oms  # type: ignore[attr-defined]
        return client

    return make


@pytest.fixture
def vtex(make_client: Callable[..., InProcessClient]) -> InProcessClient:
    return make_client()


@pytest.fixture
def cli_env(database_url: str, sandbox_server: ServerThread) -> dict[str, str]:
    """The environment a command run against the sandbox over a real socket needs."""
    config = sandbox_server.sandbox.oms.config
    return {
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "VTEX_BASE_URL": sandbox_server.url,
        "VTEX_APP_KEY": config.app_key,
        "VTEX_APP_TOKEN": config.app_token,
        "ORCHESTRATOR_GRACE_PERIOD": "0.5s",
        "ORCHESTRATOR_TICK": "100ms",
        "ORCHESTRATOR_LOG_FORMAT": "json",
    }
