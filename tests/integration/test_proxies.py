"""HTTP_PROXY / HTTPS_PROXY / NO_PROXY are honoured by both transports, through a real local proxy."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.sandbox import ServerThread
from orchestrator.vtex.proxies import ProxyError, proxy_for


class ForwardProxy:
    """A minimal HTTP forward proxy (absolute-form requests) on its own thread, recording them."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, version = request_line.split(" ")
                self.seen.append(f"{method} {target}")
                headers = [line for line in header_lines if line]
                length = next(
                    (int(h.split(":", 1)[1]) for h in headers if h.lower().startswith("content-length:")), 0
                )
                body = await reader.readexactly(length) if length else b""
                parts = urlsplit(target)
                upstream_reader, upstream_writer = await asyncio.open_connection(parts.hostname, parts.port)
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                kept = [h for h in headers if not h.lower().startswith(("proxy-", "connection:"))]
                upstream_writer.write(
                    (
                        f"{method} {path} {version}\r\n"
                        + "\r\n".join([*kept, "Connection: close"])
                        + "\r\n\r\n"
                    ).encode()
                    + body
                )
                answer = await upstream_reader.read()
                upstream_writer.close()
                writer.write(answer)
                await writer.drain()
                break  # the upstream answer said Connection: close
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as running:
        yield running


def test_the_proxy_the_environment_names_applies_unless_no_proxy_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY for https, HTTP_PROXY for http, NO_PROXY exempts hosts; socks is refused."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("https://acme.vtexcommercestable.com.br") is None
    monkeypatch.setenv("HTTPS_PROXY", "proxy.internal:3128")
    assert proxy_for("https://acme.vtexcommercestable.com.br") == "http://proxy.internal:3128"
    monkeypatch.setenv("NO_PROXY", ".vtexcommercestable.com.br")
    assert proxy_for("https://acme.vtexcommercestable.com.br") is None
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.internal:1080")
    with pytest.raises(ProxyError):
        proxy_for("https://acme.vtexcommercestable.com.br")


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_requests_go_through_the_proxy_with_either_transport(
    proxy: ForwardProxy, sandbox_server: ServerThread, sqlite_url: str, transport: str
) -> None:
    """`check` with HTTP_PROXY set: its Get order reaches the sandbox through the proxy."""
    config = sandbox_server.sandbox.oms.config
    env = {
        "ORCHESTRATOR_DATABASE_URL": sqlite_url,
        "VTEX_BASE_URL": sandbox_server.url,
        "VTEX_APP_KEY": config.app_key,
        "VTEX_APP_TOKEN": config.app_token,
        "VTEX_HTTP_TRANSPORT": transport,
        "HTTP_PROXY": proxy.url,
        "NO_PROXY": "",
        "no_proxy": "",
    }
    runner = CliRunner(env=env)
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    # The credentials' harmless read, then one harmless call per License Manager resource, then
    # the Orders Feed's configuration (`status_source = auto` reads it when the key may).
    orders = f"{sandbox_server.url}/api/oms/pvt/orders/orchestrator-check-0"
    fulfill = f"{sandbox_server.url}/api/fulfillment/pvt/orders/CHK-orchestrator-check-0/fulfill"
    assert proxy.seen == [
        f"GET {orders}",
        f"POST {fulfill}?affiliateId=CHK",
        f"GET {orders}",
        f"POST {orders}/start-handling",
        f"POST {orders}/invoice",
        f"POST {orders}/cancel",
        f"GET {sandbox_server.url}/api/orders/feed/config",
    ]
