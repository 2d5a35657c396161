"""Crash safety with real processes: the daemon killed with SIGKILL at exact points, then restarted.

The sandbox runs in its own process and parks one request where the test wants the crash ("holds"),
so each crash point is hit deterministically. After a restart every order must reach `invoiced`
with exactly one accepted Place, one accepted Start handling and one distinct invoice number.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from orchestrator.clock import utcnow
from orchestrator.intake.importer import import_lines
from orchestrator.ops.operations import register_return
from orchestrator.sandbox.process import SandboxProcess, client_env
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from tests.factories import import_lines as lines_of
from tests.factories import order_id, return_for, split_record
from tests.processes import log_events, start_daemon, wait_for

FAST = {
    "ORCHESTRATOR_GRACE_PERIOD": "1s",
    "ORCHESTRATOR_TICK": "100ms",
    "ORCHESTRATOR_FEED_INTERVAL": "300ms",
    "ORCHESTRATOR_LEASE": "3s",
    "VTEX_TIMEOUT": "1s",
    "ORCHESTRATOR_SHUTDOWN_TIMEOUT": "5s",
}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    process = SandboxProcess("--grace-seconds", "1", log=tmp_path / "sandbox.log")
    yield process
    process.stop()


@pytest.fixture
def store(database_url: str) -> Store:
    return open_store(database_url)


def run_to_completion(env: dict[str, str], log: Path, timeout: float = 60) -> None:
    daemon = start_daemon(env, log, "--until-done")
    try:
        assert daemon.wait(timeout=timeout) == 0, log.read_text()[-3000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()


def assert_every_effect_once(store: Store, ledger: dict[str, Any], count: int) -> None:
    counts = {c.state: c.count for c in store.state_counts()}
    assert counts == {"invoiced": count}
    for entry in ledger["orders"]:
        assert entry["placesAccepted"] == 1, entry
        assert entry["startHandlingAccepted"] == 1, entry
        assert entry["distinctInvoiceNumbers"] == 1, entry
        assert entry["invoicedTotal"] == entry["value"], entry


def hold(sandbox: SandboxProcess, order: str, operation: str, when: str, skip: int = 0) -> None:
    sandbox.control("holds", {"orderId": order, "operation": operation, "when": when, "skip": skip})


def held(sandbox: SandboxProcess) -> list[dict[str, Any]]:
    holds: list[dict[str, Any]] = httpx.get(f"{sandbox.url}/_sandbox/holds", timeout=5).json()
    return [h for h in holds if h["arrived"]]


def kill(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGKILL)
    assert daemon.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.parametrize("operation", ["place-order", "start-handling"])
def test_killed_after_the_intent_commit_before_vtex_acted(
    sandbox: SandboxProcess, store: Store, database_url: str, tmp_path: Path, operation: str
) -> None:
    """SIGKILL with the intent committed and the call not applied: the restart reconciles, then sends once."""
    import_lines(lines_of(3), store, utcnow())
    victim = order_id(1)
    hold(sandbox, victim, operation, "before")
    env = client_env(database_url, sandbox.url, **FAST)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(env, log)
    wait_for(lambda: held(sandbox), 30, f"{operation} of {victim} to reach the sandbox")
    kill(daemon)
    row = store.find(victim)
    assert row is not None and row.intent == operation, "the intent must be committed before the call"
    sandbox.control(
        "holds/release", {"orderId": victim, "operation": operation, "when": "before", "then": "discard"}
    )
    run_to_completion(env, log)
    assert_every_effect_once(store, sandbox.ledger(), 3)
    reconciled = [e for e in store.events(row.id) if e["kind"] == "reconcile"]
    assert [e["message"] for e in reconciled] == ["not applied; will send again"]


@pytest.mark.parametrize("operation", ["place-order", "authorize-dispatch", "send-invoice", "start-handling"])
def test_killed_after_vtex_applied_before_the_outcome_commit(
    sandbox: SandboxProcess, store: Store, database_url: str, tmp_path: Path, operation: str
) -> None:
    """VTEX applied the call, its answer never arrived (connection dropped), the daemon was killed:
    the restart finds the intent, sees the effect in VTEX and does not send it again."""
    import_lines(lines_of(3), store, utcnow())
    victim = order_id(2)
    hold(sandbox, victim, operation, "after")
    env = client_env(database_url, sandbox.url, **FAST)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(env, log)
    wait_for(lambda: held(sandbox), 30, f"{operation} of {victim} to be applied")
    kill(daemon)
    sandbox.control(
        "holds/release", {"orderId": victim, "operation": operation, "when": "after", "then": "drop"}
    )
    row = store.find(victim)
    assert row is not None and row.intent == operation
    run_to_completion(env, log)
    ledger = sandbox.ledger()
    assert_every_effect_once(store, ledger, 3)
    [entry] = [e for e in ledger["orders"] if e["orderId"] == victim]
    sent = {
        "place-order": entry["placesAccepted"] + entry["placesRejectedDuplicate"],
        "authorize-dispatch": entry["authorizations"] + entry["authorizationsRepeated"],
        "send-invoice": entry["invoiceNotifications"],
        "start-handling": entry["startHandlingAccepted"] + entry["startHandlingRefused"],
    }[operation]
    assert sent == 1, f"{operation} reached VTEX {sent} times"
    reconciled = [e["message"] for e in store.events(row.id) if e["kind"] == "reconcile"]
    assert reconciled == ["applied"]


@pytest.mark.parametrize("which", ["second invoice", "return"])
def test_killed_after_vtex_took_a_later_invoice_before_the_outcome_commit(
    sandbox: SandboxProcess, store: Store, database_url: str, tmp_path: Path, which: str
) -> None:
    """VTEX took the order's second invoice (or, once invoiced, its return), the answer was lost
    and the daemon killed: the restart finds that very invoice in VTEX's packages and sends
    nothing twice, and the rest of the order's invoices go on."""
    victim = order_id(1)
    record = split_record(1, parts=2)
    env = client_env(database_url, sandbox.url, **FAST)
    log = tmp_path / "daemon.log"
    import_lines([json.dumps(record)], store, utcnow())
    if which == "return":
        run_to_completion(env, log)
        register_return(store, victim, return_for(record["invoices"][0], "RT100001"))
    hold(sandbox, victim, "send-invoice", "after", skip=1 if which == "second invoice" else 0)
    daemon = start_daemon(env, log)
    wait_for(lambda: held(sandbox), 30, f"the {which} of {victim} to be applied")
    kill(daemon)
    sandbox.control(
        "holds/release", {"orderId": victim, "operation": "send-invoice", "when": "after", "then": "drop"}
    )
    row = store.find(victim)
    assert row is not None and row.intent == ("send-return" if which == "return" else "send-invoice")
    run_to_completion(env, log)
    [entry] = [e for e in sandbox.ledger()["orders"] if e["orderId"] == victim]
    returned = 900 if which == "return" else 0
    assert (entry["invoiceNotifications"], entry["invoiceNumbersRepeated"]) == (2 + bool(returned), 0)
    assert (entry["invoicedTotal"], entry["returnedTotal"]) == (entry["value"], returned)
    row = store.find(victim)
    assert row is not None and row.state == "invoiced" and row.returned_value == returned
    assert [e["message"] for e in store.events(row.id) if e["kind"] == "reconcile"] == ["applied"]


