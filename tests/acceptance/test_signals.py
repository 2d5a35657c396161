"""The daemon as a real process, stopped with a real signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.sandbox import ServerThread

EXAMPLES = Path(__file__).resolve().parents[2] / "orchestrator" / "examples" / "orders.jsonl"


@pytest.fixture
def env(database_url: str, sandbox_server: ServerThread) -> dict[str, str]:
    config = sandbox_server.sandbox.oms.config
    return {
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "VTEX_BASE_URL": sandbox_server.url,
        "VTEX_APP_KEY": config.app_key,
        "VTEX_APP_TOKEN": config.app_token,
        "ORCHESTRATOR_GRACE_PERIOD": "0.5s",
        "ORCHESTRATOR_TICK": "100ms",
        "ORCHESTRATOR_LOG_FORMAT": "json",
    }


def test_daemon_process_stops_cleanly_on_sigterm(env: dict[str, str], tmp_path: Path) -> None:
    """`orchestrator run` as a real process: SIGTERM makes it release its leases and exit 0."""
    full_env = {**os.environ, **env, "ORCHESTRATOR_GRACE_PERIOD": "1h"}
    subprocess.run(
        [sys.executable, "-m", "orchestrator", "import", str(EXAMPLES)],
        env=full_env,
        check=True,
        capture_output=True,
    )
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run"], env=full_env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = subprocess.run(
                [sys.executable, "-m", "orchestrator", "status", "--json"],
                env=full_env,
                capture_output=True,
                text=True,
                check=True,
            )
            if json.loads(status.stdout)["counts"]["dispatch-authorized"] == 25:
                break
            time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    lines = [
        json.loads(line)
        for line in (tmp_path / "daemon.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(line["event"] == "daemon stopped" for line in lines)
    report = json.loads(
        subprocess.run(
            [sys.executable, "-m", "orchestrator", "status", "--json"],
            env=full_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert report["counts"]["dispatch-authorized"] == 25
