"""The VTEX client: one method per call of the flow, bodies as VTEX's OpenAPI files define them.

Every request goes through `_send`, which waits for the account's request budget, times the call
and hands failures to `orchestrator.vtex.errors` for classification. The transport is the seam: tests
and the demo pass the sandbox's ASGI app or a real socket; production uses the network.
"""

from __future__ import annotations

import asyncio
import json as json_module
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from orchestrator import __version__
from orchestrator.redaction import register_secret
from orchestrator.vtex import hook
from orchestrator.vtex.answers import (
    MAX_BODY_BYTES,
    Answer,
    BodyTooLarge,
    check_success,
    is_vtex_not_found,
    unexpected,
)
from orchestrator.vtex.budget import RequestBudget, Unlimited
from orchestrator.vtex.errors import (
    Misdirected,
    OutOfTime,
    RateLimited,
    RetryableError,
    Throttled,
    VtexError,
    classify_response,
    classify_transport_error,
    trace_ids,
)
from orchestrator.vtex.ids import derive_order_id
from orchestrator.vtex.transport import VtexTransport

PLACE_PATH = "/api/fulfillment/pvt/orders"
FULFILL_PATH = "/api/fulfillment/pvt/orders/{order_id}/fulfill"
ORDER_PATH = "/api/oms/pvt/orders/{order_id}"
START_HANDLING_PATH = "/api/oms/pvt/orders/{order_id}/start-handling"
INVOICE_PATH = "/api/oms/pvt/orders/{order_id}/invoice"
INVOICE_UPDATE_PATH = "/api/oms/pvt/orders/{order_id}/invoice/{invoice_number}"
CANCEL_PATH = "/api/oms/pvt/orders/{order_id}/cancel"
FEED_PATH = "/api/orders/feed"
FEED_CONFIG_PATH = "/api/orders/feed/config"
HOOK_CONFIG_PATH = "/api/orders/hook/config"

# When the current step's calls must be over (`time.monotonic()`), or None outside a step.
_CALLS_END_BY: ContextVar[float | None] = ContextVar("calls_end_by", default=None)
SHORTEST_CALL = 0.5  # seconds: less time than this left in the step, and no call is started


@contextmanager
def calls_end_by(deadline: float | None) -> Iterator[None]:
    """Every call made inside (in this task) is over by `deadline`, a `time.monotonic()` value.

    A step holds its order under a lease; a call that outlives it lets another worker claim the
    order and send a second request for it while the first is still open. So the step sets the
    end of its lease (less the time to save its outcome) as the deadline: the budget wait and the
    call itself are cut to fit, and a call there is no time left for is not started at all."""
    token = _CALLS_END_BY.set(deadline)
    try:
        yield
    finally:
        _CALLS_END_BY.reset(token)


@dataclass(frozen=True)
class Call:
    """What one request did: for the order's history and for metrics."""

    operation: str
    order_id: str | None
    http_status: int | None
    duration_ms: float
    body: Any = None
    sent_at: float = 0.0  # wall clock, seconds
    trace: Mapping[str, str] = field(default_factory=dict)  # VTEX's ids of the call (`trace_ids`)


CallObserver = Callable[[Call, VtexError | None], None]


def invoice_request_body(invoice: Mapping[str, Any]) -> dict[str, Any]:
    """The invoice notification body: `invoiceValue` as a string of cents (the spec's type) and
    no `null` courier (the spec declares it non-nullable); everything else as imported."""
    body = dict(invoice)
    body["invoiceValue"] = str(body["invoiceValue"])
    if body.get("courier") is None:
        body.pop("courier", None)
    return body


def tracking_request_body(tracking: Mapping[str, Any]) -> dict[str, Any]:
    """The partial invoice update: all four fields the spec requires, `null` where unknown."""
    return {
        "trackingNumber": tracking["trackingNumber"],
        "trackingUrl": tracking.get("trackingUrl"),
        "courier": tracking.get("courier"),
        "dispatchedDate": tracking.get("dispatchedDate"),
    }


