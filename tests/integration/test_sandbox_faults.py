"""Each injected fault does exactly what it says, over a real socket (answers that are not VTEX's
included), and seeds make runs repeat."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from orchestrator.sandbox import FaultConfig, Faults, Sandbox, SandboxConfig, SandboxOms, ServerThread
from tests.factories import place_body

ORDER = "ABC-1001"


@pytest.fixture
def served() -> Iterator[tuple[Sandbox, httpx.Client]]:
    sandbox = Sandbox(SandboxOms(SandboxConfig(grace_seconds=60)))
    with ServerThread(sandbox) as server:
        headers = {
            "X-VTEX-API-AppKey": sandbox.oms.config.app_key,
            "X-VTEX-API-AppToken": sandbox.oms.config.app_token,
        }
        with httpx.Client(base_url=server.url, headers=headers, timeout=1.0) as client:
            yield sandbox, client


def place(client: httpx.Client, n: str = "1") -> httpx.Response:
    return client.post("/api/fulfillment/pvt/orders", params={"affiliateId": "ABC"}, json=[place_body(n)])


def only(kind: str, **extra: float) -> FaultConfig:
    return FaultConfig(seed=1, **{kind: 1.0}, **extra)  # type: ignore[arg-type]


def test_error_before_is_not_applied(served: tuple[Sandbox, httpx.Client]) -> None:
    """503 and VTEX holds no order."""
    sandbox, client = served
    sandbox.faults.configure(only("error_before"))
    assert place(client).status_code == 503
    assert sandbox.oms.find("ABC-1") is None


def test_error_after_is_applied(served: tuple[Sandbox, httpx.Client]) -> None:
    """500, yet the order was created."""
    sandbox, client = served
    sandbox.faults.configure(only("error_after"))
    assert place(client).status_code == 500
    assert sandbox.oms.find("ABC-1") is not None


def test_drop_after_is_applied_and_the_client_sees_a_transport_error(
    served: tuple[Sandbox, httpx.Client],
) -> None:
    """The connection closes without an answer, after the effect."""
    sandbox, client = served
    sandbox.faults.configure(only("drop_after"))
    with pytest.raises(httpx.RemoteProtocolError):
        place(client)
    assert sandbox.oms.find("ABC-1") is not None


def test_slow_answers_after_the_client_gave_up(served: tuple[Sandbox, httpx.Client]) -> None:
    """The effect happens, the answer comes later than the client's timeout."""
    sandbox, client = served
    sandbox.faults.configure(only("slow", slow_seconds=3))
    with pytest.raises(httpx.ReadTimeout):
        place(client)
    assert sandbox.oms.find("ABC-1") is not None


def test_a_dripped_answer_is_vtex_s_answer_a_byte_at_a_time(served: tuple[Sandbox, httpx.Client]) -> None:
    """Applied first; then the real answer arrives a byte every `drip_seconds`, so each read of a
    client sees progress while the whole answer takes (bytes x interval)."""
    sandbox, client = served
    sandbox.faults.configure(only("drip", drip_seconds=0.001))
    started = time.monotonic()
    answer = place(client)
    took = time.monotonic() - started
    assert answer.status_code == 200 and answer.json()[0]["marketplaceOrderId"] == "1"
    assert took >= len(answer.content) * 0.001 * 0.9
    assert sandbox.oms.find("ABC-1") is not None


def test_rate_limit_is_a_429_with_retry_after_and_not_applied(served: tuple[Sandbox, httpx.Client]) -> None:
    """429 with the configured Retry-After; nothing created."""
    sandbox, client = served
    sandbox.faults.configure(only("rate_limit", retry_after_seconds=7))
    response = place(client)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "7")
    assert sandbox.oms.find("ABC-1") is None


def test_latency_delays_every_request(served: tuple[Sandbox, httpx.Client]) -> None:
    """Added latency applies to every VTEX request."""
    sandbox, client = served
    sandbox.faults.configure(FaultConfig(latency_ms=150))
    started = time.monotonic()
    client.get("/api/oms/pvt/orders/ABC-404")
    assert time.monotonic() - started >= 0.15


