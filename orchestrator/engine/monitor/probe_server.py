"""A small, bounded HTTP server for the daemon's `/metrics`, `/healthz` and `/readyz`.

It runs on its own thread, so nothing a client does can slow the daemon's steps, and it is bounded
so that nothing a client does can take the daemon's file descriptors:

- at most `max_connections` connections at a time: the limit is enforced at the moment of accept,
  and when one more arrives, the connection that has waited longest is closed there and then (a
  prober's request arrives in a millisecond, so under a flood of slow clients probes are answered);
- a request must arrive whole, and its answer leave, within `request_timeout` seconds;
- requests larger than `max_request_bytes` are refused;
- one request per connection (`Connection: close`), so idle keep-alive connections never pile up.

It is a plain `selectors` loop rather than asyncio on purpose. With asyncio's streams a connection
reaches our code several loop passes after the kernel handed it over, and a dropped one is closed a
pass later still, so under a burst the descriptors held peaked near three times the limit (93 seen
for a limit of 32). Here accept, limit and close happen in one synchronous call: the server never
holds more than `max_connections` accepted sockets. A general-purpose server (uvicorn) had no limit
at all: 1,100 half-sent requests used every descriptor of the daemon and its VTEX calls failed.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

Handler = Callable[[str], "Answer"]  # the request's path (without the query) -> the answer
BACKLOG = 16  # the kernel's queue of connections not yet accepted


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


@dataclass
class _Client:
    sock: socket.socket
    deadline: float
    conn: h11.Connection
    received: int = 0
    request: h11.Request | None = None
    outgoing: bytes = field(default=b"")


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
        self._clients: OrderedDict[int, _Client] = OrderedDict()  # by descriptor, oldest first
        self.dropped = 0  # connections closed to make room for a newer one
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="probe-server", daemon=True)

    def start(self) -> None:
        self._sock.setblocking(False)
        self._selector.register(self._sock, selectors.EVENT_READ)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        self._thread.join(timeout=10)
        for client in list(self._clients.values()):
            self._close(client)
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()

    def _run(self) -> None:
        while not self._stopping:
            timeout = 1.0
            if self._clients:
                oldest = min(client.deadline for client in self._clients.values())
                timeout = max(0.0, min(timeout, oldest - time.monotonic()))
            for key, events in self._selector.select(timeout):
                if key.fileobj is self._sock:
                    self._accept()
                elif key.fileobj is self._wake_read:
                    with contextlib.suppress(OSError):
                        self._wake_read.recv(64)
                elif isinstance(key.data, _Client) and key.data.sock.fileno() in self._clients:
                    self._serve(key.data, events)
            now = time.monotonic()
            for client in [c for c in self._clients.values() if c.deadline <= now]:
                self._close(client)

    def _accept(self) -> None:
        for _ in range(BACKLOG):  # a bounded batch, so a flood cannot starve the connections held
            try:
                sock, _address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # out of descriptors, or the peer reset before accept: try on the next pass
            while len(self._clients) >= self._max_connections:
                _fd, oldest = next(iter(self._clients.items()))
                self._close(oldest)
                self.dropped += 1
            sock.setblocking(False)
            client = _Client(
                sock,
                time.monotonic() + self._request_timeout,
                h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_request_bytes),
            )
            self._clients[sock.fileno()] = client
            self._selector.register(sock, selectors.EVENT_READ, client)

    def _serve(self, client: _Client, events: int) -> None:
        try:
            if events & selectors.EVENT_READ and not client.outgoing:
                self._receive(client)
            elif events & selectors.EVENT_WRITE:
                self._send(client)
        except (OSError, h11.ProtocolError):
            self._close(client)  # a client that went away or spoke nonsense gets nothing more

    def _receive(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        client.received += len(data)
        if client.received > self._max_request_bytes or not data:
            self._close(client)  # a probe is a short GET; anything larger, or a hang-up, ends here
            return
        client.conn.receive_data(data)
        while True:
            event = client.conn.next_event()
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Request):
                client.request = event
            elif isinstance(event, h11.EndOfMessage) and client.request is not None:
                client.outgoing = self._answer(client.conn, client.request)
                self._selector.modify(client.sock, selectors.EVENT_WRITE, client)
                self._send(client)
                return
            elif isinstance(event, h11.ConnectionClosed):
                self._close(client)
                return

    def _answer(self, conn: h11.Connection, request: h11.Request) -> bytes:
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
        return data + (conn.send(h11.EndOfMessage()) or b"")

    def _send(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outgoing)
        except (BlockingIOError, InterruptedError):
            return
        client.outgoing = client.outgoing[sent:]
        if not client.outgoing:
            self._close(client)

    def _close(self, client: _Client) -> None:
        """Forget and close at once: the selector lets go of the descriptor before it is freed, so a
        number the kernel hands out again can never be mistaken for the old connection."""
        fd = client.sock.fileno()
        if fd >= 0 and self._clients.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(client.sock)
        client.sock.close()
