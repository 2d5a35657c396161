"""The API's own metrics (`GET /metrics`): requests by route and status, and their latency.

Measured around each API route, outside its authentication, so a 401 or a 403 is counted like any
other answer; a request that fails before answering (the database, while its token is looked up)
is counted with the 503 or 500 `LastResort` will give it.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.store.errors import is_database_error


class ApiMetrics:
    def __init__(self) -> None:
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

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its media type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Measured:
    """Route middleware: counts the route's answers by status and times them."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, route: str) -> None:
        self.app = app
        self.metrics = metrics
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status: list[int] = []

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, noting)
        except Exception as exc:
            status.append(503 if is_database_error(exc) else 500)
            raise
        finally:
            self._record(status[0] if status else 500, time.perf_counter() - started)

    def _record(self, status: int, seconds: float) -> None:
        self.metrics.requests.labels(self.route, str(status)).inc()
        self.metrics.latency.labels(self.route).observe(seconds)
