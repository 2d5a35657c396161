"""`orchestrator serve` as operators run it: a real process, a token made by the CLI, an order
pushed over HTTP that a daemon then finishes, and SIGTERM for a clean stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from orchestrator.sandbox.process import SandboxProcess, client_env
from tests.factories import import_record
from tests.processes import run_cli


def test_serve_takes_an_order_that_the_daemon_finishes(tmp_path: Path) -> None:
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
