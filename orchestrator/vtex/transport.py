"""The HTTP transport under httpx: aiohttp's connection pool, through httpx-aiohttp.

httpx stays the client's vocabulary (requests, responses, timeouts, errors); only the layer that
holds connections and speaks HTTP/1.1 is aiohttp's. httpx's own pool (httpcore) scans every pooled
connection on each request and response, so at 64 concurrent calls it spent most of the daemon's
CPU. `python -m bench transports` measured the choices (docs/performance.md): aiohttp costs within
a few percent of the hand-written transport this replaced, and is maintained by others.

One thing httpx-aiohttp gets wrong for us, corrected here: it raises `httpx.ConnectTimeout` for
every aiohttp connection error, including a connection that closed after the request had been sent.
The client reads ConnectTimeout as "the request never left", which for a write means "safe to send
again without looking". So each aiohttp error is raised as the httpx error that says what is known:
could not connect (never sent) or the connection failed afterwards (VTEX may have applied it).

Proxies are not handled here: when one applies, the client is given httpx's own transport
(`orchestrator.vtex.proxies`). aiohttp bounds connecting and each read; it has no write timeout,
which VTEX's small request bodies never need.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def _told_apart(exc: httpx.TransportError) -> httpx.TransportError:
    """`exc` as the httpx error its aiohttp cause means (itself when there is nothing to correct)."""
    cause = exc.__cause__
    message = str(exc) or type(cause).__name__
    request = exc._request  # may be unset; httpx errors take it as optional
    error: type[httpx.TransportError]
    if isinstance(cause, aiohttp.ClientConnectorError):
        error = httpx.ConnectError
    elif isinstance(cause, aiohttp.ConnectionTimeoutError):
        error = httpx.ConnectTimeout  # waiting for a free connection or for connect: nothing sent
    elif isinstance(cause, aiohttp.ServerTimeoutError):
        error = httpx.ReadTimeout
    elif isinstance(cause, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        error = httpx.RemoteProtocolError  # closed before, or in the middle of, the answer
    elif isinstance(cause, aiohttp.ClientConnectionError):
        error = httpx.ReadError
    else:
        return exc
    return error(message, request=request)


class _Body(httpx.AsyncByteStream):
    """The response body, its read errors corrected like the request's."""

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except httpx.TransportError as exc:
            raise _told_apart(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self._stream.aclose()


class VtexTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        max_connections: int = 64,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
        )
        self._aiohttp = AiohttpTransport(
            verify=ssl_context if ssl_context is not None else True, trust_env=False, limits=limits
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._aiohttp.handle_async_request(request)
        except httpx.TransportError as exc:
            if exc._request is None:
                exc.request = request
            raise _told_apart(exc) from exc.__cause__
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response

    async def aclose(self) -> None:
        await self._aiohttp.aclose()