def test_faults_are_counted_in_the_ledger(served: tuple[Sandbox, httpx.Client]) -> None:
    """The ledger says which faults it injected."""
    sandbox, client = served
    sandbox.faults.configure(only("error_before"))
    place(client)
    assert client.get("/_sandbox/ledger").json()["summary"]["faultsInjected"] == {"error_before": 1}


def test_same_seed_same_faults() -> None:
    """Fault draws are reproducible from the seed."""
    config = FaultConfig(seed=42, error_before=0.1, error_after=0.1, drop_after=0.1, slow=0.1, rate_limit=0.1)
    first, second = Faults(config), Faults(config)
    draws = [(first.draw(True), second.draw(True)) for _ in range(500)]
    assert all(a == b for a, b in draws)
    assert {a for a, _ in draws} == {None, "error_before", "error_after", "drop_after", "slow", "rate_limit"}


def test_reads_never_get_an_after_apply_fault() -> None:
    """A read has nothing to apply, so 'after applying' faults are never drawn for it."""
    faults = Faults(FaultConfig(seed=3, error_after=0.5, drop_after=0.5))
    assert {faults.draw(False) for _ in range(200)} == {None}


def test_faults_can_be_changed_at_run_time(served: tuple[Sandbox, httpx.Client]) -> None:
    """POST /_sandbox/faults replaces the fault settings."""
    _sandbox, client = served
    assert client.post("/_sandbox/faults", json={"error_before": 1.0, "seed": 5}).status_code == 200
    assert place(client).status_code == 503
    client.post("/_sandbox/faults", json={})
    assert place(client).status_code == 200


def test_sandbox_over_a_real_socket(sandbox_server: Any) -> None:
    """The same app served by uvicorn on 127.0.0.1 answers real HTTP."""
    oms: SandboxOms = sandbox_server.sandbox.oms
    headers = {"X-VTEX-API-AppKey": oms.config.app_key, "X-VTEX-API-AppToken": oms.config.app_token}
    response = httpx.post(
        f"{sandbox_server.url}/api/fulfillment/pvt/orders",
        params={"affiliateId": "ABC"},
        json=[place_body("71")],
        headers=headers,
    )
    assert response.status_code == 200
    assert (
        httpx.get(f"{sandbox_server.url}/api/oms/pvt/orders/ABC-71", headers=headers).json()["orderId"]
        == "ABC-71"
    )


@pytest.mark.parametrize(
    ("kind", "code", "content_type"),
    [("html", 200, "text/html"), ("empty", 200, "application/json"), ("wrong_json", 200, "application/json")],
)
def test_not_vtex_answers_are_not_applied(
    served: tuple[Sandbox, httpx.Client], kind: str, code: int, content_type: str
) -> None:
    """A proxy's page, an empty 200, JSON VTEX never sends: answered, and no order exists."""
    sandbox, client = served
    sandbox.faults.configure(FaultConfig(**{kind: 1.0}))  # type: ignore[arg-type]
    answer = client.post("/api/fulfillment/pvt/orders", params={"affiliateId": "ABC"}, json=[place_body()])
    assert answer.status_code == code and answer.headers["content-type"].startswith(content_type)
    assert sandbox.oms.find(ORDER) is None


def test_a_redirect_points_at_another_host(served: tuple[Sandbox, httpx.Client]) -> None:
    """302 with a Location elsewhere (a storefront or login URL set as the API's)."""
    sandbox, client = served
    sandbox.faults.configure(FaultConfig(redirect=1.0, redirect_to="https://shop.example/login"))
    answer = client.get(f"/api/oms/pvt/orders/{ORDER}")
    assert (answer.status_code, answer.headers["location"]) == (302, "https://shop.example/login")


def test_an_endless_body_keeps_coming(served: tuple[Sandbox, httpx.Client]) -> None:
    """A 200 whose body never ends: 5 MB read and still coming."""
    sandbox, client = served
    sandbox.faults.configure(FaultConfig(endless=1.0))
    with client.stream("GET", f"/api/oms/pvt/orders/{ORDER}") as answer:
        received = 0
        for chunk in answer.iter_raw():
            received += len(chunk)
            if received > 5 * 1024 * 1024:
                break
    assert received > 5 * 1024 * 1024
