"""Only real answers count: a 2xx is success only in the shape VTEX documents for that call, only
VTEX's own 404 means "no such order", a redirect is a configuration error, and no body is read
past 4 MB. Each case against the sandbox over a real socket, through the client the daemon uses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from orchestrator.sandbox import FaultConfig, Sandbox, SandboxConfig, SandboxOms, ServerThread
from orchestrator.vtex.client import Call, VtexClient
from orchestrator.vtex.errors import Misdirected, NotVtexRead, NotVtexWrite, OrderIdMismatch
from tests.factories import invoice_for, place_body

ORDER = "ABC-1001"


@pytest.fixture
def served() -> Iterator[ServerThread]:
    with ServerThread(Sandbox(SandboxOms(SandboxConfig(grace_seconds=0)))) as server:
        yield server


def run(server: ServerThread, call: Callable[[VtexClient], Awaitable[Call]], **client: Any) -> Call:
    config = server.sandbox.oms.config

    async def go() -> Call:
        async with VtexClient(
            server.url, app_key=config.app_key, app_token=config.app_token, timeout=5, **client
        ) as vtex:
            return await call(vtex)

    return asyncio.run(go())


def place(vtex: VtexClient) -> Awaitable[Call]:
    return vtex.place_order("ABC", place_body(), None)


WRITES: dict[str, Callable[[VtexClient], Awaitable[Call]]] = {
    "place-order": place,
    "authorize-dispatch": lambda vtex: vtex.authorize_dispatch("ABC", "1001"),
    "start-handling": lambda vtex: vtex.start_handling(ORDER),
    "send-invoice": lambda vtex: vtex.send_invoice(ORDER, invoice_for(place_body())),
    "cancel-order": lambda vtex: vtex.cancel_order(ORDER, "test"),
}


@pytest.mark.parametrize("kind", ["html", "empty", "wrong_json"])
@pytest.mark.parametrize("operation", sorted(WRITES))
def test_a_2xx_that_is_not_vtexs_answer_to_a_write_is_of_unknown_outcome(
    served: ServerThread, kind: str, operation: str
) -> None:
    """Not success: a NotVtexWrite (ambiguous: reconcile first), naming what answered."""
    run(served, place)  # an order to act on
    served.sandbox.faults.configure(FaultConfig(**{kind: 1.0}))  # type: ignore[arg-type]
    with pytest.raises(NotVtexWrite) as caught:
        run(served, WRITES[operation])
    message = caught.value.message
    assert "Content-Type" in message and caught.value.code == "NOT-VTEX"
    if kind == "html":
        assert "text/html" in message and "<!DOCTYPE html>" in message


@pytest.mark.parametrize("kind", ["html", "empty", "wrong_json"])
def test_a_200_that_is_not_an_order_is_not_no_such_order(served: ServerThread, kind: str) -> None:
    """Get order answered 200 with something else: an error, never "VTEX has no such order"."""
    run(served, place)
    served.sandbox.faults.configure(FaultConfig(**{kind: 1.0}))  # type: ignore[arg-type]
    with pytest.raises(NotVtexRead):
        run(served, lambda vtex: vtex.get_order(ORDER))


def test_only_vtexs_own_404_means_no_such_order(served: ServerThread) -> None:
    """The sandbox's JSON 404 is an answer (body None); a 404 HTML page from elsewhere is not."""
    assert run(served, lambda vtex: vtex.get_order("ABC-404")).body is None

    async def html_404(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, headers={"content-type": "text/html"}, content=b"<html>Not Found</html>")

    with pytest.raises(NotVtexRead):
        run(served, lambda vtex: vtex.get_order("ABC-404"), transport=httpx.MockTransport(html_404))


def test_get_order_must_be_the_order_asked_for(served: ServerThread) -> None:
    """A JSON order with another id (a cache, a wrong route) is not this order's answer."""

    async def other(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"orderId": "ABC-9", "status": "handling"})

    with pytest.raises(NotVtexRead):
        run(served, lambda vtex: vtex.get_order(ORDER), transport=httpx.MockTransport(other))


def test_a_redirect_is_a_configuration_error_naming_the_location(served: ServerThread) -> None:
    """3xx: not applied, not followed; the error says where it points."""
    served.sandbox.faults.configure(FaultConfig(redirect=1.0, redirect_to="https://shop.example/login"))
    with pytest.raises(Misdirected) as caught:
        run(served, place)
    assert caught.value.location == "https://shop.example/login"
    assert "https://shop.example/login" in caught.value.message
    assert served.sandbox.oms.find(ORDER) is None


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_body_without_end_is_cut_at_4_mb(served: ServerThread, transport: str) -> None:
    """An endless 200 is an unexpected answer, not 2 GB of memory, on both transports."""
    served.sandbox.faults.configure(FaultConfig(endless=1.0))
    options: dict[str, Any] = {} if transport == "aiohttp" else {"transport": httpx.AsyncHTTPTransport()}
    with pytest.raises(NotVtexRead) as caught:
        run(served, lambda vtex: vtex.get_order(ORDER), **options)
    assert "over 4194304 bytes" in caught.value.message


@pytest.mark.parametrize("form", ["array", "object"])
def test_place_accepts_both_documented_answers(served: ServerThread, form: str) -> None:
    """The array (2023 spec, every example) and the object (2024+ spec) are both success."""
    served.sandbox.oms.config.place_answer = form
    assert run(served, place).http_status == 200


@pytest.mark.parametrize("code", [200, 201, 204])
def test_authorize_accepts_each_documented_answer(served: ServerThread, code: int) -> None:
    """200 {marketplaceOrderId}, 201 {status, orderId, details}, 204 without a body."""
    run(served, place)
    served.sandbox.oms.config.authorize_status = code
    assert run(served, WRITES["authorize-dispatch"]).http_status == code


def test_place_naming_another_order_id_is_refused(served: ServerThread) -> None:
    """Place's answer names another orderId than affiliateId-marketplaceOrderId: say so, loudly."""

    async def elsewhere(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"marketplaceOrderId": "1001", "orderId": "ABC-1001-01"}])

    with pytest.raises(OrderIdMismatch) as caught:
        run(served, place, transport=httpx.MockTransport(elsewhere))
    assert "ABC-1001-01" in caught.value.message


@pytest.mark.anyio
async def test_httpx_own_transport_can_be_chosen(sandbox_server: object) -> None:
    """VTEX_HTTP_TRANSPORT=httpx (for proxies) talks to VTEX just the same."""
    from orchestrator.config.settings import load_settings
    from orchestrator.engine.clients import build_client

    server = sandbox_server
    config = server.sandbox.oms.config  # type: ignore[attr-defined]
    settings = load_settings(
        None,
        vtex_base_url=server.url,
        vtex_app_key=config.app_key,
        vtex_app_token=config.app_token,  # type: ignore[attr-defined]
        vtex_http_transport="httpx",
    )
    async with build_client(settings, settings.account()) as client:
        assert isinstance(client._transport, httpx.AsyncHTTPTransport)
        assert (await client.get_order("ABC-1")).http_status == 404
