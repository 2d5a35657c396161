"""httpcore2's connection pool under httpx 0.28, for the transport benchmark only.

httpx talks to httpcore 1 by itself; httpcore2 is a separate package with the same model, so
measuring it needs this small adapter: an httpx request handed to httpcore2's pool, its response
streamed back, and its errors raised as the httpx errors of the same name (the client sorts
"never sent" from "may have arrived" by those names' classes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpcore2
import httpx


def _httpx_error(exc: Exception) -> type[httpx.TransportError] | None:
    """The httpx error named like the most specific httpcore2 class `exc` is an instance of."""
    for cls in type(exc).__mro__:
        if cls.__module__.startswith("httpcore2"):
            found = getattr(httpx, cls.__name__, None)
            if isinstance(found, type) and issubclass(found, httpx.TransportError):
                return found
    return None


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        mapped = _httpx_error(exc)
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: object) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:  # type: ignore[attr-defined]
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _as_httpx_errors():
                await close()


class Httpcore2Transport(httpx.AsyncBaseTransport):
    def __init__(self, max_connections: int) -> None:
        self._pool = httpcore2.AsyncConnectionPool(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            answer = await self._pool.handle_async_request(core)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer.stream),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
