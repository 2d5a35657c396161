"""`orchestrator list` and lookups: every filter, sorts, keyset pages that neither skip nor repeat,
CSV, and `show` by the ids store staff and customers quote."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import sqlalchemy as sa
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.clock import utcnow
from orchestrator.intake.importer import import_lines
from orchestrator.store.open import open_store
from orchestrator.store.tables import ORDERS
from tests.factories import import_lines as lines_of


def test_list_filters_sorts_and_pages(database_url: str) -> None:
    """`list` filters by state, affiliate, age, wait reason and error code, finds by id or invoice
    number, sorts, and pages by keyset without skipping or repeating an order."""
    store = open_store(database_url, create=True)
    import_lines([*lines_of(110), *lines_of(10, "XYZ", start=200)], store, utcnow())
    with store.engine.begin() as conn:
        long_ago = utcnow() - timedelta(hours=5)
        c = ORDERS.c
        conn.execute(
            sa.update(ORDERS)
            .where(c.order_id.in_(["ABC-100003", "ABC-100004"]))
            .values(
                state="failed", failed_from="imported", last_error_code="FMT007", state_changed_at=long_ago
            )
        )
        conn.execute(
            sa.update(ORDERS)
            .where(c.order_id == "ABC-100005")
            .values(wait_reason="VTEX holds the order in payment-pending")
        )
    runner = CliRunner(env={"ORCHESTRATOR_DATABASE_URL": database_url})

    def listed(*args: str) -> list[str]:
        result = runner.invoke(app, ["list", "--json", *args])
        assert result.exit_code in (0, 4), result.output
        return [o["orderId"] for o in json.loads(result.stdout)["orders"]]

    seen: list[str] = []
    after: list[str] = []
    while True:  # newest first, 50 at a time, by keyset
        result = json.loads(runner.invoke(app, ["list", "--json", "--limit", "50", *after]).stdout)
        seen += [o["orderId"] for o in result["orders"]]
        if result["nextCursor"] is None:
            break
        after = ["--after", result["nextCursor"]]
    assert len(seen) == 120 and len(set(seen)) == 120 and seen[0] == "XYZ-100209"
    assert listed("--state", "failed", "--code", "FMT007") == ["ABC-100004", "ABC-100003"]
    assert listed("--older-than", "1h") == ["ABC-100004", "ABC-100003"]
    assert listed("--waiting", "payment-pending") == ["ABC-100005"]
    assert len(listed("--affiliate", "XYZ", "--limit", "100")) == 10
    assert listed("--sort", "order-id", "--limit", "2") == ["ABC-100000", "ABC-100001"]
    assert listed("--sort", "-order-id", "--limit", "1") == ["XYZ-100209"]
    assert listed("--sort", "changed", "--limit", "2") == ["ABC-100003", "ABC-100004"]  # oldest change first
    assert listed("--find", "100007") == ["ABC-100007"] and listed("--find", "NF100008") == ["ABC-100008"]
    assert listed("--state", "canceled") == []

    exported = runner.invoke(app, ["list", "--csv", "--state", "failed"]).stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["orderId"] for r in rows] == ["ABC-100004", "ABC-100003"] and rows[0][
        "lastErrorCode"
    ] == "FMT007"
    assert runner.invoke(app, ["list", "--after", "not-a-cursor"]).exit_code == 2
    assert runner.invoke(app, ["list", "--older-than", "5x"]).exit_code == 2

    shown = json.loads(runner.invoke(app, ["show", "NF100009", "--json"]).stdout)
    assert shown["order"]["orderId"] == "ABC-100009" and shown["order"]["invoiceNumber"] == "NF100009"
    both = runner.invoke(app, ["show", "100200"])  # XYZ-100200 only; the ABC range stops at 100109
    assert both.exit_code == 0
    import_lines(lines_of(1, "QRS", start=200), store, utcnow())
    ambiguous = runner.invoke(app, ["show", "100200"])
    assert ambiguous.exit_code == 3 and "2 orders match '100200'" in ambiguous.output
