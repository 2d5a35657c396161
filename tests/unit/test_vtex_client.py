"""The VTEX client: requests it builds, and how every kind of failure is classified."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from orchestrator.vtex import errors
from orchestrator.vtex.client import VtexClient
from orchestrator.vtex.errors import (
    AmbiguousError,
    AuthError,
    Conflict,
    MissingPermission,
    NotFound,
    PermanentError,
    RateLimited,
    RetryableError,
    classify_transport_error,
)
from tests.factories import invoice_for, place_body

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler) -> VtexClient:
    return VtexClient(
        "https://acme.vtexcommercestable.com.br",
        app_key="key-1",
        app_token="token-1",
        transport=httpx.MockTransport(handler),
    )


def envelope(code: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "exception": None}}


async def test_place_is_a_one_element_array_with_affiliate_query_and_credentials() -> None:
    """Place is POSTed as [order] with ?affiliateId= and the AppKey/AppToken headers."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[{"orderId": "ABC-1"}])

    async with client_for(handler) as client:
        await client.place_order("ABC", place_body("1"), "2")
    request = seen[0]
    assert request.url.path == "/api/fulfillment/pvt/orders"
    assert dict(request.url.params) == {"affiliateId": "ABC", "sc": "2"}
    assert request.headers["X-VTEX-API-AppKey"] == "key-1"
    assert request.headers["X-VTEX-API-AppToken"] == "token-1"
    assert json.loads(request.content) == [place_body("1")]


async def test_invoice_value_is_sent_as_a_string_of_cents() -> None:
    """The spec types invoiceValue as a string; an imported integer is sent as "1100"."""
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"date": "d", "orderId": "ABC-1", "receipt": "r"})

    async with client_for(handler) as client:
        await client.send_invoice("ABC-1", invoice_for(place_body("1")))
    assert bodies[0]["invoiceValue"] == "1100"


async def test_place_reply_as_an_object_works_too() -> None:
    """The 2024+ spec answers Place with an object; the client does not depend on the shape."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"orderId": "ABC-1", "status": "success", "message": "ok", "orderData": {}}
        )

    async with client_for(handler) as client:
        call = await client.place_order("ABC", place_body("1"), None)
    assert call.http_status == 200 and call.order_id == "ABC-1"


@pytest.mark.parametrize(
    ("status", "body", "is_write", "expected", "code"),
    [
        (400, envelope("FMT007", "Payment total (1) differs"), True, PermanentError, "FMT007"),
        (401, envelope("1", "Unauthorized access"), True, AuthError, "1"),
        (403, None, False, MissingPermission, None),
        (404, None, True, NotFound, None),
        (409, envelope("OMS003", "Order status should be ready-for-handling"), True, Conflict, "OMS003"),
        (500, envelope("X", "boom"), True, AmbiguousError, "X"),
        (503, None, True, AmbiguousError, None),
        (500, None, False, RetryableError, None),
    ],
)
async def test_http_statuses_map_to_the_error_tree(
    status: int, body: object, is_write: bool, expected: type[Exception], code: str | None
) -> None:
    """4xx are permanent (401 credentials, 403 one permission, 404 not found, 409 conflict); 5xx on
    a write may have applied."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if body is not None else httpx.Response(status)

    async with client_for(handler) as client:
        with pytest.raises(expected) as caught:
            if is_write:
                await client.start_handling("ABC-1")
            else:
                await client.get_order("ABC-1")
    assert type(caught.value) is expected
    assert caught.value.http_status == status and caught.value.code == code


