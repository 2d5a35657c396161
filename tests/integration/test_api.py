"""`orchestrator serve` over real HTTP: tokens and roles, intake with the import's validation and
idempotence, late data, operations audited under the token's name, reads, and bad input."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from orchestrator.cli import app
from tests.api_server import Served, api_served
from tests.daemon_runs import run_until
from tests.factories import import_record, invoice_for

served = api_served  # the fixture, under the name these tests use


def test_tokens_roles_and_health(served: Served) -> None:
    """Health needs no token; a missing or wrong token is a logged 401 (never the token itself); each role
    may call what it allows and nothing else; a revoked token opens nothing; token names must be
    printable."""
    assert served.call("GET", "/healthz", role=None).json() == {"status": "ok"}
    assert served.call("GET", "/readyz", role=None).status_code == 200
    with capture_logs() as logs:
        missing = served.call("GET", "/api/status", role=None)
        wrong = served.call(
            "GET", "/api/status", role=None, headers={"Authorization": "Bearer vo_not-a-token"}
        )
    assert missing.status_code == wrong.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert [e["event"] for e in logs] == ["API authentication failed"] * 2
    assert "vo_not-a-token" not in json.dumps(logs)  # the token is never logged

    record = json.dumps(import_record(1))
    allowed = {
        ("POST", "/api/orders"): {"intake", "operator"},
        ("GET", "/api/orders"): {"viewer", "operator"},
        ("GET", "/api/status"): {"viewer", "operator"},
        ("GET", "/metrics"): {"viewer", "operator"},
        ("POST", "/api/orders/ABC-100001/retry"): {"operator"},
        ("POST", "/api/orders/ABC-100001/cancel"): {"operator"},
        ("GET", "/api/openapi.json"): {"intake", "viewer", "operator"},
    }
    for (method, path), roles in allowed.items():
        for role in ("intake", "viewer", "operator"):
            answer = served.call(method, path, role, content=record if method == "POST" else None)
            assert (answer.status_code != 403) == (role in roles), (method, path, role, answer.text)
    spec = served.call("GET", "/api/openapi.json", "viewer").json()
    assert spec["openapi"].startswith("3.") and "/api/orders/{order_id}/invoice" in spec["paths"]

    runner = CliRunner(env={"ORCHESTRATOR_DATABASE_URL": served.settings.database_url})
    assert runner.invoke(app, ["token", "revoke", "viewer-bot"]).exit_code == 0
    assert served.call("GET", "/api/status", "viewer").status_code == 401
    listed = json.loads(runner.invoke(app, ["token", "list", "--json"]).stdout)["tokens"]
    assert {t["name"] for t in listed} == {"intake-bot", "viewer-bot", "operator-bot"}
    assert all(served.tokens[r] not in json.dumps(listed) for r in served.tokens)
    for forged in ("pos\nlevel=error event=forged", "pos\x00", " "):  # names go into logs and history
        refused = runner.invoke(app, ["token", "create", "--name", forged, "--role", "intake"])
        assert refused.exit_code == 2 and "printable" in refused.output, refused.output


@pytest.mark.sqlite_only
def test_intake_validates_like_import_and_is_idempotent(served: Served) -> None:
    """POST /api/orders takes a record, an array or JSON Lines, validates as `import` does (nothing stored
    when one record is wrong, each problem with its index) and answers a re-post with 200."""
    one = import_record(1)
    created = served.call("POST", "/api/orders", "intake", json=one)
    assert created.status_code == 201 and created.json()["imported"] == ["ABC-100001"]
    again = served.call("POST", "/api/orders", "intake", json=one)
    assert again.status_code == 200 and again.json()["alreadyPresent"] == ["ABC-100001"]
    both = served.call("POST", "/api/orders", "intake", json=[one, import_record(2)])
    assert both.status_code == 201 and both.json()["imported"] == ["ABC-100002"]
    lines = "\n".join(json.dumps(import_record(n)) for n in (3, 4))
    ndjson = served.call(
        "POST", "/api/orders", "intake", content=lines, headers={"Content-Type": "application/x-ndjson"}
    )
    assert ndjson.status_code == 201 and ndjson.json()["imported"] == ["ABC-100003", "ABC-100004"]
    # JSON allows these unescaped inside a string; only a line feed ends a JSON Lines record.
    odd = import_record(7)
    odd["order"]["shippingData"]["address"]["complement"] = "Bloco B\u2028Apto 7\u0085fundos\x0c"
    crlf = json.dumps(odd, ensure_ascii=False) + "\r\n" + json.dumps(import_record(8)) + "\r\n"
    one_each = served.call(
        "POST",
        "/api/orders",
        "intake",
        content=crlf.encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert one_each.status_code == 201, one_each.text
    assert one_each.json()["imported"] == ["ABC-100007", "ABC-100008"]
    stored = served.store.find("ABC-100007")
    assert (
        stored is not None and stored.place_body["shippingData"]["address"]["complement"].count("\u2028") == 1
    )

    bad = import_record(5)
    bad["order"]["items"][0]["quantity"] = 0
    refused = served.call("POST", "/api/orders", "intake", json=[import_record(6), bad])
    assert refused.status_code == 422
    assert refused.json()["error"] == "nothing stored: 1 of 2 record(s) invalid (1 problem(s))"
    [problem] = refused.json()["problems"]
    assert problem["index"] == 1 and problem["field"].startswith("order.items[0].quantity")
    assert served.store.find("ABC-100006") is None  # all or nothing per request
    assert served.call("POST", "/api/orders", "intake", content="{not json").status_code == 400
    assert served.call("POST", "/api/orders", "intake", content='"a string"').status_code == 422
    huge = b"[" + b" " * (17 * 1024 * 1024) + b"]"
    assert served.call("POST", "/api/orders", "intake", content=huge).status_code == 413

    differs = import_record(1)
    differs["order"]["items"][0]["quantity"] = 2
    conflict = served.call("POST", "/api/orders", "intake", json=differs)
    assert conflict.status_code == 409 and "--replace" in conflict.json()["problems"][0]["message"]
    replaced = served.call("POST", "/api/orders?replace=1", "intake", json=differs)
    assert replaced.status_code == 201 and replaced.json()["replaced"][0]["orderId"] == "ABC-100001"
    history = served.call("GET", "/api/orders/ABC-100001", "viewer").json()["events"]
    assert [e["worker"] for e in history if e["kind"] == "import"] == ["api:intake-bot", "api:intake-bot"]


@pytest.mark.sqlite_only
def test_bodies_python_would_choke_on_are_a_clear_400(served: Served) -> None:
    """What `orchestrator import` refuses line by line, posted as one body: deep nesting and an
    integer of thousands of digits were HTTP 500s (RecursionError, ValueError); NaN is no JSON."""
    line = json.dumps(import_record(1))
    assert served.call("POST", "/api/orders", "intake", content=line).status_code == 201
    cases = {
        "[" * 100_000: "nested too deeply",
        line.replace("1100", "9" * 5000, 1): "too many digits",
        line.replace(": 1100", ": NaN", 1): "NaN is not a JSON number",
    }
    for body, says in cases.items():
        answer = served.call("POST", "/api/orders", "intake", content=body)
        assert answer.status_code == 400 and says in answer.json()["error"], answer.text
        invoice = served.call("POST", "/api/orders/ABC-100001/invoice", "intake", content=body)
        assert invoice.status_code == 400 and says in invoice.json()["error"], invoice.text
    ndjson = served.call(
        "POST",
        "/api/orders",
        "intake",
        content="[" * 100_000,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert ndjson.status_code == 422 and "nested too deeply" in ndjson.json()["problems"][0]["message"]


@pytest.mark.sqlite_only
def test_late_data_operations_and_reads(served: Served) -> None:
    """Invoices and tracking numbers attached through the API, retry and cancel audited under the token's
    name, and the listing and order reads."""
    late = import_record(7, with_invoice=False)
    failing = import_record(8, with_invoice=False)
    failing["order"]["marketplacePaymentValue"] = 999  # VTEX refuses it: FMT007
    assert served.call("POST", "/api/orders", "intake", json=[late, failing]).status_code == 201
    run_until(
        served.settings,
        served.store,
        lambda: (r := served.store.find("ABC-100008")) is not None and r.state == "failed",
    )

    invoice = invoice_for(late["order"], "NF7")
    assert served.call("POST", "/api/orders/ABC-100007/invoice", "intake", json=invoice).status_code == 201
    assert served.call("POST", "/api/orders/ABC-100007/invoice", "intake", json=invoice).status_code == 200
    over = dict(invoice, invoiceNumber="NF7B", invoiceValue=1101)
    assert served.call("POST", "/api/orders/ABC-100007/invoice", "intake", json=over).status_code == 422
    changed = dict(invoice, issuanceDate="2026-11-28T10:00:00-03:00")  # another body under NF7
    kept = served.call("POST", "/api/orders/ABC-100007/invoice", "intake", json=changed)
    assert kept.status_code == 409 and "NF7' is already an invoice of this order" in kept.json()["error"]
    refused = served.call("POST", "/api/orders/ABC-100008/tracking", "intake", json={"trackingNumber": "T"})
    assert refused.status_code == 409 and "has no invoice yet" in refused.json()["error"]
    assert served.call("POST", "/api/orders/ABC-999/invoice", "intake", json=invoice).status_code == 404
    invalid = served.call("POST", "/api/orders/ABC-100007/tracking", "intake", json={"courier": "X"})
    assert invalid.status_code == 422 and invalid.json()["problems"][0]["field"] == "trackingNumber"
    tracked = served.call("POST", "/api/orders/ABC-100007/tracking", "intake", json={"trackingNumber": "TR7"})
    assert tracked.status_code == 201

    failed = served.call("GET", "/api/orders?state=failed&code=FMT007", "viewer").json()["orders"]
    assert [o["orderId"] for o in failed] == ["ABC-100008"]
    by_marketplace_id = served.call("GET", "/api/orders/100008", "viewer").json()
    assert by_marketplace_id["order"]["orderId"] == "ABC-100008"
    refusals = {
        "sort=nonsense": "sort: unknown sort 'nonsense'",
        "state=shipped": "state: unknown state 'shipped'",  # a typo must not look like "none there"
        "limit=abc": "limit: a whole number between 1 and 1000",
        "limit=0": "limit: a whole number between 1 and 1000",
        "olderThan=zz": "olderThan: 'zz' is not a duration",
        "account=acme-xx": "account: no account 'acme-xx' is configured",
    }
    for query, says in refusals.items():
        refused = served.call("GET", f"/api/orders?{query}", "viewer")
        assert refused.status_code == 400 and refused.json()["error"].startswith(says), refused.text
    status = served.call("GET", "/api/status", "viewer").json()
    assert status["counts"]["failed"] == 1 and status["stuckTotal"] >= 1

    retried = served.call("POST", "/api/orders/ABC-100008/retry", "operator")
    assert retried.status_code == 200 and retried.json()["changed"] is True
    again = served.call("POST", "/api/orders/ABC-100008/retry", "operator")
    assert again.status_code == 409  # no longer failed: refused, with the reason
    canceled = served.call(
        "POST", "/api/orders/ABC-100008/cancel", "operator", json={"reason": "customer gave up"}
    )
    assert canceled.status_code == 202
    events = served.call("GET", "/api/orders/ABC-100008", "viewer").json()["events"]
    audited = [(e["action"], e["worker"]) for e in events if e["worker"] == "api:operator-bot"]
    assert ("resume_imported", "api:operator-bot") in audited and (
        "request-cancel",
        "api:operator-bot",
    ) in audited
    metrics = served.call("GET", "/metrics", "viewer").text
    assert 'orchestrator_api_requests_total{route="/api/orders",status="201"}' in metrics
