"""Real processes for crash and shutdown tests: the sandbox and the daemon as `python -m orchestrator`."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_cli(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m orchestrator ARGS` as a script would run it: piped, its output captured."""
    command = [sys.executable, "-m", "orchestrator", *args]
    return subprocess.run(
        command, input=stdin, text=True, env=env, capture_output=True, timeout=timeout, check=False
    )


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_daemon(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", *args], env=env, stdout=out, stderr=out
        )


def open_fds(pid: int) -> int:
    """How many descriptors process `pid` holds now (Linux)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def half_sent_requests(port: int, count: int, path: str, settle: float) -> list[socket.socket]:
    """`count` connections to `port`, all opened at once, each then sending a request for `path`
    whose headers never end: what a slow or hostile client holds a server with."""
    held = []
    for _ in range(count):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        held.append(client)
    time.sleep(settle)  # let the server accept (and drop) what it will
    for client in held:
        with contextlib.suppress(OSError):
            client.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode())
    return held


def log_events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events
