"""The API server's HTTP protocol (`orchestrator.ops.bounded_http`) over a real socket, with limits
small enough to reach: late headers, oversized headers, a late body, a full server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from orchestrator.ops.bounded_http import BACKLOG, Limits, bounded_protocol
from orchestrator.ops.serving import bind, server_for, url_of

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
def served(app: App) -> Iterator[tuple[str, int]]:
    sock = bind("127.0.0.1", 0, backlog=BACKLOG)
    server = server_for(app, backlog=BACKLOG, http=bounded_protocol(LIMITS))
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
    with served(App()) as (_url, port):
        started = time.monotonic()
        client = connect(port, b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        answer = read_all(client)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert 0.25 < time.monotonic() - started < 3


def test_oversized_headers_get_431() -> None:
    with served(App()) as (_url, port):
        client = connect(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4096)
        assert read_all(client).startswith(b"HTTP/1.1 431 ")


def test_a_body_that_arrives_late_is_cut_off_and_the_application_told() -> None:
    app = App()
    with served(app) as (_url, port):
        client = connect(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        assert read_all(client) == b""  # closed; no answer is sent for a request never whole
        deadline = time.monotonic() + 3
        while app.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app.disconnects == 1


def test_keep_alive_requests_and_bodies_go_through() -> None:
    with served(App()) as (url, _port), httpx.Client(base_url=url) as http:
        for size in (0, 10, 100_000):
            assert http.post("/", content=b"x" * size).text == str(size)


def test_a_full_server_makes_room_by_closing_the_connection_idle_longest() -> None:
    with served(App()) as (url, port):
        idle = [connect(port) for _ in range(3)]  # connected, no request yet: the limit is reached
        time.sleep(0.05)
        assert httpx.get(f"{url}/", timeout=2).status_code == 200  # the oldest idle one made room
        assert read_all(idle[0]) == b""


def test_a_server_whose_every_connection_is_busy_answers_503() -> None:
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
    """A limit the process could not hold is lowered: room for its own descriptors and two batches."""
    assert Limits().within_descriptors(20_000).max_connections == 256
    assert Limits().within_descriptors(1024).max_connections == 256
    assert Limits().within_descriptors(300).max_connections == 300 - 128 - 2 * BACKLOG
    assert Limits().within_descriptors(100).max_connections == 8
