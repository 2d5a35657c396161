"""No operator command changes what an open intent will send: it reconciles the intent first, or
refuses. (An `invoice` accepted under an open send-invoice made VTEX hold two invoices.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings, load_settings
from orchestrator.intake.importer import import_lines
from orchestrator.ops.operations import OpenIntent, attach_invoice, attach_tracking, retry
from orchestrator.ops.step_now import step_order_now_once
from orchestrator.runner import run_daemon
from orchestrator.sandbox import FaultConfig, Sandbox, SandboxConfig, SandboxOms, ServerThread
from orchestrator.store.open import open_store
from orchestrator.store.rows import OrderRow
from orchestrator.store.store import Store
from tests.factories import import_record, invoice_for

ORDER = "ABC-100001"


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.sandbox = Sandbox(SandboxOms(SandboxConfig(grace_seconds=0.2)))
        self.server = ServerThread(self.sandbox)
        self.server.start()
        config = self.sandbox.oms.config
        self.env = {
            "ORCHESTRATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'intents.db'}",
            "VTEX_BASE_URL": self.server.url,
            "VTEX_APP_KEY": config.app_key,
            "VTEX_APP_TOKEN": config.app_token,
            "ORCHESTRATOR_GRACE_PERIOD": "0.2s",
            "ORCHESTRATOR_TICK": "100ms",
            "ORCHESTRATOR_LOG_FORMAT": "json",
        }
        self.settings: Settings = load_settings(
            None,
            database_url=self.env["ORCHESTRATOR_DATABASE_URL"],
            vtex_base_url=self.server.url,
            vtex_app_key=config.app_key,
            vtex_app_token=config.app_token,
            grace_period="0.2s",
            tick_interval="100ms",
        )
        self.store: Store = open_store(self.settings.database_url)
        self.runner = CliRunner(env=self.env)
        self.record = import_record(1, with_invoice=False)

    def drive(self) -> None:
        asyncio.run(
            asyncio.wait_for(
                run_daemon(self.settings, self.store, until_done=True, install_signals=False), 30
            )
        )

    def step(self) -> OrderRow | None:
        return step_order_now_once(self.settings, self.store, ORDER)

    def row(self) -> OrderRow:
        found = self.store.find(ORDER)
        assert found is not None
        return found

    def invoice_sent_but_answer_lost(self, number: str) -> None:
        """The order waits in handling for its invoice; `number` is attached and sent; VTEX applies
        it and the answer is lost, so the send-invoice intent stays open."""
        import_lines([json.dumps(self.record)], self.store, utcnow())
        self.drive()
        assert self.row().state == "handling"
        attach_invoice(self.store, ORDER, invoice_for(self.record["order"], number))
        self.sandbox.faults.configure(FaultConfig(drop_after=1.0, only_writes=True))
        self.step()
        self.sandbox.faults.configure(FaultConfig())
        row = self.row()
        assert (row.intent, row.invoice_sent) == ("send-invoice", False)
        assert self.sandbox.oms.find(ORDER).packages.keys() == {number}  # type: ignore[union-attr]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    yield made
    made.server.stop()


def test_invoice_under_an_open_send_invoice_reconciles_first_and_never_sends_a_second(setup: Setup) -> None:
    """VTEX already has NF-OLD: `invoice --number NF-NEW` (a correction of an invoice that seemed
    unsent) finds that out first (VTEX took it, and the order is invoiced by it), and is refused."""
    setup.invoice_sent_but_answer_lost("NFOLD")
    result = setup.runner.invoke(app, ["invoice", ORDER, "--number", "NFNEW", "--value", "1100"])
    assert result.exit_code == 3, result.output
    assert "is invoiced: VTEX takes no more sale invoices" in result.output
    row = setup.row()
    assert (row.intent, row.invoice_number) == (None, "NFOLD") and row.invoice_sent
    setup.drive()
    assert setup.row().state == "invoiced"
    entry = setup.sandbox.oms.ledger.get(ORDER)
    assert entry is not None and entry.invoice_numbers == ["NFOLD"]


def test_invoice_under_an_open_intent_is_refused_while_vtex_cannot_say(setup: Setup) -> None:
    """VTEX unreachable: nothing changes, and the message says why and what to do."""
    setup.invoice_sent_but_answer_lost("NFOLD")
    setup.sandbox.faults.configure(FaultConfig(error_before=1.0))
    result = setup.runner.invoke(app, ["invoice", ORDER, "--number", "NFNEW", "--value", "1100"])
    assert result.exit_code == 3, result.output
    assert "send-invoice whose outcome VTEX has not confirmed" in result.output
    assert "Nothing was changed" in result.output
    row = setup.row()
    assert (row.intent, row.invoice_number) == ("send-invoice", "NFOLD")
    setup.sandbox.faults.configure(FaultConfig())
    setup.drive()
    entry = setup.sandbox.oms.ledger.get(ORDER)
    assert entry is not None and entry.invoice_numbers == ["NFOLD"]


def test_track_under_an_open_send_tracking_reconciles_first(setup: Setup) -> None:
    """A tracking update whose answer was lost: a new `track` first learns VTEX has the first one."""
    import_lines([json.dumps(import_record(1))], setup.store, utcnow())
    setup.drive()
    assert setup.row().state == "invoiced"
    attach_tracking(setup.store, ORDER, {"trackingNumber": "TR1"})
    setup.sandbox.faults.configure(FaultConfig(drop_after=1.0, only_writes=True))
    setup.step()
    setup.sandbox.faults.configure(FaultConfig())
    assert setup.row().intent == "send-tracking"
    second = setup.runner.invoke(app, ["track", ORDER, "--tracking-number", "TR2"])
    assert second.exit_code == 0, second.output
    package = setup.sandbox.oms.find(ORDER).packages["NF100001"]  # type: ignore[union-attr]
    assert package["trackingNumber"] == "TR2"
    row = setup.row()
    assert row.intent is None and row.tracking_number == "TR2" and row.tracking_sent


def test_the_library_refuses_to_touch_an_open_intent(setup: Setup) -> None:
    """Below the CLI, the rule holds too: the operations raise OpenIntent and change nothing."""
    setup.invoice_sent_but_answer_lost("NFOLD")
    before = setup.row()
    with pytest.raises(OpenIntent):
        attach_invoice(setup.store, ORDER, invoice_for(setup.record["order"], "NFNEW"))
    setup.store.update_unleased(
        ORDER, utcnow(), {"state": "failed", "failed_from": "handling"}, [], before.version
    )
    with pytest.raises(OpenIntent):
        retry(setup.store, ORDER, setup.settings)
    assert setup.row().invoice_number == "NFOLD"


def test_writing_an_intent_makes_a_new_version(setup: Setup) -> None:
    """An operator change read before an intent was written can never land after it, even when
    the worker's lease has expired (a paused worker)."""
    import_lines([json.dumps(setup.record)], setup.store, utcnow())
    [claimed] = setup.store.claim_due("w1", utcnow(), timedelta(0), 1)  # lease expires at once
    read_by_operator = setup.row()
    claimed.intent, claimed.intent_attempt, claimed.intent_at = "place-order", 1, utcnow()
    assert setup.store.commit([claimed], [], "w1") == ([True], [])
    changed = setup.store.update_unleased(
        ORDER, utcnow(), {"cancel_reason": "stale read"}, [], read_by_operator.version
    )
    assert not changed and setup.row().cancel_reason is None
