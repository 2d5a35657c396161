"""`orchestrator serve` as operators run it: a real process, a token made by the CLI, an order
pushed over HTTP that a daemon then finishes, SIGTERM for a clean stop, and slow clients that
cannot silence it."""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.sandbox.process import SandboxProcess, client_env
from tests.factories import import_record
from tests.processes import half_sent_requests, open_fds, run_cli


def test_serve_takes_an_order_that_the_daemon_finishes(tmp_path: Path) -> None:
    """`serve` as its own process takes an order over HTTP that a daemon beside it drives to invoiced."""
    sandbox = SandboxProcess("--grace-seconds", "0.3", log=tmp_path / "sandbox.log")
    server = None
    try:
        env = client_env(
            f"sqlite:///{tmp_path / 'o.db'}",
            sandbox.url,
            ORCHESTRATOR_GRACE_PERIOD="0.3s",
            ORCHESTRATOR_TICK="100ms",
            ORCHESTRATOR_LOG_FORMAT="json",
        )

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return run_cli(env, *args)

        token = json.loads(cli("token", "create", "--name", "pos", "--role", "intake", "--json").stdout)[
            "token"
        ]
        command = [sys.executable, "-m", "orchestrator", "serve", "--port", "0"]
        server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        assert server.stderr is not None
        url = None
        for line in server.stderr:
            if '"API served"' in line:
                url = json.loads(line)["url"]
                break
        assert url is not None
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        pushed = httpx.post(
            f"{url}/api/orders", json=import_record(1), headers={"Authorization": f"Bearer {token}"}
        )
        assert pushed.status_code == 201, pushed.text
        assert cli("run", "--until-done").returncode == 0
        shown = json.loads(cli("show", "ABC-100001", "--json").stdout)
        assert shown["order"]["state"] == "invoiced" and shown["events"][0]["worker"] == "api:pos"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
        assert token not in (tmp_path / "sandbox.log").read_text()
    finally:
        if server is not None and server.poll() is None:
            server.kill()
        sandbox.stop()


def test_slow_clients_cannot_take_the_apis_descriptors(tmp_path: Path) -> None:
    """1,100 half-sent requests against a `serve` limited to 1,024 descriptors (before the bound,
    they took every one: /healthz went silent and asyncio logged a traceback per refused accept).
    Now /healthz and the API answer while they are held, and the process stays far from its limit
    (the late headers' timeout is tested in tests/integration/test_bounded_http.py)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))  # this test's own 1,100
    env = client_env(f"sqlite:///{tmp_path / 'o.db'}", "http://127.0.0.1:9", ORCHESTRATOR_LOG_FORMAT="json")
    token = json.loads(run_cli(env, "token", "create", "--name", "ops", "--role", "viewer", "--json").stdout)[
        "token"
    ]
    log = tmp_path / "serve.log"
    slow: list[socket.socket] = []
    with log.open("w") as out:
        server = subprocess.Popen(
            # a shell that lowers the descriptor limit, then becomes `serve` (same pid)
            ["sh", "-c", 'ulimit -n 1024 && exec "$@"', "sh", *SERVE],
            env=env,
            stderr=out,
        )
    try:
        url = wait_for_url(log)
        port = int(url.rsplit(":", 1)[1])
        slow = half_sent_requests(port, 1100, "/api/status", settle=1.0)
        time.sleep(0.5)
        assert open_fds(server.pid) < 600, "256 connections, a batch being accepted, and the rest"
        assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
        status = httpx.get(f"{url}/api/status", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert status.status_code == 200, status.text
    finally:
        for client in slow:
            client.close()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    text = log.read_text()
    assert "Traceback" not in text and "out of system resource" not in text, text[-2000:]


@pytest.mark.alone  # "answers within a second once the flood stops": a timing, so by itself
def test_dripping_bodies_cannot_silence_serve(tmp_path: Path) -> None:
    """400 login forms and 400 intake bodies (with a valid intake token) sent a byte every two
    seconds, the way a slow-body attack works: /healthz answers 200 throughout, and once the flood
    stops a viewer's order listing answers within a second. Before, every route, /healthz
    included, answered 503 for as long as they dripped."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))  # this test's own 800
    env = client_env(f"sqlite:///{tmp_path / 'o.db'}", "http://127.0.0.1:9", ORCHESTRATOR_LOG_FORMAT="json")

    def token(name: str, role: str) -> str:
        made = run_cli(env, "token", "create", "--name", name, "--role", role, "--json")
        return str(json.loads(made.stdout)["token"])

    intake, viewer = token("pos", "intake"), token("ops", "viewer")
    log = tmp_path / "serve.log"
    flood: list[socket.socket] = []
    with log.open("w") as out:
        server = subprocess.Popen(SERVE, env=env, stderr=out)
    try:
        url = wait_for_url(log)
        port = int(url.rsplit(":", 1)[1])
        heads = [
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 200\r\n\r\n"
        ] * 400
        heads += [
            f"POST /api/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {intake}\r\n"
            "Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n".encode()
        ] * 400
        for _head in heads:
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            flood.append(client)
        time.sleep(0.5)
        for client, head in zip(flood, heads, strict=True):
            with contextlib.suppress(OSError):
                client.send(head)
        health = []
        started = time.monotonic()
        while time.monotonic() - started < 12:
            for client in flood:  # a byte each, every two seconds
                with contextlib.suppress(OSError):
                    client.send(b"{")
            for _ in range(4):
                answer = httpx.get(f"{url}/healthz", timeout=5)
                health.append(answer.status_code)
                time.sleep(0.5)
        assert set(health) == {200}, health
    finally:
        for client in flood:
            client.close()
    try:
        time.sleep(0.2)
        asked = time.monotonic()
        listing = httpx.get(f"{url}/api/orders", headers={"Authorization": f"Bearer {viewer}"}, timeout=5)
        assert listing.status_code == 200 and time.monotonic() - asked < 1.0
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert "Traceback" not in log.read_text()


SERVE = [sys.executable, "-m", "orchestrator", "serve", "--port", "0"]


def wait_for_url(log: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if '"API served"' in line:
                return str(json.loads(line)["url"])
        time.sleep(0.05)
    raise AssertionError(f"serve did not start: {log.read_text()[-2000:]}")
