"""A key that lacks one License Manager resource, end to end over a real socket: VTEX's 403 is about
that kind of call only. The account's other calls go on, `status` and `check` name the missing
resource, and once it is granted the waiting calls go out while the daemon keeps running. Each
call's VTEX operation id is in `show`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.config.settings import load_settings
from orchestrator.sandbox import Sandbox
from orchestrator.store.open import open_store
from states import Waiting
from tests.daemon_runs import run_until, states
from tests.factories import import_lines as lines_of


def test_a_key_without_notify_invoice_stalls_only_the_invoices(served: tuple[Sandbox, CliRunner]) -> None:
    """Place, Authorize and Start handling go on for every order; each invoice waits, naming
    'Notify invoice'; the account is never paused. `status` and `check` name the resource. Granted
    in VTEX and `resume`d, the invoices go out without restarting the daemon."""
    sandbox, runner = served
    sandbox.oms.config.forbidden = ("send-invoice",)
    assert runner.invoke(app, ["import", "-"], input="\n".join(lines_of(3))).exit_code == 0
    env = dict(runner.env or {})
    settings = load_settings(
        None,
        database_url=env["ORCHESTRATOR_DATABASE_URL"],
        vtex_base_url=env["VTEX_BASE_URL"],
        vtex_app_key=env["VTEX_APP_KEY"],
        vtex_app_token=env["VTEX_APP_TOKEN"],
        grace_period="0.3s",
        tick_interval="100ms",
    )
    store = open_store(settings.database_url)
    key = settings.account().key

    def all_waiting() -> bool:
        rows = [store.find(f"ABC-{100000 + n}") for n in range(3)]
        return all(
            r is not None and r.state == "handling" and r.wait_code == Waiting.PERMISSION for r in rows
        )

    run_until(settings, store, all_waiting, timeout=30)
    assert states(store) == {"handling": 3}
    assert store.account_pause(key) is None
    ledger = sandbox.oms.ledger
    assert all(e.places_accepted == 1 and e.start_handling_accepted == 1 for e in ledger.entries())
    refused = [r for r in ledger.request_log if r["status"] == 403]
    # Calls already in flight when the first 403 came are answered too; after it, none is sent.
    assert {r["operation"] for r in refused} == {"send-invoice"}
    assert sorted(r["orderId"] for r in refused) == sorted({r["orderId"] for r in refused})

    status = runner.invoke(app, ["status"])
    said = " ".join(status.output.split())
    assert "lacks the License Manager resource 'Notify invoice'" in said
    assert "send-invoice, send-tracking wait, the account's other calls go on" in said
    report = json.loads(runner.invoke(app, ["status", "--json"]).output)
    missing = report["missingPermissions"]
    assert [(m["resource"], m["calls"]) for m in missing] == [
        ("Notify invoice", ["send-invoice", "send-tracking"])
    ]

    checked = runner.invoke(app, ["check", "--json"])
    lines = json.loads(checked.output)["results"]
    verdicts = {
        line["message"].split("'")[1]: line["ok"] for line in lines if line.get("check") == "VTEX permission"
    }
    assert verdicts == {
        "fulfillment orders (VTEX names no resource for them: ask VTEX support)": True,
        "View order": True,
        "Change order workflow status": True,
        "Notify invoice": False,
        "Cancel order": True,
    }
    assert checked.exit_code != 0

    shown = runner.invoke(app, ["show", "ABC-100000"])
    place_id = next(
        r["operationId"]
        for r in ledger.request_log
        if r["orderId"] == "ABC-100000" and r["operation"] == "place-order"
    )
    assert f"VTEX operation id {place_id}" in " ".join(shown.output.split())

    resume: dict[str, Any] = {}

    def grant_then_resume(elapsed: float) -> None:
        """The permission is granted in VTEX, then `orchestrator resume` runs (a real process)
        while the daemon keeps running."""
        if elapsed > 0.5 and "process" not in resume:
            sandbox.oms.config.forbidden = ()
            resume["process"] = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "resume"],
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

    daemon = run_until(
        settings, store, lambda: states(store) == {"invoiced": 3}, timeout=60, during=grant_then_resume
    )
    output, _ = resume["process"].communicate(timeout=30)
    assert states(store) == {"invoiced": 3}, (output, [store.find(f"ABC-{100000 + n}") for n in range(3)])
    assert "calls needing 'Notify invoice' go again" in " ".join(output.split())
    assert daemon.stop_error is None
    assert store.permission_pauses(key) == []
    assert all(len(e.invoice_numbers) == 1 for e in ledger.entries() if e.order_id.startswith("ABC-"))
