"""The sandbox as its own process (`orchestrator sandbox --port 0`), for scripts that rehearse
against it, the benchmarks and the crash tests: a separate process has its own CPU to measure and
survives the daemon being killed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from orchestrator.sandbox.records import SandboxConfig

DEFAULTS = SandboxConfig()


class SandboxProcess:
    """Started with the given `orchestrator sandbox` options; the URL is read from its first line."""

    def __init__(self, *args: str, log: Path) -> None:
        self._log = log.open("w")
        # S603: our own interpreter running our own command; the options are the caller's.
        self.process = subprocess.Popen(  # noqa: S603
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

    def get(self, path: str) -> Any:
        """A control endpoint under /_sandbox/ (ledger, requests, holds)."""
        return httpx.get(f"{self.url}/_sandbox/{path}", timeout=60).json()

    def ledger(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("ledger")
        return result

    def control(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.url}/_sandbox/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def cpu_seconds(self) -> float:
        """User + system CPU the sandbox has spent so far (Linux /proc)."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


def client_env(database_url: str, sandbox_url: str, **settings: str) -> dict[str, str]:
    """The environment of an `orchestrator` process using this database and the sandbox at
    `sandbox_url` with the sandbox's default credentials; `settings` add or override variables."""
    return {
        **os.environ,
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "VTEX_BASE_URL": sandbox_url,
        "VTEX_APP_KEY": DEFAULTS.app_key,
        "VTEX_APP_TOKEN": DEFAULTS.app_token,
        "ORCHESTRATOR_LOG_FORMAT": "json",
        **settings,
    }
