"""Orders belong to an account: the import names it, ids are unique per account, the operators'
commands filter by it and name it, and a database from before accounts keeps its orders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from orchestrator.cli import app, exits
from orchestrator.clock import utcnow
from orchestrator.config.settings import load_settings
from orchestrator.intake.importer import import_lines
from orchestrator.sandbox import FaultConfig, Faults, Sandbox, SandboxConfig, SandboxOms, ServerThread
from orchestrator.store.dialects import create_db_engine
from orchestrator.store.migrate import upgrade
from orchestrator.store.open import open_store
from tests.api_server import log_in, serve_api
from tests.daemon_runs import run_until
from tests.factories import import_record

ACCOUNTS = ["acme-br", "acme-ar"]


def line(n: int, account: str | None) -> str:
    record = import_record(n)
    return json.dumps(record if account is None else {"account": account, **record})


def test_the_import_names_the_account_and_ids_are_unique_per_account(database_url: str) -> None:
    """With several accounts each line names its account (a missing or unknown one is a problem with its
    line); the same order id may exist once in each account."""
    store = open_store(database_url)
    missing = import_lines([line(1, "acme-br"), line(2, None)], store, utcnow(), accounts=ACCOUNTS)
    unknown = import_lines([line(1, "acme-cl")], store, utcnow(), accounts=ACCOUNTS)
    assert [(p.line, p.field) for p in missing.problems] == [(2, "account")]
    assert "several accounts are configured (acme-br, acme-ar)" in missing.problems[0].message
    assert [(p.line, p.field) for p in unknown.problems] == [(1, "account")]
    assert "'acme-cl' is not a configured account" in unknown.problems[0].message
    assert store.state_counts() == []  # nothing half-written

    twice = import_lines([line(1, "acme-br"), line(1, "acme-br")], store, utcnow(), accounts=ACCOUNTS)
    assert [(p.line, p.field) for p in twice.problems] == [(2, "order.marketplaceOrderId")]
    both = import_lines([line(1, "acme-br"), line(1, "acme-ar")], store, utcnow(), accounts=ACCOUNTS)
    assert both.imported == ["ABC-100001", "ABC-100001"]  # the same id, once in each account
    again = import_lines([line(1, "acme-ar")], store, utcnow(), accounts=ACCOUNTS)
    assert (again.imported, again.already_present) == ([], ["ABC-100001"])
    assert store.account_state_counts() == {"acme-br": {"imported": 1}, "acme-ar": {"imported": 1}}

    with pytest.raises(Exception, match="exists in several accounts: name one of acme-ar/ABC-100001"):
        store.find("ABC-100001")
    row = store.find("acme-ar/ABC-100001")
    assert row is not None and row.account == "acme-ar" and row.ref == "acme-ar/ABC-100001"


def test_orders_from_before_accounts_belong_to_the_default_account(sqlite_url: str) -> None:
    """Migration 0010 on a database written by 0.2.0: its orders are the default account's."""
    engine, _hooks = create_db_engine(sqlite_url, create=True)
    upgrade(engine, "0009")
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO orders (order_id, affiliate_id, marketplace_order_id, state, place_body, value, "
                "attempts, version, requests_in_window, created_at, updated_at, state_changed_at) VALUES "
                "('ABC-1', 'ABC', '1', 'imported', '{}', 100, 0, 0, 0, :now, :now, :now)"
            ),
            {"now": now},
        )
    engine.dispose()
    store = open_store(sqlite_url)  # upgrades to the head
    row = store.find("ABC-1")
    assert row is not None and row.account == "default" and row.ref == "ABC-1"


@pytest.fixture
def two_accounts(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[CliRunner, Path, dict[str, Sandbox]]]:
    root = Sandbox(SandboxOms(SandboxConfig(grace_seconds=0.2)))
    sandboxes = {
        name: root.add_account(
            name, Sandbox(SandboxOms(SandboxConfig(grace_seconds=0.2, app_key=f"key-{name}", app_token="t")))
        )
        for name in ACCOUNTS
    }
    with ServerThread(root) as server:
        config = tmp_path / "accounts.toml"
        config.write_text(
            "".join(
                f'[accounts.{name}]\nbase_url = "{server.url}/accounts/{name}"\n'
                f'app_key_env = "KEY_{i}"\napp_token_env = "TOKEN"\ngrace_period = "200ms"\n'
                for i, name in enumerate(ACCOUNTS)
            )
        )
        env = {
            "ORCHESTRATOR_DATABASE_URL": sqlite_url,
            "KEY_0": "key-acme-br",
            "KEY_1": "wrong-key",  # acme-ar rejects it
            "TOKEN": "t",
            "ORCHESTRATOR_TICK": "100ms",
            "COLUMNS": "240",
            "ORCHESTRATOR_LOG_FORMAT": "json",
        }
        yield CliRunner(env=env), config, sandboxes


