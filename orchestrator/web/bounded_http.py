"""uvicorn's HTTP protocol with the bounds a server facing other systems needs (`orchestrator serve`).

uvicorn on its own holds a connection for as long as its client likes: a request's headers may
arrive one byte at a time, for ever, and every connection is accepted. 1,100 half-sent requests
took every descriptor of `serve` (under `ulimit -n 1024`); 400 form bodies sent a byte every two
seconds made every route answer 503, `/healthz` included, for as long as they dripped. Here:

- at most `max_connections` connections are held. When one more arrives, room is made: first by
  closing the connection that has waited longest for a request (a real client's request arrives
  in milliseconds, so slow or idle clients go first), else the one sending its body slowest;
- a request's headers must arrive within `header_seconds` of the connection (or of the previous
  answer, after the keep-alive idle time), and be at most `max_header_bytes`;
- its body must arrive within `body_seconds` of its headers and, after `body_grace`, at no less
  than `min_body_rate` bytes a second on average: a body dripping a byte at a time is cut within
  seconds, not a minute. The login form (`quick_paths`) gets a small, fast limit of its own:
  `quick_body_bytes` within `quick_body_seconds`;
- when no room can be made, a few more connections (`reserved`) are still taken, for the health
  probes only: `/healthz` and `/readyz` are answered whatever else holds the server, any other
  request on such a connection gets 503, and the connection is closed after one answer;
- what the application takes to answer is not limited here.

The limit is a count of connections, chosen below the process's descriptor limit with room to spare:
asyncio accepts up to `BACKLOG` connections in one batch and hands them to the protocol a loop pass
later, and a connection closed to make room frees its descriptor a pass after that, so for a moment
the limit plus the reserve plus twice the batch can be open (the daemon's probe server, a
`selectors` loop, has no such slack).
"""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
BODY_TOO_LARGE = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
DESCRIPTOR_RESERVE = 128  # the database, logs, VTEX calls of operations and asyncio's own
BACKLOG = 64  # connections asyncio accepts in one batch, before the limit above can act on them
RATE_CHECK_SECONDS = 1.0  # how often a body's pace is looked at


@dataclass(frozen=True)
class Limits:
    max_connections: int = 256
    header_seconds: float = 10.0
    body_seconds: float = 60.0
    max_header_bytes: int = 64 * 1024
    body_grace: float = 5.0
    min_body_rate: float = 1024.0  # bytes a second, on average, once the grace is over
    quick_paths: frozenset[str] = frozenset({"/login"})
    quick_body_bytes: int = 8 * 1024
    quick_body_seconds: float = 5.0
    reserved: int = 8  # connections beyond the limit, for the health probes only
    reserved_header_seconds: float = 2.0
    health_paths: frozenset[str] = frozenset({"/healthz", "/readyz"})

    def within_descriptors(self, soft: int | None = None) -> Limits:
        """The same limits, with no more connections than the descriptor limit (`soft`, this
        process's by default) holds beside the process's own descriptors and two accept batches
        (see the module's docstring)."""
        if soft is None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            return self
        room = max(8, soft - DESCRIPTOR_RESERVE - 2 * BACKLOG - self.reserved)
        return dataclasses.replace(self, max_connections=min(self.max_connections, room))


# Connections waiting for a request, oldest first, per server (uvicorn's state object of that server).
_waiting: weakref.WeakKeyDictionary[Any, OrderedDict[BoundedHttp, None]] = weakref.WeakKeyDictionary()
# Connections whose request body is still coming, per server.
_receiving: weakref.WeakKeyDictionary[Any, set[BoundedHttp]] = weakref.WeakKeyDictionary()


