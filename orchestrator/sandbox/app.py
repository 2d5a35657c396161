"""The sandbox's edge: what stands between an HTTP request and the OMS (`SandboxOms`), as VTEX's
own edge does (credentials, rate limit), plus fault injection around the OMS operation. Its routes
are `orchestrator.sandbox.routes`'.

It can stand in for several VTEX accounts at once: each extra account is a whole sandbox of its
own (its orders, its credentials, its faults, its control API).

Every VTEX route goes through `vtex_edge`, which also notices concurrent requests for one order
coming from different clients (identified by User-Agent), which a correct scale-out never sends.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from orchestrator.sandbox.faults import NOT_VTEX, FaultConfig, Faults, Hold
from orchestrator.sandbox.oms import Reply, SandboxOms, error_reply
from orchestrator.sandbox.rate_limit import SlidingMinute
from orchestrator.sandbox.responses import json_response as _json_response
from orchestrator.sandbox.responses import read_body as _body

_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Access denied</title></head><body><h1>Request blocked</h1>"
    "<p>This request was blocked by the security service. Reference #18.4f2e1c.</p></body></html>"
)

# An operation of the OMS; one that calls out (the hook's ping) is awaited.
Handler = Callable[[Request, Any], Reply | Awaitable[Reply]]


class DroppedResponse(Response):
    """Starts a response and never finishes it: the server then closes the connection, so the
    client sees a transport error although the request was applied ("drop after apply")."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )


class Sandbox:
    """The OMS plus everything around it that is not VTEX's business logic."""

    def __init__(self, oms: SandboxOms, faults: Faults | None = None) -> None:
        self.oms = oms
        self.faults = faults or Faults()
        rpm = oms.config.rate_limit_rpm
        self.limiter = SlidingMinute(rpm) if rpm else None
        self._in_flight: dict[str, dict[str, int]] = {}
        self.accounts: dict[str, Sandbox] = {}  # more accounts, served under /accounts/NAME
        # Which app keys came, how often: a test of several accounts proves that no request
        # reached this account with another account's credentials.
        self.app_keys_seen: dict[str, int] = {}

    def add_account(self, name: str, sandbox: Sandbox) -> Sandbox:
        self.accounts[name] = sandbox
        return sandbox

    def set_rate_limit(self, rpm: int | None) -> None:
        self.oms.config.rate_limit_rpm = rpm
        self.limiter = SlidingMinute(rpm) if rpm else None

    def _enter(self, order_id: str, client: str) -> None:
        clients = self._in_flight.setdefault(order_id, {})
        entry = self.oms.ledger.entry(order_id)
        if any(other != client and n > 0 for other, n in clients.items()):
            entry.concurrent_requests += 1
        clients[client] = clients.get(client, 0) + 1
        entry.most_requests_at_once = max(entry.most_requests_at_once, sum(clients.values()))

    def _leave(self, order_id: str, client: str) -> None:
        clients = self._in_flight.get(order_id)
        if clients is not None:
            clients[client] -= 1
            if not any(clients.values()):
                del self._in_flight[order_id]


async def _hold(hold: Hold | None, default: str) -> str:
    """Park at a hold until released; returns what to do next ("apply", "discard", "respond", "drop")."""
    if hold is None:
        return default
    if hold.skip > 0:
        hold.skip -= 1
        return default
    hold.hits += 1
    hold.arrived.set()
    await hold.release.wait()
    return hold.then


async def vtex_edge(
    sandbox: Sandbox, request: Request, operation: str, order_id: str | None, handler: Handler
) -> Response:
    arrived = sandbox.oms.clock()
    response = await _answer(sandbox, request, operation, order_id, handler)
    status = 0 if isinstance(response, DroppedResponse) else response.status_code
    # VTEX stamps its answers with ids its support can trace a call by.
    operation_id = str(uuid.uuid4())
    if status:
        response.headers["x-vtex-operation-id"] = operation_id
        response.headers["x-request-id"] = uuid.uuid4().hex
    sandbox.oms.ledger.log_request(
        arrived,
        operation=operation,
        order_id=order_id,
        client=request.headers.get("user-agent", ""),
        status=status,
        retry_after=response.headers.get("retry-after"),
        operation_id=operation_id if status else None,
    )
    return response


