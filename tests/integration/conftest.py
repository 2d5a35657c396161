"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from typer.testing import CliRunner

from orchestrator.sandbox import Sandbox, ServerThread


@pytest.fixture
def served(make_sandbox: Callable[..., Sandbox], database_url: str) -> Iterator[tuple[Sandbox, CliRunner]]:
    sandbox = make_sandbox(grace_seconds=0.3)
    with ServerThread(sandbox) as server:
        env = {
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "VTEX_BASE_URL": server.url,
            "VTEX_APP_KEY": sandbox.oms.config.app_key,
            "VTEX_APP_TOKEN": sandbox.oms.config.app_token,
            "ORCHESTRATOR_GRACE_PERIOD": "0.3s",
            "ORCHESTRATOR_TICK": "100ms",
            "COLUMNS": "240",
        }
        yield sandbox, CliRunner(env=env)
