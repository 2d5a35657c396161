"""Scale-out on PostgreSQL: four daemon processes share the work, one is SIGKILLed mid-run.

Every order must end invoiced, VTEX (the sandbox) must never see two requests for one order in
flight at the same time from different daemons, no effect may happen twice, and the four daemons
together must stay within one account budget (not four). On SQLite a second daemon is refused while
read-only commands keep working.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.clock import utcnow
from orchestrator.intake.importer import import_lines
from orchestrator.sandbox.process import SandboxProcess, client_env
from orchestrator.store.open import open_store
from tests import backends
from tests.factories import import_lines as lines_of
from tests.processes import start_daemon, wait_for

ORDERS = 300
DAEMONS = 4
BUDGET = 1200  # per minute for the account: binding for 300 orders x 4.4 calls (the feed) or 5 (polling)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name, url = backends.create_database()
    yield url
    backends.drop_database(name)


def busiest_minute(times: list[float]) -> int:
    times = sorted(times)
    return max(i - bisect_left(times, t - 60.0 + 1e-9) + 1 for i, t in enumerate(times))


def test_four_daemons_share_the_work_and_the_budget(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """300 orders, 4 daemons, one killed: all invoiced, never two at once on an order, one budget."""
    sandbox = SandboxProcess("--grace-seconds", "2", "--latency-ms", "5", log=tmp_path / "sandbox.log")
    try:
        store = open_store(postgres_url)
        import_lines(lines_of(ORDERS), store, utcnow())
        env = client_env(
            postgres_url,
            sandbox.url,
            ORCHESTRATOR_GRACE_PERIOD="2s",
            ORCHESTRATOR_TICK="200ms",
            ORCHESTRATOR_LEASE="5s",
            VTEX_TIMEOUT="2s",
            ORCHESTRATOR_CONCURRENCY="32",
            VTEX_MAX_RPM=str(BUDGET),
        )
        daemons = [start_daemon(env, tmp_path / f"daemon-{i}.log", "--until-done") for i in range(DAEMONS)]
        wait_for(lambda: sandbox.ledger()["summary"]["requests"] > 360, 60, "the run to be well under way")
        victim = daemons[1]
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        for daemon in daemons:
            if daemon is not victim:
                assert daemon.wait(timeout=300) == 0
        ledger = sandbox.ledger()
        log = sandbox.get("requests")
    finally:
        sandbox.stop()

    summary = ledger["summary"]
    states = {c.state: c.count for c in store.state_counts()}
    clients = {entry["client"] for entry in log}
    minute = busiest_minute([entry["at"] for entry in log])
    with capsys.disabled():
        print(
            "\nscale-out:",
            json.dumps(
                {
                    "orders": ORDERS,
                    "daemons": DAEMONS,
                    "killed": 1,
                    "states": states,
                    "requests": summary["requests"],
                    "daemonsSeenByVtex": len(clients),
                    "busiestMinute": minute,
                    "accountBudgetPerMinute": BUDGET,
                    "ordersWithConcurrentRequests": summary["ordersWithConcurrentRequests"],
                    "ordersWithSecondAcceptedPlace": summary["ordersWithDuplicatePlace"],
                    "ordersWithSecondStartHandling": summary["ordersWithDuplicateStartHandling"],
                    "ordersWithSecondInvoiceNumber": summary["ordersWithSeveralInvoiceNumbers"],
                }
            ),
        )
    assert states == {"invoiced": ORDERS}
    assert len(clients) == DAEMONS, "every daemon must have done part of the work"
    assert summary["ordersWithConcurrentRequests"] == 0
    assert summary["ordersWithDuplicatePlace"] == 0
    assert summary["ordersWithDuplicateStartHandling"] == 0
    assert summary["ordersWithSeveralInvoiceNumbers"] == 0
    assert summary["ordersOverInvoiced"] == 0
    assert summary["requests"] > BUDGET, "the run must be long enough for the budget to bind"
    assert minute <= BUDGET


def test_sqlite_refuses_a_second_daemon_but_serves_status(tmp_path: Path) -> None:
    """SQLite is the one-daemon default: a second `run` exits with a clear message; status still works."""
    database_url = f"sqlite:///{tmp_path / 'one.db'}"
    sandbox = SandboxProcess("--grace-seconds", "3600", log=tmp_path / "sandbox.log")
    try:
        env = client_env(database_url, sandbox.url, ORCHESTRATOR_TICK="100ms")
        subprocess.run(
            [sys.executable, "-m", "orchestrator", "import", "-"],
            input="\n".join(lines_of(50)),
            text=True,
            env=env,
            check=True,
            capture_output=True,
        )
        first = start_daemon(env, tmp_path / "first.log")
        try:
            wait_for(lambda: sandbox.ledger()["summary"]["requests"] >= 100, 30, "the first daemon to work")
            second = subprocess.run(
                [sys.executable, "-m", "orchestrator", "run"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert second.returncode == 1
            assert "already running" in second.stderr and "PostgreSQL" in second.stderr
            for _ in range(2):
                status = subprocess.run(
                    [sys.executable, "-m", "orchestrator", "status", "--json"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                assert status.returncode == 0, status.stderr
                assert sum(json.loads(status.stdout)["counts"].values()) == 50
                shown = subprocess.run(
                    [sys.executable, "-m", "orchestrator", "show", "ABC-100000"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                assert shown.returncode == 0, shown.stderr
                time.sleep(0.1)
        finally:
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=30) == 0
    finally:
        sandbox.stop()
