"""The daemon's side tasks are watched: one that ends while the daemon runs stops the daemon with
one line saying which and why (so its supervisor restarts it), instead of a daemon that carries on
without claiming or without writing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from orchestrator.config.settings import Settings
from orchestrator.engine.daemon import Daemon
from orchestrator.runner import run_daemon
from orchestrator.sandbox import Sandbox
from orchestrator.store.group_commit import BatchWriter
from orchestrator.store.open import open_store


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("target", "method", "name"),
    [(Daemon, "_pump", "claim pump"), (BatchWriter, "_run", "group-commit writer")],
)
def test_a_side_task_that_dies_stops_the_daemon_with_one_line(
    make_sandbox: Callable[..., Sandbox],
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    target: type,
    method: str,
    name: str,
) -> None:
    """A bug in the claim pump or the writer: the daemon stops at once, saying which task and why."""

    async def broken(_self: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(target, method, broken)
    settings = make_settings(make_sandbox(), "http://127.0.0.1:9")  # never called: no order
    store = open_store(settings.database_url)
    with capture_logs() as logs:
        daemon = asyncio.run(asyncio.wait_for(run_daemon(settings, store, install_signals=False), 20))
    assert daemon.stop_error == f"the {name} ended unexpectedly (RuntimeError: a bug)"
    assert [e["error"] for e in logs if e["event"] == "stopping: cannot carry on"] == [daemon.stop_error]
