"""What the API answers when a handler fails: a database failure is a 503 with one explained
line and Retry-After, anything else a JSON 500 without a traceback; neither leaks the error's
text beyond what `explain` says."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.clock import utcnow
from orchestrator.config.settings import load_settings
from orchestrator.store.open import open_store
from orchestrator.web.app import api_route, assemble
from orchestrator.web.auth import Authenticator, TokenBackend, new_token, token_hash
from orchestrator.web.http import Endpoint
from orchestrator.web.metrics import ApiMetrics


def test_failures_become_json_answers(tmp_path: Path) -> None:
    """A database failure inside an API route is a 503 with one explained line and Retry-After, a bug a JSON
    500 without its text or a traceback; both are counted in the API's metrics."""
    settings = load_settings(None, database_url=f"sqlite:///{tmp_path / 'o.db'}")
    store = open_store(settings.database_url, create=True)
    token = new_token()
    store.add_token("t", "viewer", token_hash(token), utcnow())
    backend, metrics = TokenBackend(Authenticator(store)), ApiMetrics()

    async def database_down(request: Request) -> Response:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused: secret-host"))

    async def bug(request: Request) -> Response:
        raise KeyError("customer-name")

    app = assemble(
        [
            api_route(Endpoint("GET", "/down", None, "down", database_down), backend, metrics),
            api_route(Endpoint("GET", "/bug", None, "bug", bug), backend, metrics),
        ]
    )
    headers = {"Authorization": f"Bearer {token}"}

    async def get(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get(path, headers=headers)

    down = asyncio.run(get("/down"))
    assert down.status_code == 503 and down.headers["Retry-After"] == "5"
    assert down.json()["error"].startswith("database: ")
    broken = asyncio.run(get("/bug"))
    assert broken.status_code == 500 and "customer-name" not in broken.text and "Traceback" not in broken.text
    assert broken.json()["error"].startswith("internal error")
    counted = metrics.exposition()[0].decode()
    assert 'route="/down",status="503"' in counted and 'route="/bug",status="500"' in counted
