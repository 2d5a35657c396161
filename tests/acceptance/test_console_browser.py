"""The console in a real headless browser (Debian's Chromium, driven by Selenium): logging in,
the overview's counts, finding an order by its marketplace id, retrying a failed order from its
page and seeing it move, an order whose customer is `<script>`, and a POST without the CSRF
token. Each page is photographed (to ORCHESTRATOR_SCREENSHOTS if set: the README's images)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.api_server import Served, api_served
from tests.browser import browser, photograph
from tests.daemon_runs import in_state
from tests.factories import import_record

served = api_served  # the fixture, under the name these tests use
__all__ = ["browser"]  # a fixture these tests use

pytestmark = pytest.mark.sqlite_only  # what a browser does with the pages


def test_an_operator_finds_and_retries_a_failed_order(
    served: Served, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """In a real browser: the login, the overview's counts, the stuck list, search, an order whose customer
    name is a script (shown as text), and a retry behind its confirmation."""
    hostile = import_record(1, with_invoice=False)
    hostile["order"]["clientProfileData"]["firstName"] = "<script>document.title='owned'</script>"
    hostile["order"]["marketplacePaymentValue"] = 999  # VTEX refuses it (FMT007): it fails
    same_id_elsewhere = import_record(2, "XYZ", with_invoice=False)  # another affiliate's order 100002
    batch = [hostile, import_record(2), same_id_elsewhere]
    assert served.call("POST", "/api/orders", "intake", json=batch).status_code == 201
    served.run_until(
        lambda: (
            served.store.count_with_code("failed", "FMT007") == 1
            and in_state(served.store, "ABC-100002", "invoiced")
        )
    )

    browser.get(f"{served.url}/stuck")  # a page before logging in: the login, then that page
    assert browser.current_url.endswith("/login?next=%2Fstuck")
    photograph(browser, "login.png")
    browser.find_element(By.NAME, "token").send_keys(served.tokens["operator"])
    browser.find_element(By.CSS_SELECTOR, "main form").submit()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "h1").text != "Log in")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Stuck orders: 1"
    browser.get(f"{served.url}/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Overview"
    count = {
        e.get_attribute("data-state"): e.text for e in browser.find_elements(By.CSS_SELECTOR, "[data-state]")
    }
    assert count["failed"] == "1" and count["invoiced"] == "1" and count["handling"] == "1"
    photograph(browser, "overview.png")

    browser.get(f"{served.url}/stuck")
    assert "ABC-100001" in browser.page_source
    photograph(browser, "stuck.png")

    search = browser.find_element(By.ID, "q")
    search.send_keys("100001")
    search.submit()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/orders/ABC-100001"))
    assert browser.title.startswith("ABC-100001")  # the customer's "script" did not run
    assert "<script>document.title='owned'</script>" in browser.find_element(By.ID, "facts").text
    photograph(browser, "order.png")

    status = browser.execute_script(
        "return fetch('/orders/ABC-100001/retry', {method: 'POST', body: new URLSearchParams()})"
        ".then(r => r.status)"
    )
    assert status == 403  # no CSRF token: refused, nothing done
    assert served.store.find("ABC-100001").state == "failed"  # type: ignore[union-attr]

    browser.get(f"{served.url}/orders/ABC-100001/confirm/retry")  # not offered on the page (a repair is)
    confirm = WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.XPATH, "//button[starts-with(., 'Yes, retry')]")
    )
    photograph(browser, "confirm.png")
    confirm[0].click()
    # The click starts a navigation that the driver does not always wait for: wait for its page.
    outcome = WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.CLASS_NAME, "ok") or d.find_elements(By.CLASS_NAME, "alert")
    )
    assert "back in imported" in outcome[0].text, browser.page_source
    assert browser.find_element(By.CSS_SELECTOR, "h1 span").text == "imported"
    assert served.store.find("ABC-100001").state != "failed"  # type: ignore[union-attr]

    browser.get(f"{served.url}/search?q=100002")  # two affiliates' orders: listed, not guessed
    listed = browser.find_element(By.TAG_NAME, "table").text
    assert "ABC-100002" in listed and "XYZ-100002" in listed
    photograph(browser, "search.png")
    browser.get(f"{served.url}/orders/ABC-100002/vtex")  # VTEX's view beside ours
    assert "invoiced" in browser.find_element(By.TAG_NAME, "table").text
    photograph(browser, "vtex.png")
    browser.get(f"{served.url}/api/docs")  # the interactive API docs: a call sent from the page
    browser.find_element(By.ID, "token").send_keys(served.tokens["operator"])
    status_call = browser.find_element(By.XPATH, "//details[.//code[text()='GET /api/status']]")
    status_call.click()
    status_call.find_element(By.TAG_NAME, "button").click()
    answer = WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "answer").text.split(" ")[0].isdigit()
    )
    assert answer and browser.find_element(By.ID, "answer").text.startswith("200")
    assert '"counts"' in browser.find_element(By.ID, "answer").text
    photograph(browser, "docs.png")
    refusals = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refusals == []  # every page meets its own policy: no inline style or script anywhere


def test_another_site_cannot_frame_the_console(served: Served, browser: webdriver.Chrome) -> None:
    """A page of another origin framing an order page (to click its Cancel through an invisible
    frame) gets nothing: the browser refuses to display it."""
    assert served.call("POST", "/api/orders", "intake", json=import_record(1)).status_code == 201
    browser.get(f"{served.url}/login")
    browser.find_element(By.NAME, "token").send_keys(served.tokens["operator"])
    browser.find_element(By.CSS_SELECTOR, "main form").submit()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Overview")
    target = f"{served.url}/orders/ABC-100001/confirm/cancel"
    framing = f'<html><body><iframe id="f" src="{target}"></iframe></body></html>'
    with foreign_page(framing) as url:
        browser.get(url)
        WebDriverWait(browser, 10).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )
        time.sleep(0.5)
        messages = [e["message"] for e in browser.get_log("browser")]
        browser.switch_to.frame(browser.find_element(By.ID, "f"))
        assert "Yes, cancel" not in browser.page_source
        browser.switch_to.default_content()
    assert any("frame-ancestors" in m or "X-Frame-Options" in m for m in messages), messages


@contextmanager
def foreign_page(html: str) -> Iterator[str]:
    """`html` served from another origin (another port of this host)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
