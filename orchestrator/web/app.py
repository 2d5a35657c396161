"""The HTTP API: a thin layer over the functions the CLI uses (import, attach, retry, cancel,
list, show, status), so the two can never disagree.

Every route but `/healthz` and `/readyz` needs a bearer token whose role allows it
(`orchestrator.web.auth`). Store calls are synchronous, so they run in Starlette's thread pool;
one that must ask VTEX first (an open intent) does so there too, on its own event loop. Every
action taken here is in the order's history under the token's name (`api:<name>`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.config.settings import Settings
from orchestrator.errors import OperationError
from orchestrator.log import get_logger
from orchestrator.store.store import Store
from orchestrator.web.api import NotFound, Routes
from orchestrator.web.auth import READ, Authenticator, Caller
from orchestrator.web.bodies import BodyError
from orchestrator.web.spec import openapi

if TYPE_CHECKING:
    import uvicorn

    from orchestrator.web.bounded_http import Limits

Handler = Callable[[Request, Caller], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    permission: str | None  # None: any valid token
    summary: str
    handler: Handler


class Api:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.auth = Authenticator(store)
        self.log = get_logger(component="api")
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "orchestrator_api_requests",
            "API requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "orchestrator_api_request_seconds", "API latency by route.", ["route"], registry=self.registry
        )

    def route(self, endpoint: Endpoint) -> Route:
        async def serve(request: Request) -> Response:
            started = time.perf_counter()
            response = await self._answer(endpoint, request)
            self.requests.labels(endpoint.path, str(response.status_code)).inc()
            self.latency.labels(endpoint.path).observe(time.perf_counter() - started)
            return response

        return Route(endpoint.path, serve, methods=[endpoint.method], name=endpoint.summary)

    async def _answer(self, endpoint: Endpoint, request: Request) -> Response:
        try:
            # The token is looked up in the database too: a database that fails there is a 503 as
            # well, never a bare 500.
            return await self._authorized(endpoint, request)
        except NotFound as missing:
            return error(404, f"no order {missing.key!r}")
        except BodyError as exc:
            return error(exc.status, str(exc))
        except OperationError as exc:
            return error(409, str(exc))
        except Exception as exc:
            # Never a traceback or a driver's text in an answer: a database that fails is a 503 a
            # client retries; anything else is logged (redacted) and a plain 500.
            from orchestrator.store.errors import explain, is_database_error

            if is_database_error(exc):
                return error(503, f"database: {explain(exc)}", headers={"Retry-After": "5"})
            # The exception's type and where, not its text: a bug's message could quote an order.
            self.log.error("API call failed", path=request.url.path, error=type(exc).__name__)
            return error(500, "internal error; the API's log has the details")

    async def _authorized(self, endpoint: Endpoint, request: Request) -> Response:
        caller = await run_in_threadpool(self.auth.caller, request.headers.get("authorization"))
        client = request.client.host if request.client else "-"
        if caller is None:
            # Logged without the token, whatever it was.
            self.log.warning("API authentication failed", path=request.url.path, client=client)
            return error(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        if endpoint.permission is not None and not caller.may(endpoint.permission):
            self.log.warning("API call refused to the token's role", path=request.url.path, token=caller.name)
            return error(403, f"the {caller.role} role may not do this ({endpoint.summary})")
        return await endpoint.handler(request, caller)


def error(status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def create_api(settings: Settings, store: Store) -> Starlette:
    api = Api(settings, store)
    endpoints = Routes(api).table()

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        try:
            await run_in_threadpool(store.server_now)
        except Exception as exc:  # any failure means "not ready"; the reason, never a secret
            from orchestrator.store.errors import explain

            return JSONResponse({"status": "database unusable", "error": explain(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request, _caller: Caller) -> Response:
        return Response(generate_latest(api.registry), media_type=CONTENT_TYPE_LATEST)

    async def spec(request: Request, _caller: Caller) -> Response:
        return JSONResponse(openapi(endpoints))

    extra = [
        Endpoint("GET", "/metrics", READ, "API metrics (Prometheus)", metrics),
        Endpoint("GET", "/api/openapi.json", None, "this document", spec),
    ]
    from orchestrator.web.console import Console

    routes_ = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *(api.route(e) for e in [*endpoints, *extra]),
        *Console(settings, store).routes(),
    ]
    from starlette.middleware import Middleware

    from orchestrator.web.last_resort import LastResort
    from orchestrator.web.security_headers import SecurityHeaders

    # Outermost first: the headers go on every answer, LastResort's own included.
    return Starlette(routes=routes_, middleware=[Middleware(SecurityHeaders), Middleware(LastResort)])


def api_server(settings: Settings, store: Store, limits: Limits) -> uvicorn.Server:
    """A uvicorn server for the API, bounded against slow and hostile clients (`bounded_http`);
    its socket should listen with the same `BACKLOG`."""
    from orchestrator.serving import server_for
    from orchestrator.web.bounded_http import BACKLOG, bounded_protocol

    protocol = bounded_protocol(limits)
    return server_for(create_api(settings, store), settings.log_level, backlog=BACKLOG, http=protocol)
