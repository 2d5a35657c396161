"""Operator tools: stuck-order rules on artificially aged orders, and the commands, in-process."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.clock import utcnow
from orchestrator.config.checks import ConfigurationError
from orchestrator.config.settings import load_settings
from orchestrator.config.stuck_rules import StuckRules, StuckRulesError
from orchestrator.intake.importer import import_lines
from orchestrator.ops.status import report
from orchestrator.sandbox import Sandbox
from orchestrator.store.store import Store
from orchestrator.store.tables import ORDERS
from tests.factories import import_lines as lines_of
from tests.factories import import_record, invoice_for, split_record
from tests.integration.test_cli import STATUS_KEYS

GRACE = timedelta(minutes=30)
RULES = StuckRules.parse("", GRACE)


def age(store: Store, order_id: str, by: timedelta, **values: Any) -> None:
    """Pretend the order entered its state (and anything else) `by` ago."""
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(ORDERS)
            .where(ORDERS.c.order_id == order_id)
            .values(state_changed_at=utcnow() - by, **values)
        )


def stuck_ids(store: Store, rules: StuckRules = RULES, **filters: Any) -> list[str]:
    return [entry["orderId"] for entry in report(store, utcnow(), rules, GRACE, **filters)["stuck"]]


# -- stuck rules -------------------------------------------------------------------------------------


def test_thresholds_default_to_what_fits_vtex_flow() -> None:
    """Quick steps 15 min; while VTEX holds the order, the grace period plus half of it; handling 1 h."""
    assert RULES.thresholds == {
        "imported": timedelta(minutes=15),
        "created": timedelta(minutes=15),
        "dispatch-authorized": timedelta(minutes=45),
        "ready-for-handling": timedelta(minutes=15),
        "handling": timedelta(hours=1),
        "canceling": timedelta(hours=1),
    }


def test_thresholds_can_be_set_for_all_states_or_per_state() -> None:
    """`2h` sets every state; `handling=4h` one state; the two combine."""
    rules = StuckRules.parse("2h,handling=4h", GRACE)
    assert rules.thresholds["imported"] == timedelta(hours=2)
    assert rules.thresholds["handling"] == timedelta(hours=4)
    with pytest.raises(StuckRulesError, match="invoiced"):
        StuckRules.parse("invoiced=1h", GRACE)


def test_an_order_just_under_its_threshold_is_not_stuck(store: Store) -> None:
    """14 minutes in imported is normal; 16 is stuck."""
    import_lines(lines_of(2), store, utcnow())
    age(store, "ABC-100000", timedelta(minutes=14))
    age(store, "ABC-100001", timedelta(minutes=16))
    assert stuck_ids(store) == ["ABC-100001"]


def test_waiting_out_the_grace_period_is_not_stuck_until_well_past_it(store: Store) -> None:
    """40 minutes in dispatch-authorized (30-minute grace) is fine; 50 is stuck and says why."""
    import_lines(lines_of(2), store, utcnow())
    age(store, "ABC-100000", timedelta(minutes=40), state="dispatch-authorized")
    age(
        store,
        "ABC-100001",
        timedelta(minutes=50),
        state="dispatch-authorized",
        vtex_status="window-to-cancel",
    )
    entries = report(store, utcnow(), RULES, GRACE)["stuck"]
    assert [e["orderId"] for e in entries] == ["ABC-100001"]
    assert "VTEX reports window-to-cancel" in entries[0]["reason"]
    assert "ORCHESTRATOR_GRACE_PERIOD" in entries[0]["suggestion"]


def test_failed_orders_are_always_stuck_with_where_the_cause_lies(store: Store) -> None:
    """A failed order is listed at once, with VTEX's reason and the command for where its cause
    lies: our data (correct the line, `import --replace`), or VTEX's account (`retry`)."""
    import_lines(lines_of(1), store, utcnow())
    age(
        store,
        "ABC-100000",
        timedelta(seconds=1),
        state="failed",
        failed_from="imported",
        last_error="place-order ABC-100000: HTTP 400 [FMT007] Payment total (1) differs",
        last_error_code="FMT007",
    )
    [entry] = report(store, utcnow(), RULES, GRACE)["stuck"]
    assert "VTEX refused the order" in entry["reason"] and "FMT007" in entry["reason"]
    assert "`orchestrator import <file> --replace`" in entry["suggestion"]
    assert entry["fix"] == "repair"  # a retry would send the same data and fail the same way
    age(store, "ABC-100000", timedelta(seconds=1), last_error_code="FMT005", last_error="SKU 9 unavailable")
    [entry] = report(store, utcnow(), RULES, GRACE)["stuck"]
    assert "the SKU is not available" in entry["reason"]
    assert "fix it in VTEX" in entry["suggestion"] and "orchestrator retry ABC-100000" in entry["suggestion"]
    assert entry["fix"] == "retry"  # the cause is the account's: fixed there, the same order goes
    age(store, "ABC-100000", timedelta(seconds=1), failed_from="handling", last_error_code="ORD039")
    [entry] = report(store, utcnow(), RULES, GRACE)["stuck"]
    assert "refused the step" in entry["reason"] and "--replace" not in entry["suggestion"]


