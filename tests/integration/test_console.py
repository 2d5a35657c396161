"""The web console over real HTTP: logging in with a token, the overview's counts, finding an
order by its marketplace id, retrying a failed order from its page behind a confirmation, what
another site's POST gets (nothing), and an order whose customer is called `<script>`."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from structlog.testing import capture_logs

from tests.api_server import Served, api_served, csrf_of, log_in
from tests.daemon_runs import in_state, run_until
from tests.factories import import_record, split_record

served = api_served  # the fixture, under the name these tests use


def logged_in(served: Served, role: str) -> httpx.Client:
    client = httpx.Client(base_url=served.url, timeout=30)
    answer = log_in(client, served.tokens[role])
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert served.tokens[role].lower() not in cookie  # the cookie is a session, never the token
    return client


@pytest.mark.sqlite_only
def test_login_overview_search_retry_csrf_and_escaping(served: Served) -> None:
    """Logging in (a failed login logged without the token), the overview's counts, search by marketplace id,
    a retry behind its confirmation, another site's POST refused, and a customer called `<script>` shown
    as text."""
    hostile = import_record(1, with_invoice=False)
    hostile["order"]["clientProfileData"]["firstName"] = "<script>alert('x')</script>"
    hostile["order"]["marketplacePaymentValue"] = 999  # VTEX refuses it: FMT007, so it fails
    pushed = served.call("POST", "/api/orders", "intake", json=[hostile, import_record(2)])
    assert pushed.status_code == 201
    run_until(served.settings, served.store, lambda: served.store.count_with_code("failed", "FMT007") == 1)

    anonymous = httpx.Client(base_url=served.url)
    assert anonymous.get("/").status_code == 303  # to the login page
    with capture_logs() as logs:
        refused = log_in(anonymous, "vo_wrong")
    assert [e["event"] for e in logs] == ["console login failed"] and "vo_wrong" not in json.dumps(logs)
    assert refused.status_code == 401 and "not a valid token" in refused.text
    assert log_in(anonymous, served.tokens["intake"]).status_code == 401  # not a reader

    viewer = logged_in(served, "viewer")
    overview = viewer.get("/").text
    counts = dict(re.findall(r'data-state="([a-z-]+)">(\d+)<', overview))
    assert counts["failed"] == "1" and sum(int(n) for n in counts.values()) == 2
    assert 'id="auto-refresh"' in overview and "Invoiced and failed per hour" in overview

    found = viewer.get("/search", params={"q": "100001"})
    assert found.status_code == 303 and found.headers["location"] == "/orders/ABC-100001"
    page = viewer.get("/orders/ABC-100001").text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page and "<script>alert" not in page
    assert viewer.get("/orders/ABC-100001/confirm/retry").status_code == 403  # a viewer may not act

    operator = logged_in(served, "operator")
    page = operator.get("/orders/ABC-100001").text
    # VTEX refused its data (FMT007): a retry would send the same and fail the same way, so the
    # page offers the repair instead (the retry itself stays possible, behind its confirmation).
    assert "/orders/ABC-100001/confirm/retry" not in page and "/orders/ABC-100001/repair" in page
    assert "orchestrator status --stuck" not in page  # the page says what fixes it, with the button
    confirm = operator.get("/orders/ABC-100001/confirm/retry").text
    assert "Yes, retry it" in confirm
    forged = operator.post("/orders/ABC-100001/retry", data={})  # what another site's form would send
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert served.store.find("ABC-100001").state == "failed"  # type: ignore[union-attr]
    done = operator.post("/orders/ABC-100001/retry", data={"csrf": csrf_of(confirm)})
    assert done.status_code == 303
    moved = operator.get(done.headers["location"]).text
    assert "back in imported" in moved and served.store.find("ABC-100001").state == "imported"  # type: ignore[union-attr]
    history = served.call("GET", "/api/orders/ABC-100001", "viewer").json()["events"]
    assert any(e["action"] == "resume_imported" and e["worker"] == "api:operator-bot" for e in history)

    docs = operator.get("/api/docs").text
    assert "<code>POST /api/orders</code>" in docs and "intake, operator" in docs
    stuck = operator.get("/stuck").text
    assert "Stuck orders" in stuck
    assert operator.post("/logout", data={"csrf": csrf_of(stuck)}).status_code == 303
    assert json.dumps(overview).count(served.tokens["viewer"]) == 0  # no token on any page


@pytest.mark.sqlite_only
def test_invoice_tracking_and_cancel_from_the_order_page(served: Served) -> None:
    """From an order's page: attach its invoice, then a tracking number, and cancel another order, each
    leaving its banner."""
    waiting = import_record(3, with_invoice=False)
    other = import_record(4)
    assert served.call("POST", "/api/orders", "intake", json=[waiting, other]).status_code == 201
    served.run_until(lambda: in_state(served.store, "ABC-100003", "handling"))
    operator = logged_in(served, "operator")
    page = operator.get("/orders/ABC-100003").text
    csrf = csrf_of(page)
    refused = operator.post(
        "/orders/ABC-100003/invoice", data={"csrf": csrf, "number": "NF3", "value": "1101"}
    )
    assert refused.status_code == 409 and "invoiceValue" in refused.text  # VTEX's rule, said plainly
    attached = operator.post(
        "/orders/ABC-100003/invoice", data={"csrf": csrf, "number": "NF3", "value": "1100"}
    )
    assert (
        attached.status_code == 303
        and "invoice NF3 attached" in operator.get(attached.headers["location"]).text
    )
    tracked = operator.post("/orders/ABC-100003/tracking", data={"csrf": csrf, "trackingNumber": "BR3"})
    assert tracked.status_code == 303
    row = served.store.find("ABC-100003")
    assert row is not None and row.invoice_number == "NF3" and row.tracking_number == "BR3"

    confirm = operator.get("/orders/ABC-100004/confirm/cancel").text
    canceled = operator.post(
        "/orders/ABC-100004/cancel", data={"csrf": csrf_of(confirm), "reason": "duplicate"}
    )
    assert (
        canceled.status_code == 303
        and "cancel of ABC-100004 requested" in operator.get(canceled.headers["location"]).text
    )
    events = served.call("GET", "/api/orders/ABC-100004", "viewer").json()["events"]
    assert [e["worker"] for e in events if e["action"] == "request-cancel"] == ["api:operator-bot"]
    viewer = logged_in(served, "viewer")
    assert (
        viewer.post("/orders/ABC-100003/tracking", data={"csrf": csrf_of(viewer.get("/").text)}).status_code
        == 403
    )


@pytest.mark.sqlite_only
def test_every_answer_forbids_framing_and_caching_of_order_data(served: Served) -> None:
    """Pages, API answers, refusals and errors all carry X-Frame-Options DENY and a CSP with
    frame-ancestors 'none' whose script and style sources are this server only; order data is
    never cached; the console's own files may be."""
    assert served.call("POST", "/api/orders", "intake", json=import_record(1)).status_code == 201
    operator = logged_in(served, "operator")
    answers = [
        operator.get("/"),
        operator.get("/orders/ABC-100001"),
        operator.get("/orders/NOPE-1"),
        operator.get("/login"),
        served.call("GET", "/api/orders/ABC-100001", "viewer"),
        served.call("GET", "/api/status", None),
        httpx.get(f"{served.url}/healthz"),
    ]
    for answer in answers:
        policy = answer.headers["content-security-policy"]
        assert answer.headers["x-frame-options"] == "DENY", answer.url
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
        assert "style-src 'self'" in policy and "unsafe-inline" not in policy
        assert answer.headers["cache-control"] == "no-store", answer.url
    css = operator.get("/static/console.css")
    assert css.status_code == 200 and "no-store" not in css.headers["cache-control"]
    assert operator.get("/static/../pages.py").status_code == 404
    for page in ("/", "/orders/ABC-100001", "/api/docs", "/login"):
        html = operator.get(page).text
        assert "<style" not in html and "style=" not in html and "<script>" not in html, page
        assert " onclick=" not in html and " onsubmit=" not in html, page


