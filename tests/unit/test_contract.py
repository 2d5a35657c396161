"""Contract: every request the client builds, and every response the sandbox gives, checked against
VTEX's official OpenAPI files (read from ../shared/vtex-openapi, never copied into the repo)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from orchestrator.sandbox import Sandbox, SandboxConfig, SandboxOms, create_app
from orchestrator.vtex.client import VtexClient
from orchestrator.vtex.errors import Conflict
from tests import openapi
from tests.factories import invoice_for, place_body

pytestmark = pytest.mark.anyio


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests to the sandbox app and keeps every exchange for inspection."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.exchanges: list[tuple[httpx.Request, httpx.Response, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.exchanges.append((request, response, body))
        return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)


async def full_flow() -> Recorder:
    """Drive every operation the product uses against the sandbox, as the engine would."""
    oms = SandboxOms(SandboxConfig(grace_seconds=0))
    recorder = Recorder(create_app(Sandbox(oms)))
    body = place_body("4242", skus=(("7", 2, 1500), ("8", 1, 990)), shipping=500)
    async with VtexClient(
        "http://sandbox", app_key=oms.config.app_key, app_token=oms.config.app_token, transport=recorder
    ) as client:
        await client.place_order("ABC", body, "1")
        await client.authorize_dispatch("ABC", "4242")
        await client.get_order("ABC-4242")
        await client.start_handling("ABC-4242")
        invoice = {
            **invoice_for(body, "NF4242"),
            "invoiceUrl": "https://nfe.example.com/NF4242.xml",
            "courier": None,
        }
        await client.send_invoice("ABC-4242", invoice)
        await client.update_tracking("ABC-4242", "NF4242", {"trackingNumber": "BR42", "courier": "Correios"})
        await client.get_order("ABC-4242")
        other = place_body("4343")
        await client.place_order("ABC", other, None)
        await client.cancel_order("ABC-4343", "customer gave up")
        with pytest.raises(Conflict):
            await client.start_handling("ABC-4343")
    return recorder


async def test_every_request_body_matches_its_operation() -> None:
    """Place (each element of the one-element array), authorize, invoice, tracking and cancel bodies."""
    openapi.require_openapi()
    recorder = await full_flow()
    checked = set()
    for request, _response, _body in recorder.exchanges:
        operation = openapi.operation_for(request.method, request.url.path)
        if not request.content:
            continue
        body = json.loads(request.content)
        if operation == "place-order":
            assert isinstance(body, list) and len(body) == 1, "Place is sent as a one-element array"
            body = body[0]
        assert openapi.request_errors(operation, body) == [], operation
        checked.add(operation)
    assert checked == {"place-order", "authorize-dispatch", "send-invoice", "send-tracking", "cancel-order"}


async def test_documented_responses_of_the_sandbox_match_their_schemas() -> None:
    """Get order, invoice, tracking, cancel 200s and the 409 OMS003 body match VTEX's response schemas."""
    openapi.require_openapi()
    recorder = await full_flow()
    checked = set()
    for request, response, raw in recorder.exchanges:
        operation = openapi.operation_for(request.method, request.url.path)
        if operation in ("place-order", "authorize-dispatch") or response.status_code == 204:
            continue
        if openapi.response_schema(operation, response.status_code) is None:
            continue
        assert openapi.response_errors(operation, response.status_code, json.loads(raw)) == [], (
            operation,
            response.status_code,
        )
        checked.add((operation, response.status_code))
    assert {
        ("get-order", 200),
        ("send-invoice", 200),
        ("send-tracking", 200),
        ("cancel-order", 200),
        ("start-handling", 409),
    } <= checked


async def test_start_handling_answers_204_without_a_body() -> None:
    """The spec documents 204 No Content for a successful Start handling."""
    openapi.require_openapi()
    recorder = await full_flow()
    start = [
        (r, raw)
        for r, resp, raw in recorder.exchanges
        if r.url.path.endswith("start-handling") and resp.status_code == 204
    ]
    assert start and start[0][1] == b""
    assert "204" in openapi.OPERATIONS["start-handling"].definition()["responses"]


async def test_place_reply_has_the_shape_of_vtex_array_example() -> None:
    """Place answers an array shaped like the 2023 spec's example (VTEX-API.md §9b)."""
    openapi.require_openapi()
    recorder = await full_flow()
    _request, response, raw = recorder.exchanges[0]
    assert response.status_code == 200
    example = openapi.example_2023("/api/fulfillment/pvt/orders")
    assert openapi.shape_errors(example, json.loads(raw)) == []


async def test_authorize_reply_has_the_shape_of_vtex_example() -> None:
    """Authorize dispatch answers {"marketplaceOrderId": ...} as the 2023 spec shows."""
    openapi.require_openapi()
    recorder = await full_flow()
    _request, response, raw = recorder.exchanges[1]
    example = openapi.example_2023("/api/fulfillment/pvt/orders/{orderId}/fulfill")
    assert response.status_code == 200
    assert openapi.shape_errors(example, json.loads(raw)) == []
    assert set(json.loads(raw)) == set(example)
