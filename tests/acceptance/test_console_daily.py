"""The console as an operator's daily tool, in Debian's Chromium: the orders page's filters and
pages, a bulk retry of 50 failed orders chosen by a filter, an order VTEX refused repaired until
it is invoiced, an account paused and resumed, and every page at a phone's width and through
axe-core. Pages are photographed, at desktop and phone width, for the README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from orchestrator.clock import utcnow
from orchestrator.intake.importer import import_lines
from tests.api_server import Served, api_served
from tests.browser import (
    as_phone,
    browser,
    heading,
    log_in,
    photograph,
    serious_findings,
    sideways,
    wait_for_page,
)
from tests.daemon_runs import in_state, run_until
from tests.factories import import_record

served = api_served  # the fixture, under the name these tests use
__all__ = ["browser"]  # a fixture these tests use
pytestmark = pytest.mark.sqlite_only  # what a browser does with the pages


def refused_by_vtex(n: int, affiliate: str = "ABC") -> dict[str, object]:
    """An order VTEX refuses for its data (FMT007: the payment total is not the order's)."""
    record = import_record(n, affiliate)
    record["order"]["marketplacePaymentValue"] = 999  # type: ignore[index]
    record.pop("invoice", None)
    return record


def import_records(served: Served, records: list[dict[str, object]]) -> None:
    done = import_lines([json.dumps(r) for r in records], served.store, utcnow())
    assert done.ok, done.problems


def test_orders_page_filters_pages_and_retries_fifty_failed_orders_at_once(
    served: Served, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """The overview's failed count opens the orders page filtered to them; the filter lives in the
    URL (its pages, the back button); "Retry all…" on that filter retries the 50, after a
    confirmation that counts them, and each order's history says who."""
    import_records(served, [refused_by_vtex(n) for n in range(1, 51)])
    import_records(served, [import_record(n, "XYZ", with_invoice=False) for n in range(51, 54)])
    run_until(served.settings, served.store, lambda: served.store.count_with_code("failed", "FMT007") == 50)

    log_in(browser, served.url, served.tokens["operator"])
    browser.find_element(By.CSS_SELECTOR, "a[data-state=failed]").click()
    WebDriverWait(browser, 10).until(lambda d: "/orders?state=failed" in d.current_url)
    assert "50 matching" in heading(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "#orders tbody tr")
    assert len(rows) == 50 and all("FMT007" in r.text for r in rows)
    assert "9.99 BRL" in rows[0].text  # money in the account's currency, not "999 cents"
    photograph(browser, "orders.png")

    # Twenty per page, newest first: three pages, then back, with the filter kept throughout.
    browser.get(f"{served.url}/orders?state=failed&limit=20")
    first = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#orders tbody td:nth-child(2) a")]
    assert first[0] == "ABC-100050" and len(first) == 20
    page_one = browser.current_url
    browser.find_element(By.ID, "next-page").click()
    wait_for_page(browser, page_one)
    second = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#orders tbody td:nth-child(2) a")]
    assert second[0] == "ABC-100030" and not set(first) & set(second)
    assert "state=failed" in browser.current_url and "limit=20" in browser.current_url
    browser.back()
    WebDriverWait(browser, 10).until(lambda d: d.current_url == page_one)

    # A search by part of the customer's name, of the id, and a filter by affiliate.
    browser.get(f"{served.url}/orders")
    box = browser.find_element(By.NAME, "search")
    box.send_keys("10005")  # part of ABC-100050 and XYZ-100051..53
    box.submit()
    WebDriverWait(browser, 10).until(lambda d: "search=10005" in d.current_url)
    assert "4 matching" in heading(browser)
    browser.find_element(By.NAME, "affiliate").send_keys("XYZ")
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    WebDriverWait(browser, 10).until(lambda d: "affiliate=XYZ" in d.current_url)
    assert "3 matching" in heading(browser) and "search=10005" in browser.current_url

    # Every failed order, in one action on the filter.
    browser.get(f"{served.url}/orders?state=failed&code=FMT007")
    browser.find_element(By.ID, "retry-all").click()
    WebDriverWait(browser, 10).until(lambda d: "Retry 50 orders?" in heading(d))
    assert "50 orders of default (50)" in browser.find_element(By.ID, "scope").text
    photograph(browser, "bulk-confirm.png")
    confirm = browser.current_url
    browser.find_element(By.XPATH, "//button[starts-with(., 'Yes, retry 50')]").click()
    wait_for_page(browser, confirm)
    assert browser.find_element(By.ID, "summary").text == "50 changed, 0 unchanged, 0 refused."
    photograph(browser, "bulk-done.png")
    assert served.store.count_with_code("failed", "FMT007") == 0
    history = served.call("GET", "/api/orders/ABC-100017", "viewer").json()["events"]
    assert any(
        e["action"] == "resume_imported" and e["worker"] == "api:operator-bot (bulk retry of 50)"
        for e in history
    )


def test_a_refused_order_is_repaired_in_the_console_until_it_is_invoiced(
    served: Served, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """The stuck list offers Repair (not Retry) for an order VTEX refused for its data; the editor
    refuses a wrong value naming the field and keeps what was typed; the corrected order is placed
    again and reaches invoiced."""
    import_records(served, [refused_by_vtex(1)])
    run_until(served.settings, served.store, lambda: served.store.count_with_code("failed", "FMT007") == 1)

    log_in(browser, served.url, served.tokens["operator"])
    browser.get(f"{served.url}/stuck")
    fix = browser.find_element(By.CSS_SELECTOR, "#stuck tbody a.button")
    assert fix.text == "Repair…" and "Retry" not in browser.find_element(By.ID, "stuck").text
    fix.click()
    WebDriverWait(browser, 10).until(lambda d: heading(d).startswith("Repair ABC-100001"))
    photograph(browser, "repair.png")
    editor = browser.find_element(By.ID, "body")
    line = json.loads(editor.get_attribute("value") or "")
    assert line["order"]["marketplacePaymentValue"] == 999

    line["order"]["marketplacePaymentValue"] = "1100 BRL"  # not a number: refused, kept as typed
    typed = json.dumps(line, indent=2)
    editor.clear()
    editor.send_keys(typed)
    page = browser.current_url
    browser.find_element(By.XPATH, "//button[starts-with(., 'Save')]").click()
    problems = WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "problems"))
    assert "order.marketplacePaymentValue" in problems[0].text
    assert json.loads(browser.find_element(By.ID, "body").get_attribute("value") or "") == line
    assert served.store.find("ABC-100001").place_body["marketplacePaymentValue"] == 999  # type: ignore[union-attr]

    line["order"]["marketplacePaymentValue"] = 1100
    line["invoice"] = import_record(1)["invoice"]  # and its invoice, known by now
    editor = browser.find_element(By.ID, "body")
    editor.clear()
    editor.send_keys(json.dumps(line, indent=2))
    page = browser.current_url
    browser.find_element(By.XPATH, "//button[starts-with(., 'Save')]").click()
    wait_for_page(browser, page)
    assert "repaired" in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    served.run_until(lambda: in_state(served.store, "ABC-100001", "invoiced"))
    browser.refresh()
    assert browser.find_element(By.CSS_SELECTOR, "h1 .state").text == "invoiced"
    history = served.call("GET", "/api/orders/ABC-100001", "viewer").json()["events"]
    assert any(e["worker"] == "api:operator-bot" and e["action"] == "replace" for e in history), history


def test_an_account_is_paused_and_resumed_from_the_console(
    served: Served, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """Paused from the accounts page, the account's orders wait (the daemon sends nothing) and
    every report names the account by its name; resumed, they go on to invoiced."""
    log_in(browser, served.url, served.tokens["operator"])
    browser.get(f"{served.url}/accounts")
    browser.find_element(By.CSS_SELECTOR, "#account-default summary").click()
    browser.find_element(By.NAME, "reason").send_keys("VTEX maintenance window")
    page = browser.current_url
    browser.find_element(By.XPATH, "//button[starts-with(., 'Yes, pause')]").click()
    wait_for_page(browser, page)
    assert "account default paused" in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    photograph(browser, "accounts.png")
    status = served.call("GET", "/api/status", "viewer").json()
    [paused] = status["accounts"]
    assert paused["account"] == "default"  # the name, never the URL
    assert paused["reason"] == "paused by api:operator-bot: VTEX maintenance window"

    import_records(served, [import_record(1)])
    requests_before = served.sandbox.oms.ledger.requests
    run_until(served.settings, served.store, lambda: False, timeout=1.5)
    assert served.store.find("ABC-100001").state == "imported"  # type: ignore[union-attr]
    ledger = served.sandbox.oms.ledger
    assert ledger.requests == requests_before, ledger.requests_by_operation  # nothing sent to VTEX
    browser.get(f"{served.url}/")
    assert "paused by api:operator-bot" in browser.find_element(By.TAG_NAME, "main").text

    browser.get(f"{served.url}/accounts")
    page = browser.current_url
    browser.find_element(By.XPATH, "//button[starts-with(., 'Resume default')]").click()
    wait_for_page(browser, page)
    assert "account default resumed" in browser.find_element(By.CSS_SELECTOR, "[role=status]").text
    served.run_until(lambda: in_state(served.store, "ABC-100001", "invoiced"))


def test_every_page_fits_a_phone_and_has_no_serious_accessibility_finding(
    served: Served, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """Each page, logged in as an operator, at 1280 px and at 375 px: no sideways scroll on the
    phone, and axe-core finds nothing serious or critical."""
    import_records(served, [refused_by_vtex(1), import_record(2), import_record(3, with_invoice=False)])
    served.run_until(
        lambda: (
            served.store.count_with_code("failed", "FMT007") == 1
            and in_state(served.store, "ABC-100002", "invoiced")
        )
    )
    wide: dict[str, int] = {}
    found: dict[str, list[str]] = {}

    def look(name: str, path: str) -> None:
        browser.get(f"{served.url}{path}")
        found[name] = serious_findings(browser)
        photograph(browser, f"{name}.png")
        as_phone(browser)
        browser.get(f"{served.url}{path}")
        wide[name] = sideways(browser)
        photograph(browser, f"{name}-phone.png")
        as_phone(browser, on=False)

    look("login", "/login")
    log_in(browser, served.url, served.tokens["operator"])
    pages = {
        "overview": "/",
        "orders": "/orders",
        "stuck": "/stuck",
        "accounts": "/accounts",
        "search": "/search?q=nothing-like-it",
        "order": "/orders/ABC-100002",
        "failed-order": "/orders/ABC-100001",
        "vtex": "/orders/ABC-100002/vtex",
        "confirm": "/orders/ABC-100003/confirm/cancel",
        "bulk-confirm": "/orders/bulk?action=retry&ref=ABC-100001",
        "repair": "/orders/ABC-100001/repair",
        "docs": "/api/docs",
        "refused": "/orders/NOPE-1",
    }
    for name, path in pages.items():
        look(name, path)
    assert {name: px for name, px in wide.items() if px > 0} == {}
    assert {name: lines for name, lines in found.items() if lines} == {}
