"""Repairing an order VTEX refused for our data, end to end: the corrected line replaces it
(`import --replace`), it is placed again and invoiced, and the history keeps both bodies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.clock import utcnow
from orchestrator.config.settings import Settings
from orchestrator.intake.importer import import_lines
from orchestrator.ops.status import report
from orchestrator.sandbox import Sandbox, ServerThread
from orchestrator.store.open import open_store
from tests.factories import import_record
from tests.integration.test_permanent_errors import drive


def test_a_refused_order_is_corrected_placed_again_and_invoiced(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """An order VTEX refused is corrected with `import --replace`, placed again and invoiced; the other
    orders are untouched."""
    wrong = import_record(1, with_invoice=False)  # the invoice would not add up either
    wrong["order"]["marketplacePaymentValue"] = 999
    right = import_record(1)
    other = import_record(2)
    sandbox = make_sandbox(grace_seconds=0.5)
    with ServerThread(sandbox) as server:
        settings = make_settings(sandbox, server.url)
        store = open_store(settings.database_url)
        import_lines([json.dumps(wrong)], store, utcnow())
        drive(settings, store)
        assert store.find("ABC-100001").last_error_code == "FMT007"  # type: ignore[union-attr]
        [stuck] = report(store, utcnow(), settings.stuck_rules, settings.grace_period)["stuck"]
        assert "--replace" in stuck["suggestion"] and "in VTEX" not in stuck["suggestion"]

        runner = CliRunner(env={"ORCHESTRATOR_DATABASE_URL": settings.database_url})
        corrected = tmp_path / "corrected.jsonl"
        corrected.write_text(json.dumps(other) + "\n" + json.dumps(right) + "\n")
        plain = runner.invoke(app, ["import", str(corrected)])
        assert plain.exit_code == 3, plain.output
        assert "line 2: order.marketplacePaymentValue: differs from the stored ABC-100001" in plain.output
        assert "--replace" in plain.output
        assert store.find("ABC-100002") is None  # all or nothing: the new line waits too

        replaced = runner.invoke(app, ["import", str(corrected), "--replace"])
        assert replaced.exit_code == 0, replaced.output
        assert "replaced: ABC-100001 (was failed: FMT007)" in replaced.output
        assert "imported 1 order(s); 1 replaced" in replaced.output
        drive(settings, store)

    row = store.find("ABC-100001")
    assert row is not None and row.state == "invoiced" and row.value == 1100
    assert sandbox.oms.ledger.requests_by_operation["place-order"] == 3  # refused, then two placed
    [event] = [e for e in store.events(row.id) if e["action"] == "replace"]
    assert event["detail"]["previous"]["order"]["marketplacePaymentValue"] == 999
    assert event["detail"]["new"]["order"]["marketplacePaymentValue"] == 1100
    shown = json.loads(runner.invoke(app, ["show", "100001", "--json"]).output)
    assert [e["detail"]["fields"] for e in shown["events"] if e["action"] == "replace"] == [
        ["order.marketplacePaymentValue", "invoice"]
    ]

    # Now VTEX has it: the same correction is refused, naming why and what to do instead.
    again = runner.invoke(app, ["import", str(corrected), "--replace"])
    assert again.exit_code == 0 and "already present, unchanged" in again.output
    wrong_again = tmp_path / "wrong.jsonl"
    wrong_again.write_text(json.dumps(wrong) + "\n")
    refused = runner.invoke(app, ["import", str(wrong_again), "--replace"])
    assert refused.exit_code == 3
    assert "VTEX accepted and invoiced ABC-100001; an accepted order is never replaced" in refused.output
