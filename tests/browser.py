"""The console's browser tests' shared parts: Debian's Chromium driven by Selenium (skipped where
there is none, unless CI requires it), logging in, a phone's width, and Deque's axe-core run on a
page.

A phone is emulated through Chrome's DevTools (`Emulation.setDeviceMetricsOverride`, 375 px, a
mobile viewport), not by resizing the window: desktop Chrome keeps windows wider than a phone.
axe-core is the `axe.min.js` the `axe-core-python` package carries, injected into the page by the
driver (DevTools evaluation, which the pages' Content-Security-Policy does not govern).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    if os.environ.get("ORCHESTRATOR_TEST_BROWSER") == "required":
        raise RuntimeError(
            "Chromium and ChromeDriver are required (apt-get install chromium chromium-driver)"
        )
    pytest.skip("no Chromium here (CI installs it: .ci/run)", allow_module_level=True)

from selenium import webdriver  # noqa: E402  (only where a browser exists)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PHONE_WIDTH = 375
SERIOUS = ("serious", "critical")
AXE = files("axe_core_python").joinpath("axe.min.js").read_text(encoding="utf-8")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP and framing refusals
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def photograph(browser: webdriver.Chrome, name: str) -> None:
    """The page as `name` in ORCHESTRATOR_SCREENSHOTS (the documentation's images), when it is
    set: encoding two dozen PNGs is CPU the rest of the suite shares, for pictures nobody keeps."""
    where = os.environ.get("ORCHESTRATOR_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(where) / name))


def log_in(browser: webdriver.Chrome, url: str, token: str) -> None:
    browser.get(f"{url}/login")
    browser.find_element(By.NAME, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "main form").submit()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "h1").text != "Log in")


def heading(browser: webdriver.Chrome) -> str:
    return str(browser.find_element(By.TAG_NAME, "h1").text)


def wait_for_page(browser: webdriver.Chrome, was: str) -> None:
    """After a click that navigates: until the page is another one, fully loaded (the driver does
    not always wait for a navigation a click started)."""
    WebDriverWait(browser, 10).until(
        lambda d: d.current_url != was and d.execute_script("return document.readyState") == "complete"
    )


def as_phone(browser: webdriver.Chrome, on: bool = True) -> None:
    if on:
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": PHONE_WIDTH, "height": 800, "deviceScaleFactor": 2, "mobile": True},
        )
    else:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def sideways(browser: webdriver.Chrome) -> int:
    """How many pixels the page is wider than the viewport (0: no horizontal scroll)."""
    return int(
        browser.execute_script(
            "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
            " - document.documentElement.clientWidth"
        )
    )


def serious_findings(browser: webdriver.Chrome) -> list[str]:
    """axe-core's serious and critical violations on the current page, one line each (the rule, its
    help, and the first elements it names)."""
    browser.execute_script(AXE)
    results: dict[str, Any] = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(done, e => done({error: String(e)}));"
    )
    assert "error" not in results, results
    return [
        f"{v['id']} ({v['impact']}): {v['help']}: " + ", ".join(str(n["target"]) for n in v["nodes"][:3])
        for v in results["violations"]
        if v.get("impact") in SERIOUS
    ]