@pytest.mark.sqlite_only
def test_an_unknown_order_is_404_on_every_console_route(served: Served) -> None:
    """Not a 500 and an error in the log: every route of an order that is not there says so."""
    operator = logged_in(served, "operator")
    csrf = csrf_of(operator.get("/").text)
    with capture_logs() as logs:
        answers = [
            operator.get("/orders/NOPE-1"),
            operator.get("/orders/NOPE-1/vtex"),
            operator.get("/orders/NOPE-1/confirm/retry"),
            operator.get("/orders/NOPE-1/confirm/cancel"),
            operator.post("/orders/NOPE-1/retry", data={"csrf": csrf}),
            operator.post("/orders/NOPE-1/cancel", data={"csrf": csrf}),
            operator.post("/orders/NOPE-1/invoice", data={"csrf": csrf, "number": "N1", "value": "1"}),
            operator.post("/orders/NOPE-1/tracking", data={"csrf": csrf, "trackingNumber": "T"}),
        ]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert all("no order has &#39;NOPE-1&#39; as order id" in a.text for a in answers)
    assert not [e for e in logs if e["log_level"] == "error"]


def test_login_needs_its_own_form_and_logout_ends_the_session(served: Served) -> None:
    """Another site cannot log a browser in with its own token (no form nonce, or another
    Origin); logging out ends the session on the server, so the old cookie opens nothing."""
    client = httpx.Client(base_url=served.url)
    token = served.tokens["viewer"]
    assert client.post("/login", data={"token": token}).status_code == 403  # no form nonce
    foreign = log_in(client, token, Origin="http://evil.example")
    assert foreign.status_code == 403 and "another site" in foreign.text
    assert "orchestrator_session" not in foreign.headers.get("set-cookie", "")

    viewer = logged_in(served, "viewer")
    session = viewer.cookies["orchestrator_session"]
    assert viewer.get("/").status_code == 200
    assert viewer.post("/logout", data={"csrf": csrf_of(viewer.get("/").text)}).status_code == 303
    replayed = httpx.Client(base_url=served.url, cookies={"orchestrator_session": session})
    assert replayed.get("/").status_code == 303  # back to the login page: the session is over


