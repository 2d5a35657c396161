"""The web console over real HTTP: logging in with a token, the overview's counts, finding an
order by its marketplace id, retrying a failed order from its page behind a confirmation, what
another site's POST gets (nothing), and an order whose customer is called `<script>`."""

from __future__ import annotations

import json
import re

import httpx
from structlog.testing import capture_logs

from tests.api_server import Served, api_served
from tests.daemon_runs import run_until
from tests.factories import import_record

served = api_served  # the fixture, under the name these tests use


def logged_in(served: Served, role: str) -> httpx.Client:
    client = httpx.Client(base_url=served.url, timeout=30)
    answer = client.post("/login", data={"token": served.tokens[role]})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    return client


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match is not None
    return match.group(1)


def test_login_overview_search_retry_csrf_and_escaping(served: Served) -> None:
    hostile = import_record(1, with_invoice=False)
    hostile["order"]["clientProfileData"]["firstName"] = "<script>alert('x')</script>"
    hostile["order"]["marketplacePaymentValue"] = 999  # VTEX refuses it: FMT007, so it fails
    pushed = served.call("POST", "/api/orders", "intake", json=[hostile, import_record(2)])
    assert pushed.status_code == 201
    run_until(served.settings, served.store, lambda: served.store.count_with_code("failed", "FMT007") == 1)

    anonymous = httpx.Client(base_url=served.url)
    assert anonymous.get("/").status_code == 303  # to the login page
    with capture_logs() as logs:
        refused = anonymous.post("/login", data={"token": "vo_wrong"})
    assert [e["event"] for e in logs] == ["console login failed"] and "vo_wrong" not in json.dumps(logs)
    assert refused.status_code == 401 and "not a valid token" in refused.text
    assert (
        anonymous.post("/login", data={"token": served.tokens["intake"]}).status_code == 401
    )  # not a reader

    viewer = logged_in(served, "viewer")
    overview = viewer.get("/").text
    counts = dict(re.findall(r'data-state="([a-z-]+)">(\d+)<', overview))
    assert counts["failed"] == "1" and sum(int(n) for n in counts.values()) == 2
    assert 'http-equiv="refresh"' in overview and "Invoiced and failed per hour" in overview

    found = viewer.get("/search", params={"q": "100001"})
    assert found.status_code == 303 and found.headers["location"] == "/orders/ABC-100001"
    page = viewer.get("/orders/ABC-100001").text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page and "<script>alert" not in page
    assert viewer.get("/orders/ABC-100001/confirm/retry").status_code == 403  # a viewer may not act

    operator = logged_in(served, "operator")
    page = operator.get("/orders/ABC-100001").text
    assert "/orders/ABC-100001/confirm/retry" in page
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


def test_invoice_tracking_and_cancel_from_the_order_page(served: Served) -> None:
    waiting = import_record(3, with_invoice=False)
    other = import_record(4)
    assert served.call("POST", "/api/orders", "intake", json=[waiting, other]).status_code == 201
    run_until(
        served.settings,
        served.store,
        lambda: (row := served.store.find("ABC-100003")) is not None and row.state == "handling",
    )
    operator = logged_in(served, "operator")
    page = operator.get("/orders/ABC-100003").text
    csrf = csrf_of(page)
    refused = operator.post("/orders/ABC-100003/invoice", data={"csrf": csrf, "number": "NF3", "value": "1"})
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
