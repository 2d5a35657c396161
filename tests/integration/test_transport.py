"""The HTTP transport under the VTEX client (aiohttp's, through httpx-aiohttp): keep-alive, what
servers do to connections, and which httpx error each failure becomes. That last part carries the
engine's promise: "never sent" only when the request cannot have left."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from orchestrator.vtex.client import VtexClient
from orchestrator.vtex.errors import AmbiguousError, RetryableError
from orchestrator.vtex.transport import VtexTransport

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A TCP server whose every byte the test controls; yields its URL and a connection counter."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", connections


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + (await reader.readexactly(length) if length else b"")


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            await read_request(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(ok())
        await writer.drain()


async def test_requests_reuse_one_kept_alive_connection() -> None:
    """Sequential requests travel on one connection."""
    async with (
        raw_server(keep_alive) as (url, connections),
        httpx.AsyncClient(transport=VtexTransport()) as client,
    ):
        for _ in range(5):
            assert (await client.post(f"{url}/x", json={"a": 1})).json() == {"ok": True}
    assert len(connections) == 1


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    """After `connection: close`, the next request opens a fresh connection and succeeds."""

    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(extra=b"connection: close\r\n"))
        await writer.drain()

    async with (
        raw_server(one_then_close) as (url, connections),
        httpx.AsyncClient(transport=VtexTransport()) as client,
    ):
        for _ in range(3):
            assert (await client.get(f"{url}/x")).status_code == 200
    assert len(connections) == 3


async def test_chunked_and_gzipped_answers_are_decoded() -> None:
    """VTEX may answer chunked and compressed; the body comes out as JSON."""
    payload = gzip.compress(b'{"status":"handling"}')

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        half = len(payload) // 2
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (half, payload[:half])
            + b"%x\r\n%s\r\n" % (len(payload) - half, payload[half:])
            + b"0\r\n\r\n"
        )
        await writer.drain()

    async with raw_server(chunked) as (url, _), httpx.AsyncClient(transport=VtexTransport()) as client:
        assert (await client.get(f"{url}/x")).json() == {"status": "handling"}


async def test_an_answer_cut_short_is_a_remote_protocol_error() -> None:
    """The server accepts the request and closes mid-answer: httpx.RemoteProtocolError."""

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 64\r\n\r\n{")
        await writer.drain()

    async with raw_server(drop) as (url, _), httpx.AsyncClient(transport=VtexTransport()) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"{url}/x", json={})


async def test_a_slow_answer_is_a_read_timeout() -> None:
    """No answer within the read timeout: httpx.ReadTimeout (the call may have been applied)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with (
        raw_server(silent) as (url, _),
        httpx.AsyncClient(transport=VtexTransport(), timeout=0.2) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{url}/x")


async def test_a_refused_connection_is_a_connect_error() -> None:
    """Nothing listening: httpx.ConnectError (the request never left)."""
    async with raw_server(keep_alive) as (url, _):
        closed_url = url
    async with httpx.AsyncClient(transport=VtexTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{closed_url}/x")


async def test_concurrency_above_the_pool_waits_and_the_pool_timeout_is_honoured() -> None:
    """More concurrent requests than connections queue for one; past the pool timeout they fail as
    never sent (aiohttp does not tell waiting for the pool from connecting: both are before sending)."""

    async def slowish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            await asyncio.sleep(0.05)
            writer.write(ok())
            await writer.drain()

    async with raw_server(slowish) as (url, connections):
        async with httpx.AsyncClient(transport=VtexTransport(max_connections=2)) as client:
            answers = await asyncio.gather(*(client.get(f"{url}/x") for _ in range(8)))
            assert [a.status_code for a in answers] == [200] * 8
            assert len(connections) == 2
        async with httpx.AsyncClient(
            transport=VtexTransport(max_connections=1), timeout=httpx.Timeout(5, pool=0.01)
        ) as client:
            results = await asyncio.gather(
                *(client.get(f"{url}/x") for _ in range(3)), return_exceptions=True
            )
            failed = [r for r in results if isinstance(r, Exception)]
            assert failed and all(isinstance(r, (httpx.PoolTimeout, httpx.ConnectTimeout)) for r in failed)


async def test_an_idle_connection_the_server_closed_is_not_used_for_the_next_write() -> None:
    """A load balancer closes idle keep-alive connections without a word. The next write must go
    out on a fresh connection, not fail on the dead one (which would make its outcome unknown)."""

    async def answer_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok())
        await writer.drain()
        await asyncio.sleep(0.05)  # then close, as an idle timeout would

    async with (
        raw_server(answer_then_hang_up) as (url, connections),
        httpx.AsyncClient(transport=VtexTransport()) as client,
    ):
        for _ in range(3):
            assert (await client.post(f"{url}/x", json={})).status_code == 200
            await asyncio.sleep(0.2)
    assert len(connections) == 3


def _client(url: str) -> VtexClient:
    return VtexClient(url, app_key="vtexappkey-test-ABCDEF", app_token="token", timeout=2)


async def test_a_write_whose_connection_closes_unanswered_has_an_unknown_outcome() -> None:
    """VTEX read the whole request, then the connection closed: it may have applied it. The client
    must say so (look before sending again), never "not sent". httpx-aiohttp alone reports every
    aiohttp connection error as a ConnectTimeout, which would read as "never left"."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with raw_server(swallow) as (url, _):
        client = _client(url)
        try:
            with pytest.raises(AmbiguousError):
                await client.authorize_dispatch("ABC-1", "1")
        finally:
            await client.aclose()


async def test_a_write_that_could_not_connect_was_not_sent() -> None:
    """A write whose connection could not be made was never sent: a retryable error, not an unknown outcome.
    A write whose connection could not be made was never sent: a retryable error, not an unknown outcome."""
    async with raw_server(keep_alive) as (url, _):
        closed_url = url
    client = _client(closed_url)
    try:
        with pytest.raises(RetryableError) as caught:
            await client.authorize_dispatch("ABC-1", "1")
        assert not isinstance(caught.value, AmbiguousError)
    finally:
        await client.aclose()