def test_killed_between_two_steps(
    sandbox: SandboxProcess, store: Store, database_url: str, tmp_path: Path
) -> None:
    """SIGKILL while orders wait out the grace period with nothing in flight: the restart just continues."""
    import_lines(lines_of(10), store, utcnow())
    env = client_env(database_url, sandbox.url, **{**FAST, "ORCHESTRATOR_GRACE_PERIOD": "3s"})
    log = tmp_path / "daemon.log"
    daemon = start_daemon(env, log)

    def all_waiting() -> bool:
        with store.engine.connect() as conn:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM orders WHERE state = 'dispatch-authorized' "
                    "AND intent IS NULL AND lease_owner IS NULL"
                )
            ).scalar()
        return waiting == 10

    wait_for(all_waiting, 30, "every order to wait out the grace period")
    kill(daemon)
    run_to_completion(env, log)
    assert_every_effect_once(store, sandbox.ledger(), 10)


def test_start_handling_409_because_already_handling_is_reconciled(
    sandbox: SandboxProcess, store: Store, database_url: str, tmp_path: Path
) -> None:
    """Even with the intent lost, a 409 OMS003 from an order already handling is reconciled, not
    failed. (Polling: listening to the Orders Feed, the order would learn `invoiced` first and
    never send Start handling again, which `test_feed_crashes` covers.)"""
    import_lines(lines_of(1), store, utcnow())
    victim = order_id(0)
    hold(sandbox, victim, "start-handling", "after")
    env = client_env(database_url, sandbox.url, **FAST, ORCHESTRATOR_STATUS_SOURCE="poll")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(env, log)
    wait_for(lambda: held(sandbox), 30, "start-handling to be applied")
    kill(daemon)
    sandbox.control("holds/release", {"orderId": victim, "operation": "start-handling", "when": "after"})
    with store.engine.begin() as conn:  # as if the intent had never been written
        conn.execute(sa.text("UPDATE orders SET intent = NULL, intent_attempt = NULL, intent_at = NULL"))
    run_to_completion(env, log)
    ledger = sandbox.ledger()
    assert_every_effect_once(store, ledger, 1)
    assert ledger["orders"][0]["startHandlingRefused"] == 1
    row = store.find(victim)
    assert row is not None
    transitions = [e["message"] for e in store.events(row.id) if e["action"] == "start_handling"]
    assert any("OMS003" in (m or "") for m in transitions)


