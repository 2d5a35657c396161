"""The sandbox as an ASGI app: VTEX's routes, plus a control API under the reserved `/_sandbox/`
prefix (`orchestrator.sandbox.control`). Each extra account is served under `/accounts/NAME`, so
`http://127.0.0.1:8765/accounts/acme-br` is that account's base URL."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from orchestrator.sandbox.app import Handler, Sandbox, vtex_edge
from orchestrator.sandbox.control import control_routes
from orchestrator.sandbox.hook_sender import HookSender, configure


def create_app(sandbox: Sandbox) -> Starlette:
    routes: list[BaseRoute] = [*_routes(sandbox)]
    for name, account in sandbox.accounts.items():
        routes.append(Mount(f"/accounts/{name}", routes=_routes(account)))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        """The hooks' sender runs while the sandbox serves (VTEX pushes; nothing asks it to)."""
        sender = HookSender(lambda: [sandbox.oms, *(a.oms for a in sandbox.accounts.values())])
        task = asyncio.create_task(sender.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return Starlette(routes=routes, lifespan=lifespan)


def _routes(sandbox: Sandbox) -> list[BaseRoute]:
    """One account's VTEX routes and control API."""
    oms = sandbox.oms

    def route(path: str, method: str, operation: str, handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            order_id = request.path_params.get("order_id")
            if order_id is None and operation == "place-order":
                order_id = await _place_order_id(request)
            return await vtex_edge(sandbox, request, operation, order_id, handler)

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
            lambda r, p: oms.authorize(
                r.path_params["order_id"], params(r, "affiliateId"), p, params(r, "sc")
            ),
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
        route("/api/orders/feed/config", "GET", "feed-config", lambda r, p: oms.feed_config()),
        route("/api/orders/feed/config", "POST", "feed-config-set", lambda r, p: oms.set_feed_config(p)),
        route(
            "/api/orders/feed/config", "DELETE", "feed-config-delete", lambda r, p: oms.delete_feed_config()
        ),
        route("/api/orders/feed", "GET", "feed-read", lambda r, p: oms.read_feed(params(r, "maxlot"))),
        route("/api/orders/feed", "POST", "feed-commit", lambda r, p: oms.commit_feed(p)),
        route("/api/orders/hook/config", "GET", "hook-config", lambda r, p: oms.hook_config()),
        route("/api/orders/hook/config", "POST", "hook-config-set", lambda r, p: configure(oms, p)),
        route(
            "/api/orders/hook/config", "DELETE", "hook-config-delete", lambda r, p: oms.delete_hook_config()
        ),
    ]
    return [*vtex_routes, *control_routes(sandbox)]


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
