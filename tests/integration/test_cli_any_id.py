"""Every command that names an order takes any id `show` takes (order id, marketplace order id,
invoice number), with one "not found" message and exit code; `status --stuck` reads at 80
columns; `import --dry-run` says what an import would do and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.sandbox import ServerThread
from orchestrator.store.open import open_store
from tests.factories import import_lines as lines_of
from tests.factories import import_record

NOT_FOUND = "no order has 'ZZZ-9' as order id, marketplace order id or invoice number"


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    return cli_env


def test_every_order_command_takes_any_id_and_says_not_found_one_way(
    env: dict[str, str], sandbox_server: ServerThread, tmp_path: Path
) -> None:
    """invoice by marketplace order id, track and return by invoice number, retry and cancel by
    marketplace order id; an unknown id is the same line and exit 4 for each of them."""
    runner = CliRunner(env={**env, "COLUMNS": "200"})
    waiting = import_record(1, with_invoice=False)
    failing = import_record(2, with_invoice=False)
    failing["order"]["marketplacePaymentValue"] = 999  # VTEX refuses it: FMT007
    imported = runner.invoke(app, ["import", "-"], input="\n".join(json.dumps(r) for r in (waiting, failing)))
    assert imported.exit_code == 0, imported.output
    invoiced = runner.invoke(app, ["invoice", "100001", "--number", "NF-ANY", "--value", "1100"])
    assert invoiced.exit_code == 0 and "invoice NF-ANY attached to ABC-100001" in invoiced.output
    assert runner.invoke(app, ["run", "--until-done"]).exit_code == 6  # the refused one failed
    tracked = runner.invoke(app, ["track", "NF-ANY", "--tracking-number", "BR9"])
    assert tracked.exit_code == 0 and "tracking BR9 attached to ABC-100001" in tracked.output
    back = tmp_path / "return.json"
    back.write_text(
        json.dumps(
            {
                "type": "Input",
                "issuanceDate": "2026-12-01T10:00:00-03:00",
                "invoiceNumber": "RT-ANY",
                "invoiceValue": 900,
                "items": [{"id": "5", "price": 900, "quantity": 1}],
            }
        )
    )
    returned = runner.invoke(app, ["return", "NF-ANY", "--file", str(back)])
    assert returned.exit_code == 0 and "return RT-ANY registered for ABC-100001" in returned.output
    later = json.loads(runner.invoke(app, ["show", "RT-ANY", "--json"]).output)  # not the first invoice
    assert later["order"]["orderId"] == "ABC-100001"
    retried = runner.invoke(app, ["retry", "100002"])
    assert retried.exit_code == 0 and "ABC-100002 back in" in retried.output
    canceled = runner.invoke(app, ["cancel", "100002"])
    assert canceled.exit_code in (0, 3) and "ABC-100002" in canceled.output
    for command in (
        ["show", "ZZZ-9"],
        ["retry", "ZZZ-9"],
        ["cancel", "ZZZ-9"],
        ["invoice", "ZZZ-9", "--number", "N1", "--value", "1"],
        ["track", "ZZZ-9", "--tracking-number", "T"],
        ["return", "ZZZ-9", "--number", "R1", "--value", "1"],
    ):
        result = runner.invoke(app, command)
        assert (result.exit_code, NOT_FOUND in result.output) == (4, True), (command, result.output)


def test_status_stuck_fits_80_columns_with_each_command_whole(env: dict[str, str]) -> None:
    """Three stuck orders at 80 columns: one block each, prose wrapped at words within 80
    columns, every suggested command on a line of its own and whole."""
    runner = CliRunner(env={**env, "COLUMNS": "80"})
    records = []
    for n in range(3):
        record = import_record(n, with_invoice=False)
        record["order"]["marketplacePaymentValue"] = 999  # each fails with FMT007
        records.append(json.dumps(record))
    runner.invoke(app, ["import", "-"], input="\n".join(records))
    runner.invoke(app, ["run", "--until-done"])
    result = runner.invoke(app, ["status", "--stuck"])
    lines = result.output.splitlines()
    commands = [line for line in lines if line.startswith("    orchestrator ")]
    assert len(commands) >= 3, result.output
    assert all(len(line) <= 80 for line in lines if line not in commands), result.output
    assert sum(1 for line in lines if line.startswith("ABC-1000")) == 3
    assert len(lines) < 40, result.output  # was 107 for three orders


def test_import_dry_run_writes_nothing_and_says_the_same(env: dict[str, str], database_url: str) -> None:
    """A dry run reports the problems a real import would, or what it would import; nothing is
    written either way."""
    runner = CliRunner(env={**env, "COLUMNS": "200"})
    runner.invoke(app, ["migrate"])
    good = "\n".join(lines_of(2))
    bad = "\n".join([*lines_of(1), json.dumps({"affiliateId": "ABC"})])
    dry_bad = runner.invoke(app, ["import", "-", "--dry-run"], input=bad)
    real_bad = runner.invoke(app, ["import", "-"], input=bad)
    assert dry_bad.exit_code == real_bad.exit_code == 3
    assert "line 2: order: is required" in dry_bad.output and dry_bad.output == real_bad.output
    dry = runner.invoke(app, ["import", "-", "--dry-run"], input=good)
    assert dry.exit_code == 0 and "dry run, nothing written: would have imported 2 order(s)" in dry.output
    store = open_store(database_url)
    assert store.find("ABC-100000") is None and store.state_counts() == []
    assert "imported 2 order(s)" in runner.invoke(app, ["import", "-"], input=good).output
    again = runner.invoke(app, ["import", "-", "--dry-run"], input=good)
    assert "would have imported 0 order(s); 2 already present, unchanged" in again.output