def test_commands_show_and_filter_by_account(
    two_accounts: tuple[CliRunner, Path, dict[str, Sandbox]],
) -> None:
    """list, show, status and the order references (`account/ID`) show and filter orders by account."""
    runner, config, sandboxes = two_accounts

    def cli(*args: str) -> str:
        result = runner.invoke(app, ["--config", str(config), *args])
        return str(result.output)

    lines = "\n".join(line(n, name) for name in ACCOUNTS for n in range(3)) + "\n"
    imported = runner.invoke(app, ["--config", str(config), "import", "-"], input=lines)
    assert imported.exit_code == 0, imported.output

    checked = runner.invoke(app, ["--config", str(config), "check"])
    assert checked.exit_code != 0
    assert "ok  VTEX acme-br" in checked.output and "FAILED  VTEX acme-ar" in checked.output

    ran = runner.invoke(app, ["--config", str(config), "run", "--until-done"])
    # acme-br's orders all finish; acme-ar's wait for its pause, and the run says so.
    assert ran.exit_code == exits.PAUSED, ran.output
    assert "account paused: acme-ar: VTEX rejected" in ran.output

    status = json.loads(cli("status", "--json"))
    assert status["countsByAccount"]["acme-br"]["invoiced"] == 3
    assert status["countsByAccount"]["acme-ar"]["imported"] == 3
    assert status["counts"]["invoiced"] == 3
    only = json.loads(cli("status", "--json", "--account", "acme-ar", "--stuck"))
    assert list(only["countsByAccount"]) == ["acme-ar"]
    assert {entry.get("account") for entry in only["stuck"]} <= {"acme-ar"}
    table = cli("status")
    assert "acme-br" in table and "acme-ar" in table

    listed = json.loads(cli("list", "--json", "--account", "acme-br"))
    assert {o["account"] for o in listed["orders"]} == {"acme-br"} and len(listed["orders"]) == 3
    assert "acme-ar/ABC-100001" in cli("list", "--account", "acme-ar")
    ambiguous = runner.invoke(app, ["--config", str(config), "show", "ABC-100001"])
    assert ambiguous.exit_code != 0 and "acme-ar/ABC-100001" in ambiguous.output
    shown = json.loads(cli("show", "ABC-100001", "--account", "acme-br", "--json"))
    assert shown["order"]["account"] == "acme-br" and shown["order"]["state"] == "invoiced"
    retried = runner.invoke(app, ["--config", str(config), "retry", "acme-ar/ABC-100001"])
    assert "acme-ar/ABC-100001" not in retried.output or "not failed" in retried.output
    assert "ABC-100001 is imported, not failed" in retried.output, retried.output
    guessed = runner.invoke(app, ["--config", str(config), "retry", "ABC-100001"])
    assert guessed.exit_code != 0 and "exists in several accounts" in guessed.output, guessed.output
    unknown = runner.invoke(app, ["--config", str(config), "list", "--account", "acme-cl"])
    assert unknown.exit_code != 0 and "no account 'acme-cl'" in unknown.output

    assert set(sandboxes["acme-br"].app_keys_seen) == {"key-acme-br"}
    assert set(sandboxes["acme-ar"].app_keys_seen) == {"wrong-key"}

    # An account dropped from the configuration: its orders are said to be stranded, not hidden.
    config.write_text(config.read_text().split("[accounts.acme-ar]")[0])
    stranded = cli("status")
    assert "3 order(s) belong to account acme-ar, which the configuration does not have" in stranded
    assert json.loads(cli("status", "--json"))["unconfiguredAccounts"] == {"acme-ar": 3}


