"""A small, bounded HTTP server for the daemon's `/metrics`, `/healthz` and `/readyz`.

It runs on its own thread with its own event loop, so nothing a client does can slow the daemon's
steps, and it is bounded so that nothing a client does can take the daemon's file descriptors:

- at most `max_connections` connections at a time; when one more arrives, the connection that has
  waited longest for its request is dropped (a prober's request arrives in a millisecond, so under
  a flood of slow clients the probes are still answered);
- a request must arrive whole (it is a short GET) within `request_timeout` seconds;
- requests larger than `max_request_bytes` are refused;
- one request per connection (`Connection: close`), so idle keep-alive connections never pile up.

A general-purpose server (uvicorn) had none of these limits by default: a client holding 1,100
half-sent requests used every descriptor of the daemon, and its claims and VTEX calls failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import h11

Handler = Callable[[str], "Answer"]
# asyncio accepts up to this many connections at once before any of them runs, so during a burst of
# new connections the server's descriptors peak at `max_connections` + BACKLOG, plus the connections
# that burst displaced (aborted, closed on the loop's next pass): + 2 * BACKLOG at most.
BACKLOG = 16  # the request's path (without the query) -> the answer


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


class ProbeServer:
    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        *,
        max_connections: int = 32,
        request_timeout: float = 5.0,
        max_request_bytes: int = 8192,
    ) -> None:
        self._sock = sock
        self._handler = handler
        self._max_connections = max_connections
        self._request_timeout = request_timeout
        self._max_request_bytes = max_request_bytes
        self._waiting: OrderedDict[int, asyncio.StreamWriter] = OrderedDict()  # oldest first
        self.dropped = 0  # connections dropped to make room for a newer one
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-server", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._client, sock=self._sock, backlog=BACKLOG)
        self._started.set()
        async with server:
            await self._stop.wait()
            server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while len(self._waiting) >= self._max_connections:
            _key, oldest = self._waiting.popitem(last=False)
            oldest.transport.abort()
            self.dropped += 1
        key = id(writer)
        self._waiting[key] = writer
        try:
            await self._exchange(reader, writer)
        except (OSError, h11.ProtocolError, TimeoutError):
            pass  # a client that went away, spoke nonsense or was dropped gets nothing more
        finally:
            self._waiting.pop(key, None)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_request_bytes)
        async with asyncio.timeout(self._request_timeout):
            request = await _read_request(reader, conn, self._max_request_bytes)
            if request is None:
                return
            path = request.target.decode("ascii", "replace").split("?", 1)[0]
            if request.method not in (b"GET", b"HEAD"):
                answer = Answer(405, "text/plain; charset=utf-8", b"only GET\n")
            else:
                answer = self._handler(path)
            headers = [
                ("content-type", answer.content_type),
                ("content-length", str(len(answer.body))),
                ("connection", "close"),
            ]
            data = conn.send(h11.Response(status_code=answer.status, headers=headers)) or b""
            if request.method != b"HEAD":
                data += conn.send(h11.Data(data=answer.body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            writer.write(data)
            await writer.drain()


async def _read_request(reader: asyncio.StreamReader, conn: h11.Connection, limit: int) -> h11.Request | None:
    request: h11.Request | None = None
    received = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(4096)
            received += len(data)
            if received > limit:
                return None  # a probe is a short GET; anything larger is not one
            conn.receive_data(data)
            if not data and request is None:
                return None
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed):
            return None
