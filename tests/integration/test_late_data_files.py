"""`track --file` and `invoice --file`: checked against every order first, then all written in one
transaction or nothing; `--dry-run` says what would be done. `cancel` takes several orders."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.sandbox import Sandbox
from tests.factories import import_lines as lines_of
from tests.factories import import_record, invoice_for


def test_track_file_refused_by_one_order_sends_nothing(
    served: tuple[Sandbox, CliRunner], tmp_path: Path
) -> None:
    """The reported case: two updates went out before the third line was refused. Now the refusal
    of any line (here: a canceled order) leaves every order as it was, and VTEX untouched."""
    sandbox, runner = served
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(3)))
    assert runner.invoke(app, ["run", "--until-done"]).exit_code == 0
    runner.invoke(app, ["import", "-"], input=json.dumps(import_record(7)))
    assert runner.invoke(app, ["cancel", "ABC-100007"]).exit_code == 0
    requests = sandbox.oms.ledger.summary()["requests"]
    lines = [json.dumps({"orderId": f"ABC-10000{n}", "trackingNumber": f"TR{n}"}) for n in (0, 1, 7, 2)]
    path = tmp_path / "tracking.jsonl"
    path.write_text("\n".join(lines) + "\n")

    refused = runner.invoke(app, ["track", "--file", str(path)])
    assert refused.exit_code == 3
    assert (
        "nothing attached" in refused.output
        and "line 3: ABC-100007: ABC-100007 is canceled" in refused.output
    )
    assert sandbox.oms.ledger.summary()["requests"] == requests
    shown = json.loads(runner.invoke(app, ["show", "ABC-100000", "--json"]).output)
    assert [i["trackingNumber"] for i in shown["order"]["invoices"]] == [None]

    path.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    dry = runner.invoke(app, ["track", "--file", str(path), "--dry-run"])
    assert dry.exit_code == 0 and "would be: tracking TR0 attached to ABC-100000" in dry.output
    assert "3 tracking number(s) would be attached; 0 unchanged" in dry.output
    assert sandbox.oms.ledger.summary()["requests"] == requests
    done = runner.invoke(app, ["track", "--file", str(path)])
    assert done.exit_code == 0 and "3 sent to VTEX now" in done.output
    again = runner.invoke(app, ["track", "--file", str(path)])
    assert again.exit_code == 0 and "0 tracking number(s) attached; 3 unchanged" in again.output


def test_invoice_file_attaches_many_or_none(served: tuple[Sandbox, CliRunner], tmp_path: Path) -> None:
    """`invoice --file` attaches every invoice of the file, or none when one line is wrong (each problem with
    its line)."""
    _sandbox, runner = served
    records = [import_record(n, with_invoice=False) for n in range(3)]
    runner.invoke(app, ["import", "-"], input="\n".join(json.dumps(r) for r in records))
    entries = [
        {"orderId": f"ABC-10000{n}", "invoice": invoice_for(r["order"], f"NF{n}")}
        for n, r in enumerate(records)
    ]
    wrong = dict(entries[2], invoice=dict(entries[2]["invoice"], invoiceValue=1101))  # over its value
    path = tmp_path / "invoices.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in [*entries[:2], wrong]) + "\n")
    refused = runner.invoke(app, ["invoice", "--file", str(path)])
    assert refused.exit_code == 3 and "line 3: ABC-100002:" in refused.output
    listed = json.loads(runner.invoke(app, ["list", "--json"]).output)["orders"]
    assert [o["invoiceNumber"] for o in listed] == [None, None, None]

    path.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    assert (
        "3 invoice(s) would be attached"
        in runner.invoke(app, ["invoice", "--file", str(path), "--dry-run"]).output
    )
    attached = runner.invoke(app, ["invoice", "--file", str(path)])
    assert attached.exit_code == 0 and "3 invoice(s) attached; 0 unchanged" in attached.output
    assert runner.invoke(app, ["run", "--until-done"]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["list", "--json", "--sort", "order-id"]).output)["orders"]
    assert [(o["state"], o["invoiceNumber"]) for o in listed] == [("invoiced", f"NF{n}") for n in range(3)]


def test_cancel_takes_several_orders_and_says_which_it_could_not_cancel(
    served: tuple[Sandbox, CliRunner],
) -> None:
    """`cancel` takes several orders, cancels those it can and names the ones it could not (exit 3)."""
    _sandbox, runner = served
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(2)))
    result = runner.invoke(app, ["cancel", "ABC-100000", "ABC-999", "ABC-100001"])
    assert result.exit_code == 3
    assert "ABC-100000 canceled" in result.output and "ABC-100001 canceled" in result.output
    assert "not canceled: ABC-999" in result.output
