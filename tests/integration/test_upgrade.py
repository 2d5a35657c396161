"""Upgrading a database that an earlier release wrote, with a year's worth of history in it.

Each file in tests/fixtures/releases/ is the database one release (0.1.0, 0.2.0) or one later schema
revision left behind, written by that release's own code (`tests/fixtures/releases/record.py`):
invoiced orders with their whole history, orders waiting for an invoice, a failed and a canceled
order, calls of unknown outcome, orders never sent, an account paused for bad credentials, API
tokens. Every fixture is upgraded on SQLite and on PostgreSQL by the real `orchestrator migrate`;
every row and every event must still be there, unchanged, and every order that was still moving
must finish. A new release adds its fixture, and its successors' migrations are tested on it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from orchestrator.cli import app, exits
from orchestrator.sandbox import Sandbox, ServerThread
from orchestrator.store.migrate import head_revision, upgrade
from tests import backends
from tests.processes import run_cli, wait_for

FIXTURES = Path(__file__).parents[1] / "fixtures" / "releases"
RELEASES = sorted(FIXTURES.glob("*.sqlite"))
EXAMPLES = Path(__file__).parents[2] / "orchestrator" / "examples"
ACCOUNT = "acme"  # the VTEX account the fixtures' orders, budget and pause were recorded under
TABLES = ("orders", "order_events", "vtex_accounts", "daemons", "api_tokens")  # parents first
# Columns a later migration moved elsewhere (checked where they went, not in place).
MOVED: dict[str, set[str]] = {table: set() for table in TABLES} | {
    "orders": {"invoice", "invoice_sent_at", "tracking", "tracking_sent_at"},  # 0015: orders.invoices
}
MOVING = {"imported", "created", "dispatch-authorized", "ready-for-handling", "handling", "canceling"}


@pytest.fixture(params=RELEASES, ids=[path.stem for path in RELEASES])
def release(request: pytest.FixtureRequest) -> Path:
    return Path(request.param)


@pytest.fixture
def old_database(release: Path, backend: str, tmp_path: Path) -> Iterator[str]:
    """The release's database on `backend`: the file itself on SQLite; on PostgreSQL, the schema
    the same revision has there (built by the migrations up to it) holding the same rows."""
    if backend == "sqlite":
        copy = tmp_path / "orchestrator.db"
        shutil.copyfile(release, copy)
        yield f"sqlite:///{copy}"
        return
    name, url = backends.create_empty_database()
    try:
        _load_into_postgres(release, url)
        yield url
    finally:
        backends.drop_database(name)


def test_every_earlier_release_upgrades_keeping_every_row_and_its_orders_finish(
    old_database: str, make_sandbox: Any, tmp_path: Path
) -> None:
    """`orchestrator migrate` brings the release's database to head with every row and event
    as it was (new columns aside); then the daemon finishes every order that was still moving."""
    before = snapshot(old_database)
    assert before["order_events"], "the fixture holds history"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "VTEX_"))},
        "ORCHESTRATOR_DATABASE_URL": old_database,
    }

    migrated = run_cli(env, "migrate")

    assert (migrated.returncode, migrated.stderr) == (0, "")
    assert f"schema at revision {head_revision()}" in migrated.stdout
    after = snapshot(old_database)
    for table, rows in before.items():
        assert len(after[table]) == len(rows), table
        for old, new in zip(rows, after[table], strict=True):
            kept = {column: value for column, value in old.items() if column not in MOVED[table]}
            assert {column: new[column] for column in kept} == kept, f"{table} row changed"
            if table == "orders" and "invoice" in old:
                _invoice_moved(old, new)

    sandbox = make_sandbox(grace_seconds=0.3)
    with ServerThread(sandbox) as server:
        waiting = [row for row in after["orders"] if row["state"] in MOVING]
        _vtex_already_has(server.url, sandbox, [row for row in waiting if row["state"] != "imported"])
        env.update(
            VTEX_ACCOUNT=ACCOUNT,
            VTEX_BASE_URL=server.url,
            VTEX_APP_KEY=sandbox.oms.config.app_key,
            VTEX_APP_TOKEN=sandbox.oms.config.app_token,
            ORCHESTRATOR_GRACE_PERIOD="0.3s",
            ORCHESTRATOR_TICK="100ms",
        )
        invoices = tmp_path / "invoices.jsonl"
        invoices.write_text(
            "".join(
                json.dumps({"orderId": row["order_id"], "invoice": _invoice(row, f"NF-UPG-{n}")}) + "\n"
                for n, row in enumerate(waiting)
                if not row["invoices"]
            )
        )
        cli = CliRunner(env=env)
        attached = cli.invoke(app, ["invoice", "--file", str(invoices)])
        assert attached.exit_code == 0, attached.output
        finished = cli.invoke(app, ["run", "--until-done"])
        assert finished.exit_code == exits.FAILURES_LEFT, finished.output  # its failed order stays so

    final = {row["order_id"]: row for row in snapshot(old_database)["orders"]}
    assert {final[row["order_id"]]["state"] for row in waiting} == {"invoiced"}
    for row in after["orders"]:
        if row["state"] not in MOVING:
            assert final[row["order_id"]]["state"] == row["state"]
    for row in waiting:  # each placed and invoiced once, whatever the release had left open
        entry = sandbox.oms.ledger.get(row["order_id"])
        assert entry is not None and (entry.places_accepted, len(entry.invoice_numbers)) == (1, 1)


def _invoice_moved(old: dict[str, Any], new: dict[str, Any]) -> None:
    """0015: an order's one invoice and tracking number are the first entry of its list, sent
    (and counted) as they were."""
    if old["invoice"] is None:
        assert not new["invoices"] and new["invoiced_value"] == 0
        return
    [entry] = new["invoices"]
    assert entry["body"] == old["invoice"] and entry["number"] == old["invoice_number"]
    assert (entry["sent_at"] is not None) == (old["invoice_sent_at"] is not None)
    assert entry["tracking"] == old["tracking"]
    assert (entry["tracking_sent_at"] is not None) == (old["tracking_sent_at"] is not None)
    sent = old["invoice_sent_at"] is not None
    assert (new["invoices_sent"], new["invoiced_value"]) == (
        (1, old["invoice"]["invoiceValue"]) if sent else (0, 0)
    )


def _invoice(row: dict[str, Any], number: str) -> dict[str, Any]:
    items = [
        {"id": i["id"], "price": i["price"], "quantity": i["quantity"]} for i in row["place_body"]["items"]
    ]
    return {
        "type": "Output",
        "issuanceDate": "2026-12-05T10:00:00+00:00",
        "invoiceNumber": number,
        "invoiceValue": row["value"],
        "items": items,
    }


def _vtex_already_has(url: str, sandbox: Sandbox, rows: list[dict[str, Any]]) -> None:
    """VTEX's side of the orders the release had sent: the sandbox starts empty, VTEX would not.
    Each is placed, authorized and (after the grace period) started, as the release did."""
    headers = {
        "X-VTEX-API-AppKey": sandbox.oms.config.app_key,
        "X-VTEX-API-AppToken": sandbox.oms.config.app_token,
    }
    with httpx.Client(base_url=url, headers=headers) as vtex:
        for row in rows:
            params = {"affiliateId": row["affiliate_id"]}
            assert vtex.post(
                "/api/fulfillment/pvt/orders", params=params, json=[row["place_body"]]
            ).is_success
            fulfill = f"/api/fulfillment/pvt/orders/{row['order_id']}/fulfill"
            body = {"marketplaceOrderId": row["marketplace_order_id"]}
            assert vtex.post(fulfill, params=params, json=body).is_success
        for row in rows:  # the sandbox's grace period, then each is ready
            if row["state"] == "handling":
                order = f"/api/oms/pvt/orders/{row['order_id']}"
                wait_for(lambda at=order: vtex.get(at).json()["status"] == "ready-for-handling", 10, order)
        for row in rows:
            if row["state"] == "handling":
                started = vtex.post(f"/api/oms/pvt/orders/{row['order_id']}/start-handling")
                assert started.is_success, started.text


# -- reading and loading databases ---------------------------------------------------------------


def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table that exists, in primary-key order, with values made comparable
    across backends (times as naive UTC, JSON parsed)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            return {
                name: [
                    {k: _plain(v) for k, v in row._mapping.items()}
                    for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))
                ]
                for name, table in metadata.tables.items()
                if name in TABLES
            }
    finally:
        engine.dispose()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return value


def _load_into_postgres(release: Path, url: str) -> None:
    """The schema of the release's revision, built on PostgreSQL by the migrations up to it, and
    the release's rows copied in (sequences moved past them, as they would be)."""
    source = sa.create_engine(f"sqlite:///{release}", poolclass=sa.pool.NullPool)
    with source.connect() as conn:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    rows = snapshot(f"sqlite:///{release}")
    source.dispose()
    target = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        upgrade(target, revision)
        metadata = sa.MetaData()
        metadata.reflect(target)
        with target.begin() as conn:
            for name in TABLES:
                if rows.get(name):
                    conn.execute(sa.insert(metadata.tables[name]), [_aware(r) for r in rows[name]])
            for name in ("orders", "order_events"):
                conn.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"(SELECT coalesce(max(id), 0) + 1 FROM {name}), false)"
                    )
                )
    finally:
        target.dispose()


def _aware(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.replace(tzinfo=UTC) if isinstance(v, datetime) else v for k, v in row.items()}
