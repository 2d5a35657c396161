"""The bad-credentials pause, from the operator's side: no CLI call goes to VTEX behind it, and it
is lifted as soon as VTEX accepts the credentials again (`check`, `resume`, a daemon's start)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.clock import utcnow
from orchestrator.config.settings import load_settings
from orchestrator.runner import run_daemon
from orchestrator.sandbox import Sandbox
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from orchestrator.vtex.pauses import AccountPause
from tests.factories import import_lines as lines_of


def pause(store: Store, account: str) -> None:
    now = utcnow()
    reason = "VTEX rejected the credentials (HTTP 401): check VTEX_APP_KEY and VTEX_APP_TOKEN"
    store.save_account_pause(account, AccountPause(account, now + timedelta(minutes=5), reason, now), now)


def test_commands_respect_the_pause_and_check_or_resume_lift_it(served: tuple[Sandbox, CliRunner]) -> None:
    """While the account is paused no command calls VTEX; `check` and `resume` lift the pause once VTEX
    accepts the credentials."""
    sandbox, runner = served
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(1)))
    assert runner.invoke(app, ["run", "--until-done"]).exit_code == 0
    env = dict(runner.env or {})
    settings = load_settings(
        None, database_url=env["ORCHESTRATOR_DATABASE_URL"], vtex_base_url=env["VTEX_BASE_URL"]
    )
    store = open_store(settings.database_url)
    account = settings.account().key
    requests = sandbox.oms.ledger.summary()["requests"]

    pause(store, account)
    tracked = runner.invoke(app, ["track", "ABC-100000", "--tracking-number", "BR1"])
    assert (
        tracked.exit_code == 7 and "is paused" in tracked.output and "orchestrator resume" in tracked.output
    )
    assert store.find("ABC-100000").tracking_number is None  # type: ignore[union-attr]  # nothing changed
    shown = runner.invoke(app, ["show", "ABC-100000", "--vtex"])
    assert "not asked: the account is paused" in shown.output
    assert runner.invoke(app, ["cancel", "ABC-100000"]).exit_code == 7
    assert sandbox.oms.ledger.summary()["requests"] == requests  # not one request went out

    wrong = runner.invoke(app, ["resume"], env={"VTEX_APP_TOKEN": "revoked-token"})
    assert wrong.exit_code == 7 and "still rejects the credentials" in wrong.output
    assert store.account_pause(account) is not None
    resumed = runner.invoke(app, ["resume"])
    assert resumed.exit_code == 0 and "pause lifted" in resumed.output
    # Variables cannot change under a running daemon: resume says so instead of promising.
    said = " ".join(resumed.output.split())
    assert "VTEX_APP_KEY and VTEX_APP_TOKEN cannot change under a running process" in said
    assert "restart the daemons" in said
    assert store.account_pause(account) is None
    assert runner.invoke(app, ["resume"]).output.strip().endswith("was not paused")

    pause(store, account)
    checked = runner.invoke(app, ["check"])
    assert checked.exit_code == 0 and "lifted the account pause" in checked.output
    assert store.account_pause(account) is None
    tracked = runner.invoke(app, ["track", "ABC-100000", "--tracking-number", "BR1"])
    assert tracked.exit_code == 0, tracked.output


def test_a_daemon_started_with_working_credentials_lifts_the_stored_pause(
    served: tuple[Sandbox, CliRunner],
) -> None:
    """A daemon started after the credentials were fixed lifts the stored pause at once instead of sitting it
    out."""
    _sandbox, runner = served
    runner.invoke(app, ["import", "-"], input="\n".join(lines_of(2)))
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
    pause(store, settings.account().key)
    started = utcnow()
    asyncio.run(asyncio.wait_for(run_daemon(settings, store, until_done=True, install_signals=False), 30))
    assert utcnow() - started < timedelta(seconds=20)  # not the 5 minutes of the pause
    assert store.account_pause(settings.account().key) is None
    assert json.loads(runner.invoke(app, ["status", "--json"]).output)["counts"]["invoiced"] == 2
