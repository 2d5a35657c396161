"""A lean HTTP/1.1 keep-alive transport for httpx, on asyncio streams and h11.

httpx stays the client (requests, responses, timeouts, errors); this replaces only the transport
layer. httpcore's connection pool scans every pooled connection, asking each socket for its
attributes, whenever a request is sent or a response released, so its cost per request grows with
the number of connections: at 64 concurrent calls it spent most of the daemon's CPU. Here idle
connections sit in a stack per origin and a request takes the top one.

Scope, on purpose: HTTP/1.1 only (VTEX and the sandbox speak it), no proxies (the client hands a
proxied account to httpx's own transport), responses read whole (VTEX answers are small JSON) up to
`MAX_BODY_BYTES` (`BodyTooLarge` beyond, so a body without end cannot fill the memory). Transport
failures are raised as httpx's own exceptions, so `orchestrator.vtex.errors` classifies them like any other.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import httpx

Origin = tuple[str, str, int]
READ_SIZE = 65536
MAX_BODY_BYTES = 4 * 1024 * 1024


class BodyTooLarge(Exception):
    """The answer's body went past the limit: no answer of VTEX's is that large."""


class _Connection:
    __slots__ = ("h11", "idle_since", "max_body", "origin", "reader", "writer")

    def __init__(
        self,
        origin: Origin,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.origin = origin
        self.max_body = max_body
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = time.monotonic()

    def usable(self, expiry: float) -> bool:
        """Idle connections the server closed (EOF already seen) or kept too long are not reused."""
        return (
            not self.reader.at_eof()
            and not self.writer.is_closing()
            and time.monotonic() - self.idle_since < expiry
        )

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, request: httpx.Request, timeouts: dict[str, float | None]) -> httpx.Response:
        conn = self.h11
        body = request.content
        target = request.url.raw_path
        headers = list(request.headers.raw)
        data = conn.send(h11.Request(method=request.method, target=target, headers=headers)) or b""
        if body:
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        try:
            async with asyncio.timeout(timeouts.get("write")):
                self.writer.write(data)
                await self.writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout("timed out sending the request", request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from exc

        response: h11.Response | None = None
        chunks: list[bytes] = []
        body_size = 0
        try:
            async with asyncio.timeout(timeouts.get("read")):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await self.reader.read(READ_SIZE)
                        conn.receive_data(data)  # b"" means the server closed the connection
                    elif isinstance(event, h11.Response):
                        response = event
                    elif isinstance(event, h11.Data):
                        chunks.append(bytes(event.data))
                        body_size += len(event.data)
                        if body_size > self.max_body:
                            raise BodyTooLarge(f"more than {self.max_body} bytes")
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.InformationalResponse):
                        continue
                    elif isinstance(event, h11.ConnectionClosed):
                        raise httpx.RemoteProtocolError(
                            "the server closed the connection without sending a complete response",
                            request=request,
                        )
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out waiting for the response", request=request) from exc
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        assert response is not None
        return httpx.Response(
            response.status_code,
            headers=list(response.headers),
            stream=httpx.ByteStream(b"".join(chunks)),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": bytes(response.reason)},
        )

    def finish_cycle(self) -> bool:
        """Ready the connection for the next request; False if it cannot be reused."""
        conn = self.h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self.idle_since = time.monotonic()
            return True
        return False


class LeanTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        max_connections: int = 64,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._limit = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._open: set[_Connection] = set()

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    @asynccontextmanager
    async def _slot(self, request: httpx.Request, timeout: float | None) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(timeout):
                await self._limit.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no free connection in time", request=request) from exc
        try:
            yield
        finally:
            self._limit.release()

    async def _connect(self, origin: Origin, request: httpx.Request, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        kwargs: dict[str, Any] = {}
        if scheme == "https":
            kwargs = {"ssl": self._ssl(), "server_hostname": host}
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE * 4, **kwargs)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}", request=request) from exc
        connection = _Connection(origin, reader, writer)
        self._open.add(connection)
        return connection

    def _checkout(self, origin: Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        while stack:
            connection = stack.pop()  # most recently used first: the one least likely closed
            if connection.usable(self._expiry):
                return connection
            self._discard(connection)
        return None

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin: Origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        if request.stream is not None and not isinstance(request.stream, httpx.ByteStream):
            await request.aread()
        async with self._slot(request, timeouts.get("pool")):
            connection = self._checkout(origin) or await self._connect(
                origin, request, timeouts.get("connect")
            )
            try:
                response = await connection.exchange(request, timeouts)
            except BaseException:
                self._discard(connection)
                raise
            if connection.finish_cycle():
                self._idle.setdefault(origin, []).append(connection)
            else:
                self._discard(connection)
        return response

    async def aclose(self) -> None:
        for connection in list(self._open):
            self._discard(connection)
        self._idle.clear()
