"""The output contract scripts rely on, pinned through real processes whose output is not a
terminal: JSON on stdout (camelCase keys, ISO 8601 UTC times), logs on stderr in the configured
format, the documented exit codes, and tables that never wrap."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from orchestrator.sandbox.process import SandboxProcess, client_env
from tests.factories import import_lines as lines_of
from tests.factories import import_record
from tests.processes import run_cli

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LOOKS_LIKE_TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d")
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
# Maps whose keys are data, not names of fields: states, settings, VTEX's own bodies.
DATA_KEYS = {"counts", "oldest", "thresholdSeconds", "vtex", "placeBody", "invoice", "tracking", "detail"}


def check_shape(value: Any, where: str = "") -> list[str]:
    """Every key camelCase and every time ISO 8601 UTC, recursively; the offenders."""
    wrong: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not CAMEL.match(key):
                wrong.append(f"{where}.{key}: not camelCase")
            if key not in DATA_KEYS:
                wrong += check_shape(item, f"{where}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            wrong += check_shape(item, f"{where}[{n}]")
    elif (
        isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d", value) and not ISO.match(value)
    ):
        wrong.append(f"{where}: {value!r} is not ISO 8601 UTC with milliseconds")
    return wrong


def test_scripts_can_rely_on_json_exit_codes_logs_and_unwrapped_tables(tmp_path: Path) -> None:
    """Piped, every command's --json is one JSON document on stdout, logs go to stderr as JSON lines, exit
    codes are the documented ones and tables never wrap."""
    sandbox = SandboxProcess("--grace-seconds", "0.3", log=tmp_path / "sandbox.log")
    try:
        env = client_env(
            f"sqlite:///{tmp_path / 'o.db'}",
            sandbox.url,
            ORCHESTRATOR_GRACE_PERIOD="0.3s",
            ORCHESTRATOR_TICK="100ms",
            ORCHESTRATOR_LOG_FORMAT="json",
        )
        env.pop("COLUMNS", None)

        def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return run_cli(env, *args, stdin=stdin)

        refused = import_record(9, with_invoice=False)
        refused["order"]["marketplacePaymentValue"] = 999  # VTEX answers FMT007
        refused["affiliateId"] = "LONGAFFILIATE"[:3]
        lines = "\n".join([*lines_of(2), json.dumps(refused)])
        imported = cli("import", "-", "--json", stdin=lines)
        assert imported.returncode == 0 and json.loads(imported.stdout)["imported"] == [
            "ABC-100000",
            "ABC-100001",
            "LON-100009",
        ]
        ran = cli("run", "--until-done", "--json")
        assert ran.returncode == 6, ran.stderr  # finished, with failures left
        assert json.loads(ran.stdout)["failed"] == 1
        logs = [json.loads(line) for line in ran.stderr.splitlines() if line.startswith("{")]
        assert logs and all(ISO.match(entry["timestamp"]) for entry in logs)  # JSON logs, on stderr

        outputs = {
            "status": cli("status", "--json"),
            "status --stuck": cli("status", "--stuck", "--json"),
            "list": cli("list", "--json"),
            "show": cli("show", "ABC-100000", "--json"),
            "show by marketplace id": cli("show", "100009", "--json"),
            "check": cli("check", "--json"),
            "migrate": cli("migrate", "--json"),
            "track": cli("track", "ABC-100000", "--tracking-number", "BR1", "--json"),
        }
        for name, result in outputs.items():
            assert result.returncode == 0, (name, result.stderr)
            data = json.loads(result.stdout)  # stdout is the JSON and nothing else
            assert check_shape(data) == [], name
        shown = json.loads(outputs["show"].stdout)
        assert shown["order"]["orderId"] == "ABC-100000" and shown["events"][0]["kind"] == "import"
        track_logs = [json.loads(x) for x in outputs["track"].stderr.splitlines() if x.startswith("{")]
        assert track_logs and all(set(entry) >= {"event", "level", "timestamp"} for entry in track_logs)

        # Exit codes: usage 2, refused 3, nothing found 4, stuck found 5 (the failed order).
        assert cli("list", "--state", "nonsense").returncode == 2
        assert cli("status", "--older-than", "5x", "--stuck").returncode == 2
        differs = import_record(0)
        differs["order"]["items"][0]["quantity"] = 2
        assert cli("import", "-", stdin=json.dumps(differs)).returncode == 3
        assert cli("show", "ZZZ-404").returncode == 4
        assert cli("list", "--code", "canceled-in-vtex").returncode == 4
        assert cli("status", "--fail-on-stuck").returncode == 5

        # Tables are never wrapped when piped: each order is one whole line, however long.
        stuck = cli("status", "--stuck").stdout.splitlines()
        [row] = [line for line in stuck if "LON-100009" in line]
        assert "FMT007" in row and "--replace" in row and len(row) > 120
        [listed] = [line for line in cli("list").stdout.splitlines() if "LON-100009" in line]
        assert "Payment total (999) differs from store desired value" in listed
        retried = cli("retry", "LON-100009", "--json")
        assert retried.returncode == 0 and check_shape(json.loads(retried.stdout)) == []
    finally:
        sandbox.stop()
