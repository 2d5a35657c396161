"""The sandbox as an ASGI app: VTEX's routes, plus a control API under the reserved `/_sandbox/` prefix.

Every VTEX route goes through `_vtex`, which does what VTEX's edge would (credentials, rate limit),
applies fault injection around the OMS operation, and notices concurrent requests for one order
coming from different clients (identified by User-Agent), which a correct scale-out never sends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.sandbox.faults import FaultConfig, Faults, Hold
from orchestrator.sandbox.oms import Reply, SandboxOms, error_reply
from orchestrator.sandbox.rate_limit import SlidingMinute

Handler = Callable[[Request, Any], Reply]


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

    def set_rate_limit(self, rpm: int | None) -> None:
        self.oms.config.rate_limit_rpm = rpm
        self.limiter = SlidingMinute(rpm) if rpm else None

    def _enter(self, order_id: str, client: str) -> None:
        clients = self._in_flight.setdefault(order_id, {})
        if any(other != client and n > 0 for other, n in clients.items()):
            self.oms.ledger.entry(order_id).concurrent_requests += 1
        clients[client] = clients.get(client, 0) + 1

    def _leave(self, order_id: str, client: str) -> None:
        clients = self._in_flight.get(order_id)
        if clients is not None:
            clients[client] -= 1
            if not any(clients.values()):
                del self._in_flight[order_id]


def _json_response(reply: Reply) -> Response:
    if reply.status == 204:
        return Response(status_code=204, headers=reply.headers)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


async def _body(request: Request) -> tuple[Any, Reply | None]:
    raw = await request.body()
    if not raw:
        return None, None
    try:
        return json.loads(raw), None
    except ValueError:
        return None, error_reply(400, "SBX-INVALID-BODY", "The request body is not valid JSON")


async def _hold(hold: Hold | None, default: str) -> str:
    """Park at a hold until released; returns what to do next ("apply", "discard", "respond", "drop")."""
    if hold is None:
        return default
    hold.hits += 1
    hold.arrived.set()
    await hold.release.wait()
    return hold.then


async def _vtex(
    sandbox: Sandbox, request: Request, operation: str, order_id: str | None, handler: Handler
) -> Response:
    arrived = sandbox.oms.clock()
    response = await _answer(sandbox, request, operation, order_id, handler)
    status = 0 if isinstance(response, DroppedResponse) else response.status_code
    sandbox.oms.ledger.log_request(
        arrived,
        operation=operation,
        order_id=order_id,
        client=request.headers.get("user-agent", ""),
        status=status,
        retry_after=response.headers.get("retry-after"),
    )
    return response


async def _answer(
    sandbox: Sandbox, request: Request, operation: str, order_id: str | None, handler: Handler
) -> Response:
    oms = sandbox.oms
    oms.ledger.count_request(operation)
    headers = request.headers
    if (
        headers.get("x-vtex-api-appkey") != oms.config.app_key
        or headers.get("x-vtex-api-apptoken") != oms.config.app_token
    ):
        return _json_response(error_reply(401, "1", "Unauthorized access"))
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
    try:
        delay = faults.delay()
        if delay:
            await asyncio.sleep(delay)
        fault = faults.draw(is_write)
        if fault:
            oms.ledger.count_fault(fault)
        if fault == "rate_limit":
            return _json_response(_too_many(faults.config.retry_after_seconds))
        if fault == "error_before":
            return _json_response(
                error_reply(503, "SBX-INJECTED", "Service unavailable (injected, not applied)")
            )
        if await _hold(faults.hold_for(order_id, operation, "before"), "apply") == "discard":
            return _json_response(error_reply(503, "SBX-INJECTED", "Held request discarded (not applied)"))
        payload, bad = await _body(request)
        reply = bad or handler(request, payload)
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
        return _json_response(reply)
    finally:
        if order_id:
            sandbox._leave(order_id, client)


def _too_many(seconds: float) -> Reply:
    reply = error_reply(429, "SBX-RATE-LIMITED", "Too Many Requests")
    reply.headers["Retry-After"] = str(int(seconds) if float(seconds).is_integer() else seconds)
    return reply


def create_app(sandbox: Sandbox) -> Starlette:
    oms = sandbox.oms

    def route(path: str, method: str, operation: str, handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            order_id = request.path_params.get("order_id")
            if order_id is None and operation == "place-order":
                order_id = await _place_order_id(request)
            return await _vtex(sandbox, request, operation, order_id, handler)

        return Route(path, endpoint, methods=[method], name=operation)

    def params(request: Request, name: str) -> str | None:
        return request.query_params.get(name)

    vtex_routes = [
        route(
            "/api/fulfillment/pvt/orders",
            "POST",
            "place-order",
            lambda r, p: oms.place(params(r, "affiliateId"), params(r, "sc"), p),
        ),
        route(
            "/api/fulfillment/pvt/orders/{order_id}/fulfill",
            "POST",
            "authorize-dispatch",
            lambda r, p: oms.authorize(r.path_params["order_id"], params(r, "affiliateId"), p),
        ),
        route(
            "/api/oms/pvt/orders/{order_id}",
            "GET",
            "get-order",
            lambda r, p: oms.get(r.path_params["order_id"]),
        ),
        route(
            "/api/oms/pvt/orders/{order_id}/start-handling",
            "POST",
            "start-handling",
            lambda r, p: oms.start_handling(r.path_params["order_id"]),
        ),
        route(
            "/api/oms/pvt/orders/{order_id}/invoice",
            "POST",
            "send-invoice",
            lambda r, p: oms.invoice(r.path_params["order_id"], p),
        ),
        route(
            "/api/oms/pvt/orders/{order_id}/invoice/{invoice_number}",
            "PATCH",
            "send-tracking",
            lambda r, p: oms.update_tracking(r.path_params["order_id"], r.path_params["invoice_number"], p),
        ),
        route(
            "/api/oms/pvt/orders/{order_id}/cancel",
            "POST",
            "cancel-order",
            lambda r, p: oms.cancel(r.path_params["order_id"], p),
        ),
    ]
    return Starlette(routes=vtex_routes + _control_routes(sandbox))


async def _place_order_id(request: Request) -> str | None:
    """Place carries the order id in its body; read it for the concurrency check."""
    affiliate = request.query_params.get("affiliateId")
    try:
        payload = json.loads(await request.body() or b"null")
    except ValueError:
        return None
    body = payload[0] if isinstance(payload, list) and payload else payload
    if affiliate and isinstance(body, dict) and isinstance(body.get("marketplaceOrderId"), str):
        return f"{affiliate}-{body['marketplaceOrderId']}"
    return None


def _control_routes(sandbox: Sandbox) -> list[Route]:
    oms = sandbox.oms

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True, "orders": len(oms.orders)})

    async def ledger(_request: Request) -> Response:
        return JSONResponse(oms.ledger.as_dict())

    async def requests(_request: Request) -> Response:
        return JSONResponse(list(oms.ledger.request_log))

    async def ledger_order(request: Request) -> Response:
        entry = oms.ledger.get(request.path_params["order_id"])
        if entry is None:
            return JSONResponse({"error": "unknown order"}, status_code=404)
        return JSONResponse(entry.as_dict())

    async def reset(_request: Request) -> Response:
        oms.reset()
        return JSONResponse({"ok": True})

    async def admin_cancel(request: Request) -> Response:
        """Someone cancels the order in VTEX's Admin (e.g. during the grace period)."""
        payload, _ = await _body(request)
        return _json_response(oms.cancel(request.path_params["order_id"], payload or {"reason": "Admin"}))

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            payload, bad = await _body(request)
            if bad or not isinstance(payload, dict):
                return JSONResponse({"error": "expected a JSON object of fault settings"}, status_code=400)
            try:
                sandbox.faults.configure(FaultConfig(**payload))
            except TypeError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if "rate_limit_rpm" in payload:
                sandbox.set_rate_limit(payload["rate_limit_rpm"])
        return JSONResponse(sandbox.faults.config.as_dict())

    async def holds(request: Request) -> Response:
        if request.method == "POST":
            payload, _ = await _body(request)
            if not isinstance(payload, dict):
                return JSONResponse({"error": "expected {orderId, operation, when}"}, status_code=400)
            when = payload.get("when", "before")
            if when not in ("before", "after"):
                return JSONResponse({"error": "when must be before or after"}, status_code=400)
            sandbox.faults.holds.append(Hold(payload["orderId"], payload["operation"], when))
        return JSONResponse(
            [
                {
                    "orderId": h.order_id,
                    "operation": h.operation,
                    "when": h.when,
                    "arrived": h.arrived.is_set(),
                }
                for h in sandbox.faults.holds
            ]
        )

    async def release(request: Request) -> Response:
        payload, _ = await _body(request)
        if not isinstance(payload, dict):
            return JSONResponse({"error": "expected {orderId, operation, when, then}"}, status_code=400)
        hold = sandbox.faults.hold_for(
            payload.get("orderId"), payload.get("operation", ""), payload.get("when", "")
        )
        if hold is None:
            return JSONResponse({"error": "no such hold"}, status_code=404)
        then = payload.get("then", "apply" if hold.when == "before" else "respond")
        allowed = ("apply", "discard") if hold.when == "before" else ("respond", "drop")
        if then not in allowed:
            return JSONResponse({"error": f"then must be one of {allowed}"}, status_code=400)
        hold.then = then
        sandbox.faults.holds.remove(hold)
        hold.release.set()
        return JSONResponse({"ok": True})

    return [
        Route("/_sandbox/health", health),
        Route("/_sandbox/ledger", ledger),
        Route("/_sandbox/requests", requests),
        Route("/_sandbox/ledger/{order_id}", ledger_order),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/orders/{order_id}/cancel", admin_cancel, methods=["POST"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST"]),
        Route("/_sandbox/holds", holds, methods=["GET", "POST"]),
        Route("/_sandbox/holds/release", release, methods=["POST"]),
    ]