@pytest.mark.parametrize(
    ("call", "resource"),
    [
        (lambda c: c.get_order("ABC-1"), "View order"),
        (lambda c: c.start_handling("ABC-1"), "Change order workflow status"),
        (lambda c: c.send_invoice("ABC-1", {"invoiceValue": 1}), "Notify invoice"),
        (lambda c: c.update_tracking("ABC-1", "NF-1", {"trackingNumber": "T"}), "Notify invoice"),
        (lambda c: c.cancel_order("ABC-1", "r"), "Cancel order"),
    ],
)
async def test_a_403_names_the_license_manager_resource_of_its_call(call: Any, resource: str) -> None:
    """VTEX's 403 means the app key lacks the one resource that call needs (Orders API,
    per-endpoint Permissions); the error says which, whatever the body."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, text="Forbidden")

    async with client_for(handler) as client:
        with pytest.raises(MissingPermission) as caught:
            await call(client)
    assert caught.value.resource == resource
    assert repr(resource) in caught.value.describe()


async def test_vtex_error_headers_stand_in_for_a_body_without_an_envelope_and_ids_are_kept() -> None:
    """A plain-text 403 loses nothing: VTEX's x-vtex-error-code and its URL-encoded
    x-vtex-error-message give the code and words; x-vtex-operation-id and x-request-id are kept
    on the error and on a success, for VTEX support."""
    answers = iter(
        [
            httpx.Response(
                403,
                text="Forbidden",
                headers={
                    "x-vtex-error-code": "1",
                    "x-vtex-error-message": "Access%20denied%3A%20Notify%20invoice",
                    "x-vtex-operation-id": "5f0c-op",
                    "x-request-id": "req-1",
                },
            ),
            httpx.Response(
                200,
                json={"orderId": "ABC-1", "status": "handling"},
                headers={"x-vtex-operation-id": "6a1d-op"},
            ),
        ]
    )

    async with client_for(lambda request: next(answers)) as client:
        with pytest.raises(MissingPermission) as caught:
            await client.send_invoice("ABC-1", {"invoiceValue": 1})
        call = await client.get_order("ABC-1")
    assert caught.value.code == "1" and caught.value.message == "Access denied: Notify invoice"
    assert caught.value.trace == {"operationId": "5f0c-op", "requestId": "req-1"}
    assert call.trace == {"operationId": "6a1d-op"}


async def test_a_get_order_with_a_null_status_is_vtex_answering() -> None:
    """VTEX documents `status: null` for an incomplete order: an answer, not "not VTEX"."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"orderId": "ABC-1", "status": None, "value": 100})

    async with client_for(handler) as client:
        call = await client.get_order("ABC-1")
    assert call.body["status"] is None


async def test_429_carries_retry_after_and_pauses_the_budget() -> None:
    """A 429 becomes RateLimited with the Retry-After seconds, and the client pauses itself."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "7"})

    async with client_for(handler) as client:
        with pytest.raises(RateLimited) as caught:
            await client.get_order("ABC-1")
        assert caught.value.retry_after == 7.0
        assert client.budget.paused_for == pytest.approx(7.0, abs=0.5)


async def test_get_order_404_is_an_answer_not_an_error() -> None:
    """Reconciling needs 'the order does not exist' as data: Get order 404 returns body None."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json=envelope("X", "not found"))

    async with client_for(handler) as client:
        call = await client.get_order("ABC-1")
    assert (call.http_status, call.body) == (404, None)


def test_retry_after_as_an_http_date() -> None:
    """Retry-After may be an HTTP date (RFC 9110); it becomes seconds from now."""
    from datetime import UTC, datetime

    now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    assert errors.parse_retry_after("Fri, 27 Nov 2026 12:00:30 GMT", now) == 30.0
    assert errors.parse_retry_after("soon", now) is None


async def test_connect_error_is_retryable_and_read_timeout_on_a_write_is_ambiguous() -> None:
    """A request that never left is safe to resend; one whose answer was lost may have applied."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def lose(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with client_for(refuse) as client:
        with pytest.raises(RetryableError):
            await client.start_handling("ABC-1")
    async with client_for(lose) as client:
        with pytest.raises(AmbiguousError):
            await client.start_handling("ABC-1")
        with pytest.raises(RetryableError):
            await client.get_order("ABC-1")


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= _all_subclasses(sub)
    return found


def test_every_httpx_transport_error_is_mapped() -> None:
    """No transport error of httpx escapes classification (a new one would fail here)."""
    request = httpx.Request("POST", "https://x")
    for exc_type in _all_subclasses(httpx.TransportError) | {httpx.TransportError}:
        exc = exc_type("x", request=request) if exc_type is not httpx.UnsupportedProtocol else exc_type("x")
        for is_write in (True, False):
            classified = classify_transport_error(exc, operation="op", order_id="ABC-1", is_write=is_write)
            assert isinstance(classified, RetryableError | AmbiguousError), exc_type
            if not is_write:
                assert isinstance(classified, RetryableError), exc_type


def test_error_messages_carry_vtex_code_and_never_credentials() -> None:
    """Errors say operation, order, status and VTEX's code and message."""
    error = PermanentError(
        "Payment total (1) differs", operation="place-order", order_id="ABC-1", http_status=400, code="FMT007"
    )
    assert str(error) == "place-order ABC-1: HTTP 400 [FMT007] Payment total (1) differs"