def test_an_old_open_intent_is_stuck_whatever_the_state(store: Store) -> None:
    """A call whose outcome is unknown for longer than ORCHESTRATOR_UNKNOWN_OUTCOME_AFTER (15 min) is
    listed even in a young state."""
    import_lines(lines_of(1), store, utcnow())
    age(
        store,
        "ABC-100000",
        timedelta(minutes=1),
        intent="place-order",
        intent_at=utcnow() - timedelta(minutes=16),
    )
    [entry] = report(store, utcnow(), RULES, GRACE)["stuck"]
    assert entry["openIntent"] == "place-order"
    assert "cannot tell whether place-order took effect" in entry["reason"]
    assert "orchestrator check" in entry["suggestion"]


def test_handling_without_invoice_suggests_the_invoice_command(store: Store) -> None:
    """Two hours in handling without invoice data: attach it."""
    import_lines([json.dumps(import_record(1, with_invoice=False))], store, utcnow())
    age(store, "ABC-100001", timedelta(hours=2), state="handling")
    [entry] = report(store, utcnow(), RULES, GRACE)["stuck"]
    assert entry["reason"].startswith("handling for 2h")
    assert entry["suggestion"] == "`orchestrator invoice ABC-100001 --number <invoice number> --value 1100`"


def test_filters_by_state_affiliate_and_age(store: Store) -> None:
    """--state, --affiliate and --older-than narrow the list."""
    import_lines(lines_of(2, "ABC") + lines_of(2, "XYZ", start=10), store, utcnow())
    age(store, "ABC-100000", timedelta(hours=3))
    age(store, "ABC-100001", timedelta(hours=1), state="created")
    age(store, "XYZ-100010", timedelta(hours=5))
    assert stuck_ids(store) == ["XYZ-100010", "ABC-100000", "ABC-100001"]
    assert stuck_ids(store, states=["created"]) == ["ABC-100001"]
    assert stuck_ids(store, affiliate="XYZ") == ["XYZ-100010"]
    assert stuck_ids(store, older_than=timedelta(hours=2)) == ["XYZ-100010", "ABC-100000"]


def test_the_list_is_capped_but_the_total_is_counted(store: Store) -> None:
    """Only the oldest `limit` are listed; stuckTotal counts them all."""
    import_lines(lines_of(5), store, utcnow())
    for n in range(5):
        age(store, f"ABC-10000{n}", timedelta(hours=1 + n))
    data = report(store, utcnow(), RULES, GRACE, limit=2)
    assert data["stuckTotal"] == 5 and [e["orderId"] for e in data["stuck"]] == ["ABC-100004", "ABC-100003"]


# -- commands ----------------------------------------------------------------------------------------


def test_status_stuck_json_shape_is_pinned(served: tuple[Sandbox, CliRunner]) -> None:
    """The documented keys of `status --stuck --json`, at the top and for each stuck order."""
    _sandbox, runner = served
    runner.invoke(app, ["import", "-"], input=json.dumps(import_record(1, value=5, with_invoice=False)))
    runner.invoke(app, ["run", "--until-done"])
    data = json.loads(runner.invoke(app, ["status", "--stuck", "--json"]).output)
    assert set(data) == STATUS_KEYS
    assert set(data["stuckRules"]) == {"thresholdSeconds", "openIntentSeconds"}
    [entry] = data["stuck"]
    assert set(entry) == {
        "orderId",
        "affiliateId",
        "state",
        "since",
        "secondsInState",
        "vtexStatus",
        "vtexStatusSeenAt",
        "lastError",
        "lastErrorCode",
        "attempts",
        "nextTryAt",
        "waitingFor",
        "openIntent",
        "reason",
        "suggestion",
        "fix",
    }
    assert (entry["state"], entry["lastErrorCode"]) == ("failed", "FMT007")