class BoundedHttp(HttpToolsProtocol):
    limits: ClassVar[Limits] = Limits()

    _refused = False
    _reserved = False  # taken beyond the limit: health probes only, one answer
    _discarding = False  # answered by the bounds themselves: the rest of the request is ignored
    _deadline: asyncio.TimerHandle | None = None
    _pace: asyncio.TimerHandle | None = None
    _header_bytes = 0
    _body_started = 0.0
    _body_bytes = 0

    # -- the life of a connection --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limits = self.limits
        if len(self.connections) >= limits.max_connections and not self._make_room():
            if len(self.connections) >= limits.max_connections + limits.reserved:
                self._refused = True
                transport.write(BUSY)
                transport.close()
                return
            self._reserved = True
        super().connection_made(transport)
        self._wait_for_request(limits.reserved_header_seconds if self._reserved else limits.header_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._stop_waiting()
        self._stop_receiving()
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        waiting = self._is_waiting()
        super().data_received(data)
        if waiting and self._is_waiting():  # the headers are still not whole after this chunk
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._close_with(TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._stop_waiting()
        path = httptools.parse_url(self.url).path.decode("ascii", "replace")
        limits = self.limits
        if self._reserved and path not in limits.health_paths:
            self._discard(BUSY)  # the server is full: only the health probes get through
            return
        quick = path in limits.quick_paths
        if quick and self._declared_length() > limits.quick_body_bytes:
            self._discard(BODY_TOO_LARGE)
            return
        self._arm(limits.quick_body_seconds if quick else limits.body_seconds)
        self._start_receiving()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._discarding:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.quick_body_bytes and self._is_quick():
            self._close_with(b"")
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._discarding:
            return
        self._disarm()
        self._stop_receiving()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._reserved:
            self._close_with(b"")  # the reserve holds one probe at a time, not a keep-alive
            return
        if not self.transport.is_closing():
            # uvicorn closes a keep-alive connection idle for timeout_keep_alive; one that starts a
            # request in that time has header_seconds more to finish its headers.
            self._wait_for_request(self.timeout_keep_alive + self.limits.header_seconds)

    # -- bookkeeping -------------------------------------------------------------------------------

    def _queue(self) -> OrderedDict[BoundedHttp, None]:
        return _waiting.setdefault(self.server_state, OrderedDict())

    def _receivers(self) -> set[BoundedHttp]:
        return _receiving.setdefault(self.server_state, set())

    def _is_waiting(self) -> bool:
        return self in self._queue()

    def _is_quick(self) -> bool:
        return self.scope.get("path") in self.limits.quick_paths

    def _declared_length(self) -> int:
        for name, value in self.headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    def _wait_for_request(self, seconds: float) -> None:
        self._header_bytes = 0
        self._queue()[self] = None
        self._arm(seconds)

    def _stop_waiting(self) -> None:
        self._queue().pop(self, None)

    def _start_receiving(self) -> None:
        self._body_started = self.loop.time()
        self._body_bytes = 0
        self._receivers().add(self)
        self._pace = self.loop.call_later(RATE_CHECK_SECONDS, self._check_pace)

    def _stop_receiving(self) -> None:
        self._receivers().discard(self)
        if self._pace is not None:
            self._pace.cancel()
            self._pace = None

    def _rate(self) -> float:
        """Bytes a second this connection's body has come at so far."""
        return self._body_bytes / max(self.loop.time() - self._body_started, 0.5)

    def _check_pace(self) -> None:
        self._pace = None
        elapsed = self.loop.time() - self._body_started
        if elapsed >= self.limits.body_grace and self._rate() < self.limits.min_body_rate:
            self._close_with(b"")  # the application is reading the body: it sees a disconnect
            return
        self._pace = self.loop.call_later(RATE_CHECK_SECONDS, self._check_pace)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request, else the one whose body
        comes slowest; False if every connection is busy being answered."""
        queue = self._queue()
        if queue:
            oldest, _ = queue.popitem(last=False)
            oldest._close_with(b"")
            return True
        receivers = self._receivers()
        if receivers:
            slowest = min(receivers, key=lambda c: c._rate())
            slowest._close_with(b"")
            return True
        return False

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        # Waiting for headers: nothing is being answered, so the client may be told why. Waiting for
        # a body: the application is reading it, and the close reaches it as a disconnect.
        self._close_with(TOO_SLOW if self._is_waiting() else b"")

    def _discard(self, answer: bytes) -> None:
        """Answer the request here (the application never sees it) and close."""
        self._discarding = True
        self._close_with(answer)

    def _close_with(self, answer: bytes) -> None:
        self._stop_waiting()
        self._stop_receiving()
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            if answer:
                self.transport.write(answer)
            self.transport.close()


def bounded_protocol(limits: Limits) -> type[BoundedHttp]:
    """The protocol class for uvicorn's `http` setting, bound to these limits."""
    return type("BoundedHttp", (BoundedHttp,), {"limits": limits})
