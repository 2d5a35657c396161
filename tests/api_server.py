"""`orchestrator serve`'s application on a real socket in a thread of the test process, with one
token per role made by the real CLI, beside the VTEX sandbox (for the API and console tests)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.config.settings import Settings
from orchestrator.sandbox import Sandbox, ServerThread
from orchestrator.serving import bind, url_of
from orchestrator.store.open import open_store
from orchestrator.store.store import Store
from orchestrator.web.app import api_server
from orchestrator.web.bounded_http import BACKLOG, Limits
from tests.daemon_runs import run_until


class Contract:
    """The OpenAPI document the server serves, held to account: every API answer a test gets
    must have a status its endpoint declares, and a JSON body that matches that status's schema.
    So the document cannot say less (or otherwise) than the routes do."""

    def __init__(self, document: dict[str, Any]) -> None:
        validate(document)  # a valid OpenAPI 3.1 document, first of all
        self.document = document
        self.paths = [
            (re.compile("^" + re.sub(r"{\w+}", "[^/]+", template) + "$"), template)
            for template in document["paths"]
        ]

    def check(self, method: str, path: str, answer: httpx.Response) -> None:
        bare = path.split("?", 1)[0]
        template = next((t for pattern, t in self.paths if pattern.match(bare)), None)
        operation = self.document["paths"].get(template, {}).get(method.lower()) if template else None
        if operation is None:
            return  # not an API route (the console's pages, health)
        declared = operation["responses"].get(str(answer.status_code))
        assert declared is not None, f"{method} {template} answered {answer.status_code}, not in the document"
        schema = declared.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            jsonschema.validate(
                answer.json(),
                {**schema, "components": self.document["components"]},
                cls=jsonschema.Draft202012Validator,
            )


class Served:
    def __init__(
        self, url: str, tokens: dict[str, str], store: Store, settings: Settings, sandbox: Sandbox
    ) -> None:
        self.url, self.tokens, self.store, self.settings, self.sandbox = url, tokens, store, settings, sandbox
        self._contract: Contract | None = None

    def run_until(self, done: Callable[[], bool], **kw: Any) -> Any:
        """The daemon of these settings on this store until `done()` (`daemon_runs.run_until`)."""
        return run_until(self.settings, self.store, done, **kw)

    def call(self, method: str, path: str, role: str | None = "operator", **kw: Any) -> httpx.Response:
        """One request, as `role`; an answer of the API is checked against its OpenAPI document."""
        answer = self._send(method, path, role, **kw)
        self.contract().check(method, path, answer)
        return answer

    def contract(self) -> Contract:
        if self._contract is None:
            self._contract = Contract(self._send("GET", "/api/openapi.json", "viewer").json())
        return self._contract

    def _send(self, method: str, path: str, role: str | None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kw)


@pytest.fixture
def api_served(
    make_sandbox: Callable[..., Sandbox], make_settings: Callable[..., Settings]
) -> Iterator[Served]:
    sandbox = make_sandbox(grace_seconds=0.3)
    with ServerThread(sandbox) as vtex:
        settings = make_settings(sandbox, vtex.url, grace_period="0.3s")
        with serve_api(settings, sandbox) as served:
            yield served


@contextmanager
def serve_api(settings: Settings, sandbox: Sandbox, sock: socket.socket | None = None) -> Iterator[Served]:
    """The API of `settings` on a real socket (`sock`, bound already when the settings must name
    its URL), with one token per role."""
    store = open_store(settings.database_url, create=True)
    runner = CliRunner(env={"ORCHESTRATOR_DATABASE_URL": settings.database_url})
    tokens = {}
    for role in ("intake", "viewer", "operator"):
        created = runner.invoke(app, ["token", "create", "--name", f"{role}-bot", "--role", role, "--json"])
        assert created.exit_code == 0, created.output
        tokens[role] = json.loads(created.stdout)["token"]
    sock = sock or bind("127.0.0.1", 0, backlog=BACKLOG)
    server = api_server(settings, store, Limits())
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    try:
        yield Served(url_of(sock), tokens, store, settings, sandbox)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9A-Za-z_-]+)"', page)
    assert match is not None
    return match.group(1)


def log_in(client: httpx.Client, token: str, **headers: str) -> httpx.Response:
    """What a browser does: open the login page, then post its form (with the form's nonce)."""
    form = client.get("/login").text
    return client.post("/login", data={"token": token, "csrf": csrf_of(form)}, headers=headers)
