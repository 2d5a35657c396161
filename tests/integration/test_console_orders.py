"""The console's orders page over real HTTP, on SQLite and PostgreSQL: the partial search (the
customer's name is inside the order's JSON, read by each dialect's own SQL), keyset pages, the CSV
of a whole filter, a bulk action where one order's state refuses it, and filters that do not parse
refused naming the parameter."""

from __future__ import annotations

import csv
import io
import re

from tests.api_server import Served, api_served, csrf_of
from tests.daemon_runs import in_state
from tests.factories import import_record
from tests.integration.test_console import logged_in

served = api_served  # the fixture, under the name these tests use


def test_search_pages_csv_and_a_bulk_retry_refused_for_one_order(served: Served) -> None:
    """`search` finds part of a customer's name (console and API alike); pages follow their
    cursor and keep the filter; the CSV holds every matching order; a bulk retry of a failed and
    an invoiced order retries the first and says, for the second, why not."""
    failing = import_record(1, with_invoice=False)
    failing["order"]["marketplacePaymentValue"] = 999  # FMT007
    named = import_record(3, with_invoice=False)
    named["order"]["clientProfileData"]["firstName"] = "Joaquina"
    batch = [failing, import_record(2), named]
    assert served.call("POST", "/api/orders", "intake", json=batch).status_code == 201
    served.run_until(
        lambda: (
            served.store.count_with_code("failed", "FMT007") == 1
            and in_state(served.store, "ABC-100002", "invoiced")
        )
    )
    operator = logged_in(served, "operator")

    found = operator.get("/orders", params={"search": "JOAQ"}).text
    assert "1 matching" in found and "ABC-100003" in found and "ABC-100001" not in found
    api = served.call("GET", "/api/orders?search=joaq", "viewer").json()["orders"]
    assert [o["orderId"] for o in api] == ["ABC-100003"]
    assert (
        served.call("GET", "/api/orders?search=100%25", "viewer").json()["orders"] == []
    )  # % is a character

    first = operator.get("/orders", params={"limit": "2"}).text
    assert "3 matching" in first
    ids = re.findall(r'<a href="/orders/(ABC-\d+)">', first)
    assert ids == ["ABC-100003", "ABC-100002"]
    after = re.search(r'href="(/orders\?[^"]*after=[^"]*)" rel="next"', first)
    assert after is not None and "limit=2" in after.group(1)
    second = operator.get(after.group(1).replace("&amp;", "&")).text
    assert re.findall(r'<a href="/orders/(ABC-\d+)">', second) == ["ABC-100001"]
    assert 'rel="next"' not in second

    exported = operator.get("/orders", params={"limit": "1", "format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(r["orderId"] for r in rows) == ["ABC-100001", "ABC-100002", "ABC-100003"]  # not a page

    picked = {"action": "retry", "ref": ["ABC-100001", "ABC-100002"]}
    confirm = operator.get("/orders/bulk", params=picked).text
    assert "Retry 2 orders?" in confirm and "1 of them cannot be retried" in confirm
    done = operator.post(
        "/orders/bulk", data={"csrf": csrf_of(confirm), "action": "retry", "ref": picked["ref"]}
    ).text
    assert "1 changed, 0 unchanged, 1 refused." in done
    assert "refused: ABC-100002 is invoiced, not failed" in done
    assert served.store.find("ABC-100001").state == "imported"  # type: ignore[union-attr]
    assert served.store.find("ABC-100002").state == "invoiced"  # type: ignore[union-attr]

    assert logged_in(served, "viewer").get("/orders/bulk", params=picked).status_code == 403
    refused = operator.get("/orders", params={"olderThan": "banana"})
    assert refused.status_code == 400 and "olderThan" in refused.text
