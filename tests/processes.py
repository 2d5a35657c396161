"""Real processes for crash and shutdown tests: the sandbox and the daemon as `python -m orchestrator`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from orchestrator.sandbox.oms import SandboxConfig

DEFAULTS = SandboxConfig()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class SandboxProcess:
    """`orchestrator sandbox --port 0 ...` in its own process; the URL is read from its output."""

    def __init__(self, *args: str, log: Path) -> None:
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "sandbox", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if "listening on" not in first:
            self.stop()
            raise RuntimeError(f"sandbox did not start: {first!r} (see {log})")
        self.url = first.split("listening on ", 1)[1].split()[0]

    def ledger(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.url}/_sandbox/ledger", timeout=10).json()
        return result

    def get_requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = httpx.get(f"{self.url}/_sandbox/requests", timeout=30).json()
        return result

    def control(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.url}/_sandbox/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


def daemon_env(database_url: str, sandbox_url: str, **settings: str) -> dict[str, str]:
    env = {
        **os.environ,
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "VTEX_BASE_URL": sandbox_url,
        "VTEX_APP_KEY": DEFAULTS.app_key,
        "VTEX_APP_TOKEN": DEFAULTS.app_token,
        "ORCHESTRATOR_LOG_FORMAT": "json",
    }
    env.update(settings)
    return env


def start_daemon(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", *args], env=env, stdout=out, stderr=out
        )


def log_events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events
