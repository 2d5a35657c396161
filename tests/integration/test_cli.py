"""The `orchestrator` command, in-process (typer's runner) and as a real process with a signal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.store.migrate import head_revision
from tests.factories import import_lines as lines_of
from tests.factories import import_record

EXAMPLES = Path(__file__).resolve().parents[2] / "orchestrator" / "examples" / "orders.jsonl"

# The top-level keys of `status --json`; only ever added to.
STATUS_KEYS = {
    "generatedAt",
    "counts",
    "oldest",
    "accounts",
    "missingPermissions",
    "feeds",
    "throttled",
    "daemons",
    "canceledInVtex",
    "partlyInvoiced",
    "returned",
    "stuckRules",
    "stuckTotal",
    "stuck",
}


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    """Every command runs against both backends (the `database_url` fixture is parametrized)."""
    return {**cli_env, "COLUMNS": "200"}


@pytest.fixture
def runner(env: dict[str, str]) -> CliRunner:
    return CliRunner(env=env)


def test_import_prints_how_many_were_imported(runner: CliRunner) -> None:
    """Importing the shipped examples reports 25; importing again reports them as already present."""
    first = runner.invoke(app, ["import", str(EXAMPLES)])
    assert first.exit_code == 0, first.output
    assert "imported 25 order(s)" in first.output
    again = runner.invoke(app, ["import", str(EXAMPLES)])
    assert again.exit_code == 0 and "imported 0 order(s); 25 already present" in again.output


def test_import_from_stdin(runner: CliRunner) -> None:
    """`-` reads JSON Lines from standard input."""
    result = runner.invoke(app, ["import", "-"], input="\n".join(lines_of(3)) + "\n")
    assert result.exit_code == 0 and "imported 3 order(s)" in result.output


def test_import_with_problems_exits_3_and_names_line_and_field(runner: CliRunner) -> None:
    """Invalid input: exit code 3 (refused), each problem with its line and field, nothing imported."""
    bad = import_record(2)
    bad["order"]["items"][0]["quantity"] = 0
    lines = [*lines_of(1), json.dumps(bad), "not json"]
    result = runner.invoke(app, ["import", "-"], input="\n".join(lines))
    assert result.exit_code == 3
    assert "line 2: order.items[0].quantity: must be at least 1" in result.output
    assert "line 3: (line): not valid JSON" in result.output
    assert "nothing imported" in result.output
    status = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert sum(status["counts"].values()) == 0


def test_status_json_shape(runner: CliRunner) -> None:
    """`status --json`: counts for every state, oldest per state, and the stuck list."""
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(2)))
    data = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert set(data) == STATUS_KEYS
    assert list(data["counts"]) == [
        "imported",
        "created",
        "dispatch-authorized",
        "ready-for-handling",
        "handling",
        "canceling",
        "invoiced",
        "failed",
        "canceled",
    ]
    assert data["counts"]["imported"] == 2 and data["stuck"] == []
    assert set(data["oldest"]["imported"]) == {"since", "ageSeconds"}


def test_run_until_done_then_status_and_show(runner: CliRunner) -> None:
    """`run --until-done` finishes the orders; a failed one appears in status with VTEX's code."""
    bad = import_record(9, value=1000, with_invoice=False)
    runner.invoke(app, ["import", "-"], input="\n".join([*lines_of(2), json.dumps(bad)]))
    result = runner.invoke(app, ["run", "--until-done"])
    assert result.exit_code == 6, result.output  # finished, with a failed order left
    assert "1 order(s) failed" in result.output
    data = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert (data["counts"]["invoiced"], data["counts"]["failed"]) == (2, 1)
    [stuck] = data["stuck"]
    assert (stuck["orderId"], stuck["state"], stuck["lastErrorCode"]) == ("ABC-100009", "failed", "FMT007")
    table = runner.invoke(app, ["status"])
    assert "1 stuck order(s)" in table.output
    listed = runner.invoke(app, ["status", "--stuck"])
    assert "ABC-100009" in listed.output and "FMT007" in listed.output and "--replace" in listed.output
    shown = runner.invoke(app, ["show", "ABC-100000"])
    assert shown.exit_code == 0 and "start-handling" in shown.output and "invoiced" in shown.output
    as_json = json.loads(runner.invoke(app, ["show", "ABC-100000", "--json"]).output)
    assert as_json["order"]["state"] == "invoiced"
    # The writes, in order. A Get order may sit between them: an order in flight when the daemon
    # first configures the account's Orders Feed looks at VTEX once (VTEX queues only later
    # changes), and under load the first Place can go before that configuration.
    calls = [e["action"] for e in as_json["events"] if e["kind"] == "call" and e["action"] != "get-order"]
    assert calls[:4] == ["place-order", "authorize-dispatch", "start-handling", "send-invoice"]


def test_show_unknown_order_is_a_clear_error(runner: CliRunner) -> None:
    """An unknown order exits 4 (nothing found) with one line saying what was looked for."""
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(1)))
    result = runner.invoke(app, ["show", "ZZZ-1"])
    assert result.exit_code == 4 and "no order has 'ZZZ-1' as order id, marketplace order id" in result.output


def test_migrate_reports_the_revision(runner: CliRunner) -> None:
    """`migrate` creates the schema, then says it is up to date."""
    first = runner.invoke(app, ["migrate"])
    assert first.exit_code == 0 and f"schema at revision {head_revision()}" in first.output
    assert "up to date" in runner.invoke(app, ["migrate"]).output


def test_missing_credentials_are_a_clear_error(runner: CliRunner, env: dict[str, str]) -> None:
    """Without VTEX_APP_KEY/VTEX_APP_TOKEN, `run` says which variables to set."""
    result = CliRunner(env={**env, "VTEX_APP_KEY": ""}).invoke(app, ["run", "--until-done"])
    assert result.exit_code == 2 and "VTEX_APP_KEY" in result.output


def test_invalid_setting_names_the_variable(env: dict[str, str]) -> None:
    """A bad duration names the environment variable and the accepted forms."""
    result = CliRunner(env={**env, "ORCHESTRATOR_GRACE_PERIOD": "soon"}).invoke(app, ["status"])
    assert result.exit_code == 2 and "ORCHESTRATOR_GRACE_PERIOD" in result.output


def test_demo_runs_to_the_end() -> None:
    """`orchestrator demo` needs no configuration and ends with every example order invoiced."""
    result = CliRunner().invoke(app, ["demo", "--grace-seconds", "1"])
    assert result.exit_code == 0, result.output
    assert "all 25 orders invoiced" in result.output
    assert "places 0, start-handlings 0, invoice numbers 0" in result.output