async def _answer(
    sandbox: Sandbox, request: Request, operation: str, order_id: str | None, handler: Handler
) -> Response:
    oms = sandbox.oms
    oms.ledger.count_request(operation)
    headers = request.headers
    key = headers.get("x-vtex-api-appkey", "")
    sandbox.app_keys_seen[key] = sandbox.app_keys_seen.get(key, 0) + 1
    if (
        headers.get("x-vtex-api-appkey") != oms.config.app_key
        or headers.get("x-vtex-api-apptoken") != oms.config.app_token
    ):
        return _json_response(error_reply(401, "1", "Unauthorized access"))
    if operation in oms.config.forbidden:
        return _forbidden(operation)
    if sandbox.limiter is not None:
        wait = sandbox.limiter.check(oms.config.app_key, oms.clock())
        if wait is not None:
            oms.ledger.rate_limited += 1
            return _json_response(_too_many(wait))
    faults = sandbox.faults
    is_write = request.method != "GET"
    client = headers.get("user-agent", "")
    if order_id:
        sandbox._enter(order_id, client)
    dripping = False
    try:
        delay = faults.delay()
        if delay:
            await asyncio.sleep(delay)
        fault = faults.draw(is_write)
        if fault:
            oms.ledger.count_fault(fault)
        if fault == "rate_limit":
            return _json_response(_too_many(faults.config.retry_after_seconds))
        if fault in NOT_VTEX:
            return _not_vtex(fault, faults.config)
        if fault == "error_before":
            return _json_response(
                error_reply(503, "SBX-INJECTED", "Service unavailable (injected, not applied)")
            )
        if await _hold(faults.hold_for(order_id, operation, "before"), "apply") == "discard":
            return _json_response(error_reply(503, "SBX-INJECTED", "Held request discarded (not applied)"))
        payload, bad = await _body(request)
        answer = bad or handler(request, payload)
        reply = await answer if inspect.isawaitable(answer) else answer
        if await _hold(faults.hold_for(order_id, operation, "after"), "respond") == "drop":
            return DroppedResponse()
        if fault == "slow":
            await asyncio.sleep(faults.config.slow_seconds)
        if fault == "error_after":
            return _json_response(
                error_reply(500, "SBX-INJECTED", "Internal error (injected, after applying)")
            )
        if fault == "drop_after":
            return DroppedResponse()
        if fault == "drip":
            dripping = True
            return _dripped(_json_response(reply), faults.config.drip_seconds, sandbox, order_id, client)
        return _json_response(reply)
    finally:
        if order_id and not dripping:
            sandbox._leave(order_id, client)


def _dripped(
    answer: Response, interval: float, sandbox: Sandbox, order_id: str | None, client: str
) -> Response:
    """`answer`, one byte every `interval` seconds; the request counts as in flight until the
    last byte is sent (or the client gives up)."""
    body = bytes(answer.body)

    async def drip() -> Any:
        try:
            for i in range(len(body)):
                yield body[i : i + 1]
                await asyncio.sleep(interval)
        finally:
            if order_id:
                sandbox._leave(order_id, client)

    headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
    return StreamingResponse(drip(), status_code=answer.status_code, headers=headers)


def _not_vtex(kind: str | None, config: FaultConfig) -> Response:
    """What answers when something other than VTEX sits at the URL: never applied."""
    if kind == "html":
        return Response(_HTML_PAGE, status_code=200, media_type="text/html; charset=utf-8")
    if kind == "empty":
        return Response(b"", status_code=200, media_type="application/json")
    if kind == "wrong_json":
        return JSONResponse({"success": True, "items": []})
    if kind == "redirect":
        return Response(status_code=302, headers={"Location": config.redirect_to})

    async def forever() -> Any:
        chunk = b"{" + b'"x": "' + b"0" * 65_000 + b'", '
        while True:
            yield chunk
            await asyncio.sleep(0)

    return StreamingResponse(forever(), status_code=200, media_type="application/json")


def _forbidden(operation: str) -> Response:
    """VTEX's 403 when the app key lacks the call's License Manager resource: a plain-text body,
    VTEX's code and words in its `x-vtex-error-*` headers (the message URL-encoded)."""
    message = f"The app key's roles lack the License Manager resource this call ({operation}) needs"
    return Response(
        "Forbidden",
        status_code=403,
        media_type="text/plain",
        headers={"x-vtex-error-code": "1", "x-vtex-error-message": quote(message)},
    )


def _too_many(seconds: float) -> Reply:
    reply = error_reply(429, "SBX-RATE-LIMITED", "Too Many Requests")
    reply.headers["Retry-After"] = str(int(seconds) if float(seconds).is_integer() else seconds)
    return reply
