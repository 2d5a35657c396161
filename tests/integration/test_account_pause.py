"""`orchestrator pause --account`: an operator's pause, recorded with who and why, named by the
account's name in `status --json`, not lifted by `check` (the credentials work, but they were
never the reason), lifted by `resume --account` without asking VTEX."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from orchestrator.cli import app, exits


def test_an_operator_pauses_an_account_and_only_resume_lifts_it(cli_env: dict[str, str]) -> None:
    """pause, pause again (nothing to do), status names it, check leaves it, resume lifts it."""
    runner = CliRunner(env=cli_env)
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    paused = runner.invoke(app, ["pause", "--account", "default", "--reason", "VTEX maintenance", "--json"])
    assert paused.exit_code == 0, paused.output
    assert json.loads(paused.stdout)["paused"] is True
    again = runner.invoke(app, ["pause", "--account", "default"])
    assert again.exit_code == exits.NOTHING_TO_DO and "already paused" in again.output
    unknown = runner.invoke(app, ["pause", "--account", "nope"])
    assert unknown.exit_code == exits.USAGE and "nope" in unknown.output

    [held] = json.loads(runner.invoke(app, ["status", "--json"]).stdout)["accounts"]
    assert held["account"] == "default"  # its name, not the sandbox's URL
    assert held["reason"].startswith("paused by cli:") and held["reason"].endswith(": VTEX maintenance")
    said = runner.invoke(app, ["status"], env={"COLUMNS": "200"}).output
    assert "account default: all work paused until resumed" in said and "resume --account default" in said
    assert runner.invoke(app, ["check"]).exit_code == 0  # VTEX accepts the credentials...
    assert len(json.loads(runner.invoke(app, ["status", "--json"]).stdout)["accounts"]) == 1  # ...paused

    resumed = runner.invoke(app, ["resume", "--account", "default"])
    assert resumed.exit_code == 0 and "account default: pause lifted (paused by cli:" in resumed.output
    assert json.loads(runner.invoke(app, ["status", "--json"]).stdout)["accounts"] == []