def test_unknown_outcome_waits_with_a_reason_instead_of_guessing(
    sandbox: SandboxProcess, store: Store, database_url: str, tmp_path: Path
) -> None:
    """The answer to Place was lost and VTEX then became unreachable: the order keeps its intent, is not
    failed, sends nothing again, and says why it waits."""
    import_lines(lines_of(1), store, utcnow())
    victim = order_id(0)
    hold(sandbox, victim, "place-order", "after")
    env = client_env(database_url, sandbox.url, **FAST, ORCHESTRATOR_UNKNOWN_OUTCOME_AFTER="1s")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(env, log)
    try:
        wait_for(lambda: held(sandbox), 30, "Place to be applied")
        sandbox.process.send_signal(signal.SIGKILL)  # VTEX is gone, the answer with it
        sandbox.process.wait(timeout=10)

        def explained() -> bool:
            row = store.find(victim)
            return bool(
                row and row.wait_reason and "cannot tell whether place-order took effect" in row.wait_reason
            )

        wait_for(explained, 30, "the order to explain why it waits")
        row = store.find(victim)
        assert row is not None and row.state == "imported" and row.intent == "place-order"
        calls = [e for e in store.events(row.id) if e["kind"] == "call" and e["action"] == "place-order"]
        assert len(calls) == 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)


def test_sigterm_during_a_busy_run(store: Store, database_url: str, tmp_path: Path) -> None:
    """SIGTERM with many calls in flight: exit 0 within the bound, no live lease left, a restart finishes."""
    sandbox = SandboxProcess("--grace-seconds", "1", "--latency-ms", "300", log=tmp_path / "sandbox.log")
    try:
        import_lines(lines_of(80), store, utcnow())
        env = client_env(database_url, sandbox.url, **FAST, ORCHESTRATOR_CONCURRENCY="40")
        log = tmp_path / "daemon.log"
        daemon = start_daemon(env, log)
        wait_for(lambda: sandbox.ledger()["summary"]["requests"] > 60, 30, "the run to be busy")
        daemon.send_signal(signal.SIGTERM)
        started = utcnow()
        assert daemon.wait(timeout=15) == 0
        assert (utcnow() - started).total_seconds() < 5 + 3, "must stop within the shutdown bound"
        events = log_events(log)
        stopped = [e for e in events if e["event"] == "daemon stopped"]
        assert stopped and stopped[0]["steps_done"] > 0
        with store.engine.connect() as conn:
            leased = conn.execute(
                sa.text("SELECT count(*) FROM orders WHERE lease_owner IS NOT NULL")
            ).scalar()
        assert leased == 0
        assert sum(c.count for c in store.state_counts() if c.state != "invoiced") > 0, "work must remain"
        run_to_completion(env, log, timeout=90)
        assert_every_effect_once(store, sandbox.ledger(), 80)
    finally:
        sandbox.stop()