def test_invoice_command_attaches_and_the_daemon_sends_it(served: tuple[Sandbox, CliRunner]) -> None:
    """--number/--value build a whole-order Output invoice from the order's items; the run finishes it."""
    sandbox, runner = served
    runner.invoke(app, ["import", "-"], input=json.dumps(import_record(1, with_invoice=False)))
    runner.invoke(app, ["run", "--until-done"])
    result = runner.invoke(
        app,
        [
            "invoice",
            "ABC-100001",
            "--number",
            "NF777",
            "--value",
            "1100",
            "--url",
            "https://nfe.example.com/NF777.xml",
        ],
    )
    assert result.exit_code == 0 and "invoice NF777 attached to ABC-100001" in result.output
    assert runner.invoke(app, ["run", "--until-done"]).exit_code == 0
    order = sandbox.oms.find("ABC-100001")
    assert order is not None and order.status == "invoiced"
    assert order.packages["NF777"]["invoiceUrl"] == "https://nfe.example.com/NF777.xml"


def test_invoice_from_a_file_and_refusals(served: tuple[Sandbox, CliRunner], tmp_path: Path) -> None:
    """--file takes a VTEX invoice body; a number VTEX mishandles or a value over the order's is
    refused with the reason."""
    _sandbox, runner = served
    record = import_record(2, with_invoice=False)
    runner.invoke(app, ["import", "-"], input=json.dumps(record))
    bad = runner.invoke(app, ["invoice", "ABC-100002", "--number", "NF 1", "--value", "1100"])
    assert bad.exit_code == 3 and "letters, digits, '-' and '_'" in bad.output
    over = runner.invoke(app, ["invoice", "ABC-100002", "--number", "NF1", "--value", "1101"])
    assert over.exit_code == 3 and "is 1101 but the order is worth 1100" in over.output
    path = tmp_path / "invoice.json"
    path.write_text(json.dumps(invoice_for(record["order"], "NF888")))
    assert (
        "invoice NF888 attached" in runner.invoke(app, ["invoice", "ABC-100002", "--file", str(path)]).output
    )


def test_track_sends_the_tracking_number_once(served: tuple[Sandbox, CliRunner]) -> None:
    """On an invoiced order, `track` sends the partial invoice update at once, and only once."""
    sandbox, runner = served
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(1)))
    runner.invoke(app, ["run", "--until-done"])
    args = ["track", "ABC-100000", "--tracking-number", "BR123456789", "--courier", "Correios"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, args)
    assert "already sent" in again.output
    package = sandbox.oms.find("ABC-100000").packages["NF100000"]  # type: ignore[union-attr]
    assert (package["trackingNumber"], package["courier"]) == ("BR123456789", "Correios")
    assert sandbox.oms.ledger.get("ABC-100000").tracking_updates == 1  # type: ignore[union-attr]
    history = json.loads(runner.invoke(app, ["show", "ABC-100000", "--json"]).output)["events"]
    assert [e["action"] for e in history if e["kind"] == "call"][-1] == "send-tracking"


def test_track_file_is_checked_whole_before_anything_is_attached(
    served: tuple[Sandbox, CliRunner], tmp_path: Path
) -> None:
    """One bad line (unknown order) and nothing is attached; a good file attaches every line."""
    sandbox, runner = served
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(3)))
    runner.invoke(app, ["run", "--until-done"])
    lines = [json.dumps({"orderId": f"ABC-10000{n}", "trackingNumber": f"TR{n}"}) for n in range(3)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*lines, json.dumps({"orderId": "ABC-999", "trackingNumber": "X"})]))
    refused = runner.invoke(app, ["track", "--file", str(bad)])
    assert refused.exit_code == 3 and "line 4: orderId: no order 'ABC-999'" in refused.output
    assert sandbox.oms.ledger.get("ABC-100000").tracking_updates == 0  # type: ignore[union-attr]
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(lines))
    result = runner.invoke(app, ["track", "--file", str(good)])
    assert result.exit_code == 0 and "3 tracking number(s) attached; 0 unchanged" in result.output
    assert "3 sent to VTEX now" in result.output


def test_show_vtex_puts_vtex_view_beside_ours(served: tuple[Sandbox, CliRunner]) -> None:
    """--vtex fetches the order from VTEX; --json carries it under "vtex"."""
    _sandbox, runner = served
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(1)))
    runner.invoke(app, ["run", "--until-done"])
    shown = runner.invoke(app, ["show", "ABC-100000", "--vtex"])
    assert "Here and in VTEX" in shown.output and "NF100000 (Output, 1100)" in shown.output
    data = json.loads(runner.invoke(app, ["show", "ABC-100000", "--vtex", "--json"]).output)
    assert data["vtex"]["status"] == "invoiced" and data["vtexError"] is None