def test_the_api_and_the_console_take_the_account(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Intake names the account; an id two accounts hold is asked for with `?account=`; an action
    on one account's order leaves the other's alone; the console's links carry the account."""
    root = Sandbox(SandboxOms(SandboxConfig(grace_seconds=0.2)))
    for name in ACCOUNTS:
        root.add_account(name, Sandbox(SandboxOms(SandboxConfig(app_key=f"key-{name}", app_token="t"))))
    monkeypatch.setenv("KEY_BR", "key-acme-br")
    monkeypatch.setenv("KEY_AR", "key-acme-ar")
    monkeypatch.setenv("TOKEN", "t")
    with ServerThread(root) as vtex:
        tables = {
            name: {"base_url": f"{vtex.url}/accounts/{name}", "app_key_env": env, "app_token_env": "TOKEN"}
            for name, env in zip(ACCOUNTS, ("KEY_BR", "KEY_AR"), strict=True)
        }
        settings = load_settings(None, database_url=sqlite_url, accounts=tables)
        with serve_api(settings, root) as served:
            missing = served.call("POST", "/api/orders", "intake", json=[import_record(1)])
            assert missing.status_code == 422 and missing.json()["problems"][0]["field"] == "account"
            both = [{"account": name, **import_record(1)} for name in ACCOUNTS]
            assert served.call("POST", "/api/orders", "intake", json=both).status_code == 201

            ambiguous = served.call("GET", "/api/orders/ABC-100001", "viewer")
            assert ambiguous.status_code == 409
            assert ambiguous.json()["matches"] == ["acme-br/ABC-100001", "acme-ar/ABC-100001"]
            one = served.call("GET", "/api/orders/ABC-100001?account=acme-ar", "viewer").json()
            assert one["order"]["account"] == "acme-ar"
            listed = served.call("GET", "/api/orders?account=acme-br", "viewer").json()["orders"]
            assert [(o["orderId"], o["account"]) for o in listed] == [("ABC-100001", "acme-br")]
            status = served.call("GET", "/api/status?account=acme-ar", "viewer").json()
            assert status["countsByAccount"] == {
                "acme-ar": {**dict.fromkeys(status["counts"], 0), "imported": 1}
            }
            assert served.call("GET", "/api/status?account=acme-cl", "viewer").status_code == 400

            canceled = served.call(
                "POST", "/api/orders/ABC-100001/cancel?account=acme-ar", json={"reason": "x"}
            )
            assert canceled.status_code == 202, canceled.text
            ar, br = served.store.find("acme-ar/ABC-100001"), served.store.find("acme-br/ABC-100001")
            assert ar is not None and ar.cancel_reason is not None
            assert br is not None and br.cancel_reason is None

            console = httpx.Client(base_url=served.url, timeout=30)
            assert log_in(console, served.tokens["operator"]).status_code == 303
            both = console.get("/orders/ABC-100001")  # an id two accounts hold: which one?
            assert both.status_code == 409 and "acme-ar/ABC-100001" in both.text
            found = console.get("/search?q=100001").text
            assert 'href="/orders/ABC-100001?account=acme-ar"' in found and "acme-br/ABC-100001" in found
            page = console.get("/orders/ABC-100001?account=acme-br").text
            assert (
                "acme-br/ABC-100001" in page and 'action="/orders/ABC-100001/invoice?account=acme-br"' in page
            )


def test_a_busy_account_does_not_starve_a_quiet_one(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """80 orders of one account imported before 4 of another, two slots each: the quiet account's
    orders do not queue behind the busy one's (a single first-come queue would put them last)."""
    root = Sandbox(SandboxOms(SandboxConfig(grace_seconds=0.2)))
    lanes = {}
    for name in ("busy", "quiet"):
        account = Sandbox(SandboxOms(SandboxConfig(grace_seconds=0.2, app_key=f"key-{name}", app_token="t")))
        account.faults = Faults(FaultConfig(latency_ms=20))
        lanes[name] = root.add_account(name, account)
    monkeypatch.setenv("TOKEN", "t")
    monkeypatch.setenv("KEY_BUSY", "key-busy")
    monkeypatch.setenv("KEY_QUIET", "key-quiet")
    with ServerThread(root) as vtex:
        tables = {
            name: {
                "base_url": f"{vtex.url}/accounts/{name}",
                "app_key_env": f"KEY_{name.upper()}",
                "app_token_env": "TOKEN",
                "grace_period": "200ms",
            }
            for name in ("busy", "quiet")
        }
        settings = load_settings(
            None, database_url=sqlite_url, accounts=tables, concurrency=2, tick_interval="100ms"
        )
        store = open_store(sqlite_url)
        busy = [line(n, "busy") for n in range(80)]
        import_lines(busy, store, utcnow(), accounts=["busy", "quiet"])
        import_lines([line(n, "quiet") for n in range(4)], store, utcnow(), accounts=["busy", "quiet"])
        seen: dict[str, int] = {}

        def quiet_done() -> bool:
            counts = store.account_state_counts()
            if counts.get("quiet", {}).get("invoiced", 0) == 4 and not seen:
                seen["busy"] = counts.get("busy", {}).get("invoiced", 0)
            return bool(seen)

        run_until(settings, store, quiet_done, timeout=60)
    assert seen, "the quiet account's orders never finished"
    first_quiet = min(e["at"] for e in lanes["quiet"].oms.ledger.request_log)
    busy_before = sum(1 for e in lanes["busy"].oms.ledger.request_log if e["at"] < first_quiet)
    # One queue for both would have sent the busy account's 80 Places first.
    assert busy_before < 10, f"{busy_before} requests of the busy account went before the quiet one's first"
    assert seen["busy"] < 40, f"the quiet account waited until {seen['busy']} of the busy one's 80 were done"