@pytest.mark.sqlite_only
def test_logging_in_returns_to_the_page_asked_for_and_never_to_another_site(served: Served) -> None:
    """A page opened before logging in is where the login lands; a `next` that names another
    site (or is not a path) lands on the overview instead."""
    client = httpx.Client(base_url=served.url, timeout=30)
    asked = client.get("/orders/ABC-100001", params={"account": "default"})
    assert asked.status_code == 303
    assert asked.headers["location"] == "/login?next=%2Forders%2FABC-100001%3Faccount%3Ddefault"
    token = served.tokens["viewer"]
    for given, lands in [
        ("/orders/ABC-100001?account=default", "/orders/ABC-100001?account=default"),
        ("https://evil.example/phish", "/"),
        ("//evil.example/phish", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ]:
        form = httpx.Client(base_url=served.url, timeout=30)
        page = form.get("/login", params={"next": given}).text
        answer = form.post("/login", data={"token": token, "csrf": csrf_of(page), "next": given})
        assert (answer.status_code, answer.headers["location"]) == (303, lands), given


@pytest.mark.sqlite_only
def test_the_success_banner_shows_only_what_the_server_said(served: Served) -> None:
    """A link with `?done=` of someone else's making shows no banner; the server's own does."""
    assert served.call("POST", "/api/orders", "intake", json=import_record(1)).status_code == 201
    operator = logged_in(served, "operator")
    forged = operator.get("/orders/ABC-100001", params={"done": "Payment refunded: call 0800-FRAUD"})
    assert "0800-FRAUD" not in forged.text
    confirm = operator.get("/orders/ABC-100001/confirm/cancel").text
    done = operator.post("/orders/ABC-100001/cancel", data={"csrf": csrf_of(confirm), "reason": "dup"})
    banner = re.findall(r'class="ok">([^<]*)<', operator.get(done.headers["location"]).text)
    assert len(banner) == 1 and "ABC-100001" in banner[0]


def test_expired_tokens_open_nothing_and_end_their_sessions(served: Served) -> None:
    """A token past its expiry is refused by the API and the console, its sessions end, and
    `token list` says it expired."""
    from datetime import timedelta

    from typer.testing import CliRunner

    from orchestrator.cli import app
    from orchestrator.clock import utcnow
    from orchestrator.store.tables import API_TOKENS
    from orchestrator.web.auth import token_hash

    runner = CliRunner(env={"ORCHESTRATOR_DATABASE_URL": served.settings.database_url})
    made = json.loads(
        runner.invoke(
            app, ["token", "create", "--name", "temp", "--role", "viewer", "--expires", "90d", "--json"]
        ).stdout
    )
    assert made["expiresAt"] is not None
    client = httpx.Client(base_url=served.url)
    assert log_in(client, made["token"]).status_code == 303
    assert client.get("/").status_code == 200
    with served.store.engine.begin() as conn:  # ninety days later
        conn.execute(
            API_TOKENS.update()
            .where(API_TOKENS.c.token_hash == token_hash(made["token"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert client.get("/").status_code == 303  # its session is over
    bearer = {"Authorization": f"Bearer {made['token']}"}
    assert httpx.get(f"{served.url}/api/status", headers=bearer).status_code == 401
    listed = json.loads(runner.invoke(app, ["token", "list", "--json"]).stdout)["tokens"]
    assert [t["expired"] for t in listed if t["name"] == "temp"] == [True]
    assert "EXPIRED" in runner.invoke(app, ["token", "list"]).stdout
    bad = runner.invoke(app, ["token", "create", "--name", "x", "--role", "viewer", "--expires", "soon"])
    assert bad.exit_code == 2 and "--expires" in bad.output


@pytest.mark.sqlite_only
def test_the_console_names_a_missing_permission_and_each_calls_vtex_operation_id(served: Served) -> None:
    """A key without Notify invoice: the overview's alert names the License Manager resource and the
    calls that wait, `GET /api/status` carries it (checked against the OpenAPI document), and the
    order's timeline gives VTEX's operation id of each call."""
    served.sandbox.oms.config.forbidden = ("send-invoice",)
    assert served.call("POST", "/api/orders", "intake", json=[import_record(1)]).status_code == 201
    run_until(served.settings, served.store, lambda: served.store.permission_pauses() != [])

    viewer = logged_in(served, "viewer")
    overview = " ".join(viewer.get("/").text.split())
    assert "lacks the License Manager resource &#39;Notify invoice&#39;" in overview
    assert "send-invoice, send-tracking wait" in overview
    status = served.call("GET", "/api/status", "viewer").json()
    assert [m["resource"] for m in status["missingPermissions"]] == ["Notify invoice"]
    page = viewer.get("/orders/ABC-100001").text
    logged = [r for r in served.sandbox.oms.ledger.request_log if r["orderId"] == "ABC-100001"]
    assert logged and all(f"VTEX operation id {r['operationId']}" in page for r in logged)


def test_the_order_page_shows_each_invoice_and_takes_a_return(served: Served) -> None:
    """An order invoiced in two parts: its page says how far the invoices got and lists each;
    the return form registers an Input invoice (every invoiced item), which the daemon sends."""
    record = split_record(5, parts=2)
    assert served.call("POST", "/api/orders", "intake", json=[record]).status_code == 201
    served.run_until(lambda: in_state(served.store, "ABC-100005", "invoiced"))
    operator = logged_in(served, "operator")
    page = operator.get("/orders/ABC-100005").text
    assert "invoiced 2 of 2 invoices: 17.00 BRL of 17.00 BRL" in page  # money, in the account's currency
    assert page.count("<td>NF100005-") == 2 and "Register a return" in page
    returned = operator.post(
        "/orders/ABC-100005/return", data={"csrf": csrf_of(page), "number": "RT5", "value": "1700"}
    )
    assert returned.status_code == 303
    assert "return RT5 registered" in operator.get(returned.headers["location"]).text
    run_until(
        served.settings,
        served.store,
        lambda: (row := served.store.find("ABC-100005")) is not None and row.returns_sent == 1,
    )
    page = operator.get("/orders/ABC-100005").text
    assert "returned: 17.00 BRL in 1 of 1 returns" in page and "<td>return</td>" in page
