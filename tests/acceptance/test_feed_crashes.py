"""The Orders Feed under crashes: the feed hands items out shuffled and some twice, and the daemon
reading it is SIGKILLed at seeded random moments (between a read and its commit, an inbox write
and its application, whatever the moment) and restarted. Every order must end invoiced, with no
effect in VTEX twice: no duplicate effect, no lost transition."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from orchestrator.clock import utcnow
from orchestrator.intake.importer import import_lines
from orchestrator.sandbox.process import SandboxProcess, client_env
from orchestrator.store.open import open_store
from tests.factories import import_lines as lines_of
from tests.processes import start_daemon

SEED = 20261205
ORDERS = 40
KILLS = 5


@pytest.mark.sqlite_only  # the inbox on both backends: tests/integration/test_orders_feed.py
def test_shuffled_duplicated_items_and_sigkills_never_duplicate_or_lose_a_step(
    tmp_path: Path, database_url: str
) -> None:
    """40 orders, the feed shuffled with a third of its items handed out twice, 5 SIGKILLs of the
    reading daemon: all invoiced, each Place, Start handling and invoice applied once."""
    rng = random.Random(SEED)
    sandbox = SandboxProcess(
        "--grace-seconds",
        "1",
        "--seed",
        str(SEED),
        "--feed-shuffle",
        "--feed-duplicate",
        "0.3",
        log=tmp_path / "sandbox.log",
    )
    try:
        store = open_store(database_url)
        import_lines(lines_of(ORDERS), store, utcnow())
        env = client_env(
            database_url,
            sandbox.url,
            ORCHESTRATOR_STATUS_SOURCE="feed",
            ORCHESTRATOR_GRACE_PERIOD="1s",
            ORCHESTRATOR_TICK="100ms",
            ORCHESTRATOR_LEASE="3s",
            VTEX_TIMEOUT="1s",
            ORCHESTRATOR_CONCURRENCY="16",
        )
        log = tmp_path / "daemon.log"
        for _ in range(KILLS):
            daemon = start_daemon(env, log)
            time.sleep(rng.uniform(0.8, 2.0))
            daemon.send_signal(signal.SIGKILL)
            assert daemon.wait(timeout=10) == -signal.SIGKILL
        final = start_daemon(env, log, "--until-done")
        assert final.wait(timeout=120) == 0, log.read_text()[-3000:]
        ledger = sandbox.ledger()
    finally:
        sandbox.stop()
    assert {c.state: c.count for c in store.state_counts()} == {"invoiced": ORDERS}
    summary = ledger["summary"]
    assert summary["ordersWithDuplicatePlace"] == 0
    assert summary["ordersWithDuplicateStartHandling"] == 0
    assert summary["ordersWithSeveralInvoiceNumbers"] == 0 and summary["ordersOverInvoiced"] == 0
    assert summary["requestsByOperation"].get("feed-read", 0) > 0