def test_config_shows_sources_and_masks_secrets(served: tuple[Sandbox, CliRunner], tmp_path: Path) -> None:
    """`config --json`: every setting, its value and where it came from; the token is masked."""
    _sandbox, runner = served
    path = tmp_path / "orchestrator.toml"
    path.write_text("concurrency = 9\n")
    data = json.loads(runner.invoke(app, ["--config", str(path), "config", "--json"]).output)
    assert data["vtex_app_token"] == {"value": "********", "source": "environment"}
    assert data["concurrency"] == {"value": 9, "source": f"file {path}"}
    assert data["vtex_max_rpm"] == {"value": 3000, "source": "default"}


def test_check_says_what_works_and_what_does_not(served: tuple[Sandbox, CliRunner]) -> None:
    """Good credentials: exit 0; wrong token: exit 1 naming the rejection; nothing listening: exit 1."""
    _sandbox, runner = served
    if (runner.env or {})["ORCHESTRATOR_DATABASE_URL"].startswith("sqlite"):
        missing = runner.invoke(app, ["check"])  # no database yet: check says so and creates none
        assert missing.exit_code == 1 and "no database at" in missing.output
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    good = runner.invoke(app, ["check"])
    assert good.exit_code == 0 and "accepts the credentials (HTTP 404)" in good.output
    env = dict(runner.env or {})
    bad = CliRunner(env={**env, "VTEX_APP_TOKEN": "wrong"}).invoke(app, ["check"])
    assert bad.exit_code == 1 and "rejected the credentials (HTTP 401)" in bad.output
    gone = CliRunner(env={**env, "VTEX_BASE_URL": "http://127.0.0.1:9"}).invoke(app, ["check"])
    assert gone.exit_code == 1 and "ConnectError" in gone.output


def test_import_shows_progress_when_asked(served: tuple[Sandbox, CliRunner]) -> None:
    """--progress draws a validating and a writing bar for a large file."""
    _sandbox, runner = served
    imported = runner.invoke(app, ["import", "-", "--progress"], input="\n".join(lines_of(1000)))
    assert imported.exit_code == 0 and "validating" in imported.output and "writing" in imported.output


def test_run_until_done_shows_progress_when_asked(served: tuple[Sandbox, CliRunner]) -> None:
    """--progress shows how many orders are settled while the daemon works."""
    _sandbox, runner = served
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(3)))
    ran = runner.invoke(app, ["run", "--until-done", "--progress"], env={"ORCHESTRATOR_LOG_LEVEL": "warning"})
    assert ran.exit_code == 0, ran.output
    assert "3/3 settled: invoiced 3" in ran.output


def test_account_paused_run_until_done_exits_7(served: tuple[Sandbox, CliRunner]) -> None:
    """Batch use: with rejected credentials `run --until-done` stops at once and exits 7."""
    _sandbox, runner = served
    env = dict(runner.env or {})
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(2)))
    result = CliRunner(env={**env, "VTEX_APP_TOKEN": "wrong"}).invoke(app, ["run", "--until-done"])
    assert result.exit_code == 7 and "account paused" in result.output


def test_stuck_thresholds_come_from_settings() -> None:
    """ORCHESTRATOR_STUCK_AFTER reaches the rules; a bad value is refused when settings load."""
    assert load_settings(None, stuck_after="imported=30m").stuck_rules.thresholds["imported"] == timedelta(
        minutes=30
    )
    with pytest.raises(ConfigurationError, match="ORCHESTRATOR_STUCK_AFTER"):
        load_settings(None, stuck_after="paid=1h")


def test_track_names_the_invoice_of_an_order_invoiced_in_parts(served: tuple[Sandbox, CliRunner]) -> None:
    """With two invoices, `track` needs --invoice (refused naming them otherwise); the tracking
    number then goes to that invoice's package, once. One known before its invoice goes out is
    sent inside the invoice: no tracking update at all."""
    sandbox, runner = served
    record = split_record(1, parts=2)
    record["invoices"][1].update(trackingNumber="BR-INSIDE", courier="Correios")
    runner.invoke(app, ["import", "-"], input=json.dumps(record))
    assert runner.invoke(app, ["run", "--until-done"]).exit_code == 0
    unnamed = runner.invoke(app, ["track", "ABC-100001", "--tracking-number", "BR1"])
    assert unnamed.exit_code == 3 and "NF100001-1, NF100001-2): say which one" in unnamed.output
    named = runner.invoke(app, ["track", "ABC-100001", "--tracking-number", "BR1", "--invoice", "NF100001-1"])
    assert named.exit_code == 0, named.output
    packages = sandbox.oms.find("ABC-100001").packages  # type: ignore[union-attr]
    assert (packages["NF100001-1"]["trackingNumber"], packages["NF100001-2"]["trackingNumber"]) == (
        "BR1",
        "BR-INSIDE",
    )
    assert sandbox.oms.ledger.get("ABC-100001").tracking_updates == 1  # type: ignore[union-attr]
