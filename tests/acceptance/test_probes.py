"""Nothing can starve the daemon: a bounded probe server, health that sees the database, and logs
that an outage cannot flood."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from orchestrator.engine.monitor.health import Health
from orchestrator.sandbox.process import SandboxProcess, client_env
from tests.factories import import_lines as lines_of
from tests.processes import half_sent_requests, open_fds, wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def connections_held(pid: int, port: int) -> int:
    """How many of `pid`'s descriptors are connections accepted on `port` (from /proc)."""
    ours = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[8:-1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] != "0A" and fields[9] in ours:  # 0A: listening
                    held += 1
    return held


def test_slow_clients_on_the_metrics_port_cannot_take_the_daemons_descriptors(tmp_path: Path) -> None:
    """600 half-sent requests held open: the daemon's descriptors stay bounded, it keeps stepping
    orders, and a prober still gets its answer."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    sandbox = SandboxProcess("--grace-seconds", "3600", log=tmp_path / "sandbox.log")
    slow: list[socket.socket] = []
    daemon = None
    try:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        env = client_env(f"sqlite:///{tmp_path / 'o.db'}", sandbox.url, ORCHESTRATOR_TICK="100ms")
        subprocess.run(
            [sys.executable, "-m", "orchestrator", "import", "-"],
            input="\n".join(lines_of(20)),
            text=True,
            env=env,
            check=True,
            capture_output=True,
        )
        with (tmp_path / "daemon.log").open("w") as out:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "run", "--metrics-port", str(port)],
                env={**env, "ORCHESTRATOR_METRICS_PORT": str(port)},
                stdout=out,
                stderr=out,
            )
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{url}/healthz"), 30, "the probe server")
        baseline = open_fds(daemon.pid)
        # all at once; the server drops the oldest as more arrive
        slow = half_sent_requests(port, 600, "/metrics", settle=1.5)
        # the limit holds at every instant: accept, limit and close happen in one call
        assert connections_held(daemon.pid, port) <= 32
        healthy = httpx.get(f"{url}/healthz", timeout=5)
        assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
        assert "orchestrator_orders" in httpx.get(f"{url}/metrics", timeout=5).text
        wait_for(
            lambda: sandbox.ledger()["summary"]["requests"] >= 40, 30, "place and authorize for 20 orders"
        )
        assert connections_held(daemon.pid, port) <= 32
        # its own connections to VTEX and the database come on top; nothing near the 1,100 seen before
        assert open_fds(daemon.pid) < baseline + 120
    finally:
        for client in slow:
            client.close()
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=30) == 0
        sandbox.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("probe", ["/readyz", "/healthz"])
def test_the_probes_say_when_the_database_refuses_every_write(tmp_path: Path, probe: str) -> None:
    """PostgreSQL turned read-only under a running daemon: /readyz says 503 with the reason at
    once; /healthz stays 200 within the grace (a short outage is no reason to restart)."""
    from tests import backends

    name, database_url = backends.create_database()
    sandbox = SandboxProcess("--grace-seconds", "3600", log=tmp_path / "sandbox.log")
    daemon = None
    try:
        env = client_env(database_url, sandbox.url, ORCHESTRATOR_TICK="100ms")
        subprocess.run(
            [sys.executable, "-m", "orchestrator", "import", "-"],
            input="\n".join(lines_of(3)),
            text=True,
            env=env,
            check=True,
            capture_output=True,
        )
        with (tmp_path / "daemon.log").open("w") as out:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "run", "--metrics-port", "0"],
                env=env,
                stdout=out,
                stderr=out,
            )
        url = wait_for(lambda: _metrics_url(tmp_path / "daemon.log"), 30, "the metrics URL")
        wait_for(lambda: _answers(f"{url}/readyz"), 30, "readiness")
        backends.make_read_only(name)
        # The first failure is the ended connection; the next ones, the read-only database.
        wait_for(lambda: "read-only" in (_probe(f"{url}{probe}")[1] or ""), 30, "the read-only error")
        status, _error = _probe(f"{url}{probe}")
        assert status == (503 if probe == "/readyz" else 200)
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        sandbox.stop()
        backends.drop_database(name)


def _probe(url: str) -> tuple[int, str | None]:
    answer = httpx.get(url, timeout=5)
    return answer.status_code, answer.json()["databaseError"]


def _metrics_url(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        if line.startswith("{") and '"metrics served"' in line:
            return str(json.loads(line)["url"]).removesuffix("/metrics")
    return None


def test_metrics_of_a_slow_second_are_not_blocked(tmp_path: Path) -> None:
    """A probe answer takes milliseconds, not the probe server's request timeout."""
    from orchestrator.engine.monitor.metrics import Metrics, probe_handler
    from orchestrator.engine.monitor.probe_server import ProbeServer
    from orchestrator.serving import bind

    health = Health(timedelta(seconds=1))
    health.ticked()
    sock = bind("127.0.0.1", 0)
    server = ProbeServer(sock, probe_handler(Metrics(), health))
    server.start()
    try:
        port = sock.getsockname()[1]
        started = time.monotonic()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
        assert httpx.get(f"http://127.0.0.1:{port}/nope", timeout=5).status_code == 404
    finally:
        server.stop()
        sock.close()
