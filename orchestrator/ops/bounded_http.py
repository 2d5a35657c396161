"""uvicorn's HTTP protocol with the bounds a server facing other systems needs (`orchestrator serve`).

uvicorn on its own holds a connection for as long as its client likes: a request's headers may
arrive one byte at a time, for ever, and every connection is accepted. 1,100 half-sent requests
took every descriptor of `serve` (under `ulimit -n 1024`): its `/healthz` went silent, it could no
longer open its database, and asyncio logged a traceback for each refused accept. Here:

- at most `max_connections` connections are held. When one more arrives, the connection that has
  waited longest for a request is closed to make room (a real client's request arrives in
  milliseconds, so slow or idle clients go first); if every connection is busy with a request, the
  new one is answered 503 and closed;
- a request's headers must arrive within `header_seconds` of the connection (or of the previous
  answer, after the keep-alive idle time), and be at most `max_header_bytes`; its body must arrive
  within `body_seconds` of its headers;
- what the application takes to answer is not limited here.

The limit is a count of connections, chosen below the process's descriptor limit with room to spare:
asyncio accepts up to `BACKLOG` connections in one batch and hands them to the protocol a loop pass
later, and a connection closed to make room frees its descriptor a pass after that, so for a moment
the limit plus twice the batch can be open (the daemon's probe server, a `selectors` loop, has no
such slack).
"""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
DESCRIPTOR_RESERVE = 128  # the database, logs, VTEX calls of operations and asyncio's own
BACKLOG = 64  # connections asyncio accepts in one batch, before the limit above can act on them


@dataclass(frozen=True)
class Limits:
    max_connections: int = 256
    header_seconds: float = 10.0
    body_seconds: float = 60.0
    max_header_bytes: int = 64 * 1024

    def within_descriptors(self, soft: int | None = None) -> Limits:
        """The same limits, with no more connections than the descriptor limit (`soft`, this
        process's by default) holds beside the process's own descriptors and two accept batches
        (see the module's docstring)."""
        if soft is None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            return self
        room = max(8, soft - DESCRIPTOR_RESERVE - 2 * BACKLOG)
        return dataclasses.replace(self, max_connections=min(self.max_connections, room))


# Connections waiting for a request, oldest first, per server (uvicorn's state object of that server).
_waiting: weakref.WeakKeyDictionary[Any, OrderedDict[BoundedHttp, None]] = weakref.WeakKeyDictionary()


class BoundedHttp(HttpToolsProtocol):
    limits: ClassVar[Limits] = Limits()

    _refused = False
    _deadline: asyncio.TimerHandle | None = None
    _header_bytes = 0

    # -- the life of a connection --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections and not self._make_room():
            self._refused = True
            transport.write(BUSY)
            transport.close()
            return
        super().connection_made(transport)
        self._wait_for_request(self.limits.header_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._stop_waiting()
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        waiting = self._is_waiting()
        super().data_received(data)
        if waiting and self._is_waiting():  # the headers are still not whole after this chunk
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._close_with(TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._stop_waiting()
        self._arm(self.limits.body_seconds)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # uvicorn closes a keep-alive connection idle for timeout_keep_alive; one that starts a
            # request in that time has header_seconds more to finish its headers.
            self._wait_for_request(self.timeout_keep_alive + self.limits.header_seconds)

    # -- bookkeeping -------------------------------------------------------------------------------

    def _queue(self) -> OrderedDict[BoundedHttp, None]:
        return _waiting.setdefault(self.server_state, OrderedDict())

    def _is_waiting(self) -> bool:
        return self in self._queue()

    def _wait_for_request(self, seconds: float) -> None:
        self._header_bytes = 0
        self._queue()[self] = None
        self._arm(seconds)

    def _stop_waiting(self) -> None:
        self._queue().pop(self, None)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request; False if none waits."""
        queue = self._queue()
        if not queue:
            return False
        oldest, _ = queue.popitem(last=False)
        oldest._close_with(b"")
        return True

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

    def _close_with(self, answer: bytes) -> None:
        self._stop_waiting()
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            if answer:
                self.transport.write(answer)
            self.transport.close()


def bounded_protocol(limits: Limits) -> type[BoundedHttp]:
    """The protocol class for uvicorn's `http` setting, bound to these limits."""
    return type("BoundedHttp", (BoundedHttp,), {"limits": limits})
