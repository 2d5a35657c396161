"""`serve`'s one application: the API and the console, with what they share done once.

- Authentication: Starlette's `AuthenticationMiddleware` with `TokenBackend` on every route that
  needs a caller, and `requires` naming what each route needs: how the caller came (a bearer
  token for the API, a session for the console) and the role's permission.
- Refusals: raised as `OrchestratorError`s (and Starlette's `HTTPException` for `requires`),
  answered by the exception handlers below, as JSON on an API route and as a page on the
  console's. A failure nothing answered is `LastResort`'s.
- The VTEX clients (`AccountClients`): one per account for the server's lifetime, closed when it
  stops.

`/healthz` and `/readyz` need no token, and no database for `/healthz`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrator.config.settings import Settings
from orchestrator.engine.clients import AccountClients
from orchestrator.errors import OrchestratorError
from orchestrator.log import get_logger
from orchestrator.serving import server_for
from orchestrator.store.errors import explain
from orchestrator.store.store import Store
from orchestrator.web import schemas
from orchestrator.web.api import Api
from orchestrator.web.auth import API, CONSOLE, OPERATE, PUSH, READ, Authenticator, Caller, TokenBackend
from orchestrator.web.bounded_http import BACKLOG, Limits, bounded_protocol
from orchestrator.web.console import Console
from orchestrator.web.console_accounts import AccountsPages
from orchestrator.web.console_orders import OrdersPages
from orchestrator.web.console_repair import RepairPages
from orchestrator.web.hook import hook_route
from orchestrator.web.http import Answer, ApiRoute, Endpoint, answers_json, error
from orchestrator.web.last_resort import LastResort
from orchestrator.web.metrics import ApiMetrics, Measured
from orchestrator.web.security_headers import SecurityHeaders
from orchestrator.web.spec import openapi

if TYPE_CHECKING:
    import uvicorn

Page = Callable[[Request], Any]


def api_route(endpoint: Endpoint, backend: TokenBackend, metrics: ApiMetrics) -> ApiRoute:
    """The route of one API endpoint: measured, authenticated, and let in only with a bearer
    token (401 without) whose role has the endpoint's permission (403 without)."""
    handler: Page = endpoint.handler
    if endpoint.permission is not None:
        handler = requires(endpoint.permission)(handler)
    return ApiRoute(
        endpoint.path,
        requires(API, status_code=401)(handler),
        methods=[endpoint.method],
        name=endpoint.summary,
        middleware=[
            Middleware(Measured, metrics=metrics, route=endpoint.path),
            Middleware(AuthenticationMiddleware, backend=backend),
        ],
    )


def page_route(
    path: str, page: Page, permission: str, backend: TokenBackend, *, method: str = "GET"
) -> Route:
    """The route of one console page: let in only with a session (else the login page) whose
    role has `permission` (else a page saying so)."""
    guarded = requires(CONSOLE, status_code=401)(requires(permission)(page))
    return Route(
        path, guarded, methods=[method], middleware=[Middleware(AuthenticationMiddleware, backend=backend)]
    )


