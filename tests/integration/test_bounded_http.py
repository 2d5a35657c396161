"""The API server's HTTP protocol (`orchestrator.web.bounded_http`) over a real socket, with limits
small enough to reach: late headers, oversized headers, a late body, a full server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx

from orchestrator.serving import bind, server_for, url_of
from orchestrator.web.bounded_http import BACKLOG, Limits, bounded_protocol

LIMITS = Limits(max_connections=3, header_seconds=0.3, body_seconds=0.3, max_header_bytes=2048)


class App:
    """`/slow` answers when the test says so; every other path answers at once with its body's size."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.disconnects = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnects += 1
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/slow":
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        answer = str(len(body)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(answer))],
            }
        )
        await send({"type": "http.response.body", "body": answer})


@contextmanager
def served(app: App, limits: Limits = LIMITS) -> Iterator[tuple[str, int]]:
    sock = bind("127.0.0.1", 0, backlog=BACKLOG)
    server = server_for(app, backlog=BACKLOG, http=bounded_protocol(limits))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield url_of(sock), sock.getsockname()[1]
    finally:
        app.release.set()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def connect(port: int, data: bytes = b"") -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    if data:
        client.sendall(data)
    return client


def read_all(client: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := client.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_headers_that_arrive_late_get_408_and_the_connection_closed() -> None:
    """A request whose headers never end is answered 408 after the header timeout, and closed."""
    with served(App()) as (_url, port):
        started = time.monotonic()
        client = connect(port, b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        answer = read_all(client)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 0.25 < time.monotonic() - started < 3


def test_oversized_headers_get_431() -> None:
    """Headers beyond the limit are answered 431."""
    with served(App()) as (_url, port):
        client = connect(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4096)
        assert read_all(client).startswith(b"HTTP/1.1 431 ")


def test_a_body_that_arrives_late_is_cut_off_and_the_application_told() -> None:
    """A body that stops arriving is cut off at the body timeout, and the application sees the disconnect."""
    app = App()
    with served(app) as (_url, port):
        client = connect(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        assert read_all(client) == b""  # closed; no answer is sent for a request never whole
        deadline = time.monotonic() + 3
        while app.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.disconnects == 1


def test_keep_alive_requests_and_bodies_go_through() -> None:
    """Ordinary keep-alive requests with bodies up to 100 KB are served."""
    with served(App()) as (url, _port), httpx.Client(base_url=url) as http:
        for size in (0, 10, 100_000):
            assert http.post("/", content=b"x" * size).text == str(size)


def test_a_full_server_makes_room_by_closing_the_connection_idle_longest() -> None:
    """At the connection limit, a new connection is served by closing the one idle longest. (The
    header deadline is long here: on a loaded machine the new request could otherwise outlast it,
    and the idle connection get its 408 before being closed for room.)"""
    with served(App(), replace(LIMITS, header_seconds=5)) as (url, port):
        idle = [connect(port) for _ in range(3)]  # connected, no request yet: the limit is reached
        time.sleep(0.05)
        assert httpx.get(f"{url}/", timeout=2).status_code == 200  # the oldest idle one made room
        assert read_all(idle[0]) == b""


def test_a_server_whose_every_connection_is_busy_answers_503() -> None:
    """At the connection limit with every connection busy answering, a new one gets 503 with Retry-After."""
    app = App()
    with served(app) as (url, port):
        busy = [connect(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(3)]
        time.sleep(0.1)
        refused = httpx.get(f"{url}/", timeout=2)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        app.release.set()
        for client in busy:
            assert client.recv(4096).startswith(b"HTTP/1.1 200 ")


def test_the_connection_limit_fits_the_descriptor_limit() -> None:
    """A limit the process could not hold is lowered: room for its own descriptors, two batches and
    the health probes' reserve."""
    assert Limits().within_descriptors(20_000).max_connections == 256
    assert Limits().within_descriptors(1024).max_connections == 256
    assert Limits().within_descriptors(300).max_connections == 300 - 128 - 2 * BACKLOG - Limits().reserved
    assert Limits().within_descriptors(100).max_connections == 8


# Bodies get seconds here, so that what cuts a dripping one is its pace, not the deadline.
PACED = Limits(
    max_connections=3,
    header_seconds=2,
    body_seconds=30,
    body_grace=0.3,
    min_body_rate=200,
    quick_body_bytes=64,
    quick_body_seconds=0.5,
    reserved=2,
)


def drip(client: socket.socket, stop: threading.Event, interval: float = 0.1) -> None:
    """Send a byte every `interval` until told to stop or the server closes."""
    while not stop.wait(interval):
        try:
            client.sendall(b"x")
        except OSError:
            return


def test_a_body_dripping_below_the_minimum_pace_is_cut_after_the_grace() -> None:
    """10 bytes a second against a 200 bytes/s minimum: closed within about a second, long before
    the 30 s body deadline; the application sees the disconnect."""
    app = App()
    stop = threading.Event()
    with served(app, PACED) as (_url, port):
        client = connect(port, b"POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        threading.Thread(target=drip, args=(client, stop), daemon=True).start()
        started = time.monotonic()
        assert read_all(client) == b""
        assert time.monotonic() - started < 2.5
        stop.set()
        deadline = time.monotonic() + 3
        while app.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.disconnects == 1


def test_the_login_form_has_a_small_fast_limit_of_its_own() -> None:
    """A login body over its small size is refused (413) before the application sees it; one
    that is not whole within its short time is cut; a normal one goes through."""
    app = App()
    with served(app, PACED) as (url, port):
        large = connect(port, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        assert read_all(large).startswith(b"HTTP/1.1 413 ")
        slow = connect(port, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\ntoken=")
        started = time.monotonic()
        assert read_all(slow) == b""
        assert time.monotonic() - started < 1.5
        assert httpx.post(f"{url}/login", content=b"token=abc", timeout=2).text == "9"


def test_a_full_server_makes_room_by_closing_the_slowest_body() -> None:
    """Every connection sends a body, one of them slowest: a new request gets in, and it is the
    slowest that was closed."""
    stop = threading.Event()
    with served(App(), PACED) as (url, port):
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        slowest = connect(port, head)
        faster = [connect(port, head + b"x" * 2000) for _ in range(2)]
        for client in faster:
            threading.Thread(target=drip, args=(client, stop, 0.01), daemon=True).start()
        time.sleep(0.2)
        assert httpx.get(f"{url}/", timeout=2).status_code == 200
        assert read_all(slowest) == b""
        stop.set()
        for client in faster:
            client.close()


def test_health_probes_are_answered_when_every_connection_is_busy() -> None:
    """Every connection is being answered (slowly): /healthz and /readyz still get through on the
    reserve, one answer per connection; any other request there is told 503."""
    app = App()
    with served(app, PACED) as (url, port):
        busy = [connect(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(3)]
        time.sleep(0.1)
        for _ in range(5):
            assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            assert httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        refused = httpx.get(f"{url}/api/status", timeout=2)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        app.release.set()
        for client in busy:
            assert client.recv(4096).startswith(b"HTTP/1.1 200 ")