class VtexClient:
    def __init__(
        self,
        base_url: str,
        *,
        app_key: str,
        app_token: str,
        timeout: float = 20.0,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: RequestBudget | None = None,
        observer: CallObserver | None = None,
        worker_id: str = "",
        max_budget_wait: float | None = None,
    ) -> None:
        self._headers = httpx.Headers(
            {
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
                "Content-Type": "application/json",
                "X-VTEX-API-AppKey": app_key,
                "X-VTEX-API-AppToken": app_token,
                "User-Agent": f"vtex-orchestrator/{__version__} ({worker_id})"
                if worker_id
                else "vtex-orchestrator",
            }
        )
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        # httpx's request and response models and its transports, without AsyncClient: its
        # per-request URL merging, cookie jar, auth and redirect machinery (none of which VTEX's API
        # needs) cost three times what the whole exchange costs on the transport itself.
        self._transport = (
            transport if transport is not None else VtexTransport(max_connections=max_connections)
        )
        self.budget: RequestBudget = budget or Unlimited()
        self._observer = observer
        self._max_budget_wait = max_budget_wait

    def use_credentials(self, app_key: str, app_token: str) -> bool:
        """From the next request on, send these credentials (rotated ones, re-read by the
        daemon); True when they differ from those in use."""
        if (
            self._headers["X-VTEX-API-AppKey"] == app_key
            and self._headers["X-VTEX-API-AppToken"] == app_token
        ):
            return False
        headers = self._headers.copy()
        headers["X-VTEX-API-AppKey"] = app_key
        headers["X-VTEX-API-AppToken"] = app_token
        self._headers = headers
        return True

    def hook_secret(self, account_key: str) -> str:
        """The secret VTEX's Hook should send, from the app token in use (`hook.secret`): the
        token itself never leaves the client. The secret is masked wherever text is shown, as the
        token is."""
        value = hook.secret(self._headers["X-VTEX-API-AppToken"], account_key)
        register_secret(value)
        return value

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> VtexClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the calls of the flow ---------------------------------------------------------------

    async def place_order(
        self, affiliate_id: str, order: Mapping[str, Any], sales_channel: str | None
    ) -> Call:
        """Place fulfillment order, sent as a one-element array as every VTEX example does."""
        params = {"affiliateId": affiliate_id}
        if sales_channel:
            params["sc"] = sales_channel
        order_id = derive_order_id(affiliate_id, str(order["marketplaceOrderId"]))
        return await self._send(
            "place-order", order_id, "POST", PLACE_PATH, params=params, json=[dict(order)]
        )

    async def authorize_dispatch(
        self, affiliate_id: str, marketplace_order_id: str, sales_channel: str | None = None
    ) -> Call:
        """Authorize dispatch, with the same `sc` (trade policy) the order was placed with."""
        order_id = derive_order_id(affiliate_id, marketplace_order_id)
        params = {"affiliateId": affiliate_id}
        if sales_channel:
            params["sc"] = sales_channel
        return await self._send(
            "authorize-dispatch",
            order_id,
            "POST",
            FULFILL_PATH.format(order_id=order_id),
            params=params,
            json={"marketplaceOrderId": marketplace_order_id},
        )

    async def get_order(self, order_id: str) -> Call:
        """Get order; a 404 is an answer here (the order does not exist), so `body` is None."""
        return await self._send(
            "get-order", order_id, "GET", ORDER_PATH.format(order_id=order_id), none_on_404=True
        )

    async def start_handling(self, order_id: str) -> Call:
        return await self._send(
            "start-handling", order_id, "POST", START_HANDLING_PATH.format(order_id=order_id)
        )

    async def send_invoice(self, order_id: str, invoice: Mapping[str, Any]) -> Call:
        return await self._send(
            "send-invoice",
            order_id,
            "POST",
            INVOICE_PATH.format(order_id=order_id),
            json=invoice_request_body(invoice),
        )

    async def update_tracking(self, order_id: str, invoice_number: str, tracking: Mapping[str, Any]) -> Call:
        path = INVOICE_UPDATE_PATH.format(order_id=order_id, invoice_number=invoice_number)
        return await self._send(
            "send-tracking", order_id, "PATCH", path, json=tracking_request_body(tracking)
        )

    async def cancel_order(self, order_id: str, reason: str) -> Call:
        return await self._send(
            "cancel-order", order_id, "POST", CANCEL_PATH.format(order_id=order_id), json={"reason": reason}
        )

    # -- the Orders Feed (v3) ------------------------------------------------------------------

    async def feed_config(self) -> Call:
        """The app key's feed configuration; `body` is None when it has none (VTEX's 404)."""
        return await self._send("feed-config", None, "GET", FEED_CONFIG_PATH, none_on_404=True)

    async def set_feed_config(self, config: Mapping[str, Any]) -> Call:
        return await self._send("feed-config-set", None, "POST", FEED_CONFIG_PATH, json=dict(config))

    async def read_feed(self, maxlot: int) -> Call:
        """Up to `maxlot` (at most 10) items; `body` is None when the app key has no feed any more
        (VTEX's 404: the configuration is gone)."""
        return await self._send(
            "feed-read", None, "GET", FEED_PATH, params={"maxlot": str(maxlot)}, none_on_404=True
        )

    async def commit_feed(self, handles: list[str]) -> Call:
        return await self._send("feed-commit", None, "POST", FEED_PATH, json={"handles": handles})

    # -- the Orders Hook ------------------------------------------------------------------------

    async def hook_config(self) -> Call:
        """The app key's hook configuration; `body` is None when it has none (VTEX deletes a hook
        after three days without a notification)."""
        return await self._send("hook-config", None, "GET", HOOK_CONFIG_PATH, none_on_404=True)

    async def set_hook_config(self, config: Mapping[str, Any]) -> Call:
        """VTEX pings the hook's URL first and answers 400 unless the ping was answered 200."""
        return await self._send("hook-config-set", None, "POST", HOOK_CONFIG_PATH, json=dict(config))

    # -- one place for every request ---------------------------------------------------------

    async def _send(
        self,
        operation: str,
        order_id: str | None,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        none_on_404: bool = False,
    ) -> Call:
        is_write = method != "GET"
        timeout = await self._wait_for_budget(operation, order_id)
        url = self._base_url + quote(path) + ("?" + urlencode(params) if params else "")
        content = json_module.dumps(json).encode() if json is not None else None
        request = httpx.Request(
            method, url, headers=self._headers, content=content, extensions={"timeout": self._timeouts}
        )
        sent_at = time.time()
        started = time.perf_counter()
        try:
            response, content = await self._exchange(request, timeout)
        except BodyTooLarge:
            answer = Answer(200, "", b"")
            error = unexpected(
                operation, order_id, answer, is_write=is_write, why=f"a body over {MAX_BODY_BYTES} bytes"
            )
            error.duration_ms = _ms(started)
            self._observe(Call(operation, order_id, None, error.duration_ms, sent_at=sent_at), error)
            raise error from None
        except (httpx.TransportError, httpx.DecodingError) as exc:  # no (usable) answer
            self.budget.unanswered()
            error = classify_transport_error(exc, operation=operation, order_id=order_id, is_write=is_write)
            error.duration_ms = _ms(started)
            self._observe(Call(operation, order_id, None, error.duration_ms, sent_at=sent_at), error)
            raise error from exc
        status = response.status_code
        if status != 429:
            self.budget.answered()  # VTEX takes calls: ends the probe after a 429 pause
        answer = Answer(status, response.headers.get("content-type", ""), content)
        trace = trace_ids(response.headers)
        call = Call(operation, order_id, status, _ms(started), sent_at=sent_at, trace=trace)
        try:
            body = self._judge(operation, order_id, method, response, answer, none_on_404=none_on_404)
        except VtexError as error:
            error.duration_ms = call.duration_ms
            error.trace = trace
            if isinstance(error, RateLimited):
                self.budget.pause(error.retry_after)
            self._observe(call, error)
            raise
        call = Call(operation, order_id, status, call.duration_ms, body, sent_at, trace)
        self._observe(call, None)
        return call

    async def _wait_for_budget(self, operation: str, order_id: str | None) -> float:
        """Wait for the request budget, within what the step's deadline leaves; the seconds the
        call itself may then take."""
        deadline = _CALLS_END_BY.get()
        budget_wait = self._max_budget_wait
        if deadline is not None:
            left = deadline - time.monotonic() - SHORTEST_CALL
            if left <= 0:
                raise OutOfTime(operation=operation, order_id=order_id)
            budget_wait = left if budget_wait is None else min(budget_wait, left)
        try:
            await self.budget.acquire(budget_wait)
        except Throttled as throttled:
            raise Throttled(throttled.retry_after or 0.0, operation=operation, order_id=order_id) from None
        if deadline is None:
            return self._timeout
        return max(0.0, min(self._timeout, deadline - time.monotonic()))

    async def _exchange(self, request: httpx.Request, timeout: float) -> tuple[httpx.Response, bytes]:
        """Send `request` and read its whole answer within `timeout` seconds. VTEX_TIMEOUT bounds
        the whole call (connecting, sending, waiting, reading), not each read: an answer dripping
        a byte at a time would otherwise keep the call open without end, past its step's lease."""
        try:
            async with asyncio.timeout(timeout):
                response = await self._transport.handle_async_request(request)
                return response, await _read_capped(response)
        except TimeoutError:
            raise httpx.ReadTimeout(
                f"no whole answer within {timeout:.1f}s (VTEX_TIMEOUT bounds the whole call); abandoned",
                request=request,
            ) from None

    @staticmethod
    def _judge(
        operation: str,
        order_id: str | None,
        method: str,
        response: httpx.Response,
        answer: Answer,
        *,
        none_on_404: bool,
    ) -> Any:
        """The body of a success, or the error the answer means (see `orchestrator.vtex.answers`)."""
        is_write = method != "GET"
        status = answer.status
        if 300 <= status < 400:
            location = response.headers.get("location")
            raise Misdirected(
                f"VTEX_BASE_URL answers HTTP {status}, redirecting to {location or 'nowhere'}: set it to "
                "the account's API host (https://{account}.vtexcommercestable.com.br), not a store, "
                "login or CDN address",
                location=location,
                operation=operation,
                order_id=order_id,
                http_status=status,
                code="REDIRECT",
            )
        if 200 <= status < 300:
            check_success(operation, order_id, answer, is_write=is_write)
            return answer.json
        if none_on_404 and status == 404:
            if is_vtex_not_found(answer):
                return None
            raise unexpected(
                operation, order_id, answer, is_write=is_write, why="a 404 page that is not VTEX's"
            )
        raise classify_response(
            status,
            response.headers,
            answer.content,
            response.reason_phrase,
            operation=operation,
            order_id=order_id,
            is_write=is_write,
        )

    def _observe(self, call: Call, error: VtexError | None) -> None:
        if self._observer is not None:
            self._observer(call, error)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def _read_capped(response: httpx.Response) -> bytes:
    """The body, decoded, but never more than MAX_BODY_BYTES of it (`BodyTooLarge` beyond)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BodyTooLarge(f"more than {MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
    finally:
        await response.aclose()
    return b"".join(chunks)


__all__ = ["Call", "RetryableError", "VtexClient"]