def create_app(settings: Settings, store: Store) -> Starlette:
    authenticator = Authenticator(store)
    backend = TokenBackend(authenticator)
    clients = AccountClients.for_command(settings, role="serve")
    metrics = ApiMetrics()
    api = Api(settings, store, clients)

    async def healthz(_request: Request) -> Response:
        return JSONResponse(schemas.Health(status="ok"))

    async def readyz(_request: Request) -> Response:
        try:
            await run_in_threadpool(store.server_now)
        except Exception as exc:  # any failure means "not ready"; the reason, never a secret
            return JSONResponse(
                schemas.Health(status="database unusable", error=explain(exc)), status_code=503
            )
        return JSONResponse(schemas.Health(status="ok"))

    async def served_metrics(request: Request) -> Response:
        body, media_type = metrics.exposition()
        return Response(body, media_type=media_type)

    endpoints = api.endpoints()

    async def spec(request: Request) -> Response:
        return JSONResponse(openapi(endpoints))

    everything = [
        *endpoints,
        Endpoint(
            "GET",
            "/metrics",
            READ,
            "API metrics (Prometheus)",
            served_metrics,
            answers=(Answer(200, "the metrics, Prometheus' text format"),),
        ),
        Endpoint(
            "GET",
            "/api/openapi.json",
            None,
            "this document",
            spec,
            answers=(Answer(200, "the OpenAPI document"),),
        ),
    ]
    console = Console(settings, store, clients, authenticator, everything)
    orders = OrdersPages(console)
    accounts = AccountsPages(console)
    repair = RepairPages(console)
    pages: list[tuple[str, Page, str, str]] = [
        ("/", console.overview, READ, "GET"),
        ("/orders", orders.orders, READ, "GET"),
        ("/orders/bulk", orders.bulk_confirm, OPERATE, "GET"),  # before /orders/{order_id}
        ("/orders/bulk", orders.bulk, OPERATE, "POST"),
        ("/stuck", console.stuck, READ, "GET"),
        ("/accounts", accounts.accounts, READ, "GET"),
        ("/accounts/{name}/pause", accounts.pause, OPERATE, "POST"),
        ("/accounts/{name}/resume", accounts.resume, OPERATE, "POST"),
        ("/search", console.search, READ, "GET"),
        ("/api/docs", console.docs, READ, "GET"),
        ("/logout", console.logout, READ, "POST"),
        ("/orders/{order_id}", console.order, READ, "GET"),
        ("/orders/{order_id}/vtex", console.vtex, READ, "GET"),
        ("/orders/{order_id}/confirm/{action}", console.confirm, OPERATE, "GET"),
        ("/orders/{order_id}/retry", console.retry, OPERATE, "POST"),
        ("/orders/{order_id}/cancel", console.cancel, OPERATE, "POST"),
        ("/orders/{order_id}/invoice", console.invoice, PUSH, "POST"),
        ("/orders/{order_id}/tracking", console.tracking, PUSH, "POST"),
        ("/orders/{order_id}/return", console.return_, PUSH, "POST"),
        ("/orders/{order_id}/repair", repair.repair_form, PUSH, "GET"),
        ("/orders/{order_id}/repair", repair.repair, PUSH, "POST"),
    ]
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/static/{name}", console.static, methods=["GET"]),
        Route("/login", console.login_page, methods=["GET"], name="login"),
        Route("/login", console.login, methods=["POST"]),
        hook_route(settings, store),  # VTEX's own caller: its secret header, not a token
        *(api_route(e, backend, metrics) for e in everything),
        *(
            page_route(path, page, permission, backend, method=method)
            for path, page, permission, method in pages
        ),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await clients.aclose()

    return assemble(routes, console, lifespan=lifespan)


def assemble(
    routes: Sequence[BaseRoute], console: Console | None = None, *, lifespan: Any = None
) -> Starlette:
    """The application around `routes`: the exception handlers, and outermost the headers every
    answer carries (LastResort's own included)."""
    log = get_logger(component="serve")  # per application: a logger cached before a test's capture misses it

    async def on_refusal(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OrchestratorError)
        if answers_json(request.scope) or console is None:
            headers = {"Retry-After": "5"} if exc.serve_status == 503 else None
            return error(exc.serve_status, str(exc), headers=headers, **exc.details())
        return console.refusal(request, exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        client = request.client.host if request.client else "-"
        if answers_json(request.scope):
            return _api_refusal(request, exc, client, log)
        if console is not None and exc.status_code == 401:
            return RedirectResponse(f"/login?next={_quoted_path(request)}", status_code=303)
        if console is not None and exc.status_code == 403 and isinstance(request.scope.get("user"), Caller):
            return console.forbidden(request)
        return PlainTextResponse(f"{exc.detail}\n", status_code=exc.status_code, headers=exc.headers)

    return Starlette(
        routes=list(routes),
        middleware=[Middleware(SecurityHeaders), Middleware(LastResort)],
        exception_handlers={OrchestratorError: on_refusal, HTTPException: on_http},
        lifespan=lifespan,
    )


def _api_refusal(request: Request, exc: HTTPException, client: str, log: Any) -> Response:
    if exc.status_code == 401:
        # Logged without the token, whatever it was.
        log.warning("API authentication failed", path=request.url.path, client=client)
        return error(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    caller, route = request.scope.get("user"), request.scope.get("route")
    if exc.status_code == 403 and isinstance(caller, Caller):
        log.warning("API call refused to the token's role", path=request.url.path, token=caller.name)
        what = f" ({route.name})" if isinstance(route, Route) else ""
        return error(403, f"the {caller.role} role may not do this{what}")
    return error(exc.status_code, str(exc.detail), headers=exc.headers)


def _quoted_path(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return quote(target, safe="")


def api_server(settings: Settings, store: Store, limits: Limits) -> uvicorn.Server:
    """A uvicorn server for the application, bounded against slow and hostile clients
    (`bounded_http`); its socket should listen with the same `BACKLOG`."""
    return server_for(
        create_app(settings, store), settings.log_level, backlog=BACKLOG, http=bounded_protocol(limits)
    )
