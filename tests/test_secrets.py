"""Secrets and customer data never reach a log line, an error message or the terminal.

Credentials are checked when settings load (a trailing newline made the HTTP layer quote the
whole token in every error); every text shown passes one redaction point; database passwords are
masked everywhere; no database error carries an order's body.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from orchestrator import log
from orchestrator.cli import app
from orchestrator.redaction import forget_secrets, redact, register_secret
from orchestrator.settings import ConfigurationError, load_settings
from tests import backends
from tests.factories import import_lines as lines_of

TOKEN = "T0KEN-never-shown-4711"


@pytest.fixture(autouse=True)
def fresh_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize("value", [f"{TOKEN}\n", f"{TOKEN}\r\n", f" {TOKEN}", f"{TOKEN} tail"])
def test_a_credential_with_whitespace_is_refused_naming_the_variable_not_the_value(value: str) -> None:
    """The error names VTEX_APP_TOKEN and says what is wrong; it never quotes the token."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(None, vtex_app_key="vtexappkey-acme-XYZ", vtex_app_token=value)
    message = str(caught.value)
    assert "VTEX_APP_TOKEN" in message and "line break" in message
    assert "T0KEN" not in message and "4711" not in message


def test_check_with_a_newline_in_the_token_says_so_without_the_token(tmp_path: Path) -> None:
    """Through the real command: exit 2 (configuration), one line, no token anywhere."""
    env = {
        "ORCHESTRATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "VTEX_BASE_URL": "http://127.0.0.1:9",
        "VTEX_APP_KEY": "vtexappkey-acme-XYZ",
        "VTEX_APP_TOKEN": TOKEN + "\n",
    }
    result = CliRunner(env=env).invoke(app, ["check"])
    assert result.exit_code == 2
    assert "VTEX_APP_TOKEN" in result.output and TOKEN not in result.output


def test_every_log_line_passes_the_redaction_point() -> None:
    """A library that quotes the secret in an exception: the JSON log line shows it masked."""
    register_secret(TOKEN)
    previous = structlog.get_config()
    stream = io.StringIO()
    try:
        log.configure("info", "json", stream=stream)
        try:
            raise ValueError(f"Illegal header value b'{TOKEN}\\n'")
        except ValueError:
            log.get_logger().exception("step crashed", order_id="ABC-1", detail=f"token={TOKEN}")
    finally:
        structlog.configure(**previous)
    line = stream.getvalue()
    assert TOKEN not in line and "********" in line
    assert json.loads(line)["order_id"] == "ABC-1"


def test_redaction_masks_secrets_in_their_url_forms_and_any_url_password() -> None:
    """Quoted, percent-encoded or inside a database URL: masked."""
    register_secret("p@ss word/1")
    assert "p@ss" not in redact("GET /x?token=p%40ss%20word%2F1 failed")
    assert redact("postgresql+psycopg://app:hunter2@db.internal:5432/orders is down") == (
        "postgresql+psycopg://app:********@db.internal:5432/orders is down"
    )


def test_config_and_check_mask_the_database_password() -> None:
    """`config` shows the URL with the password masked; `check` on an unreachable server too."""
    url = "postgresql+psycopg://orchestrator:Sup3rS3cretPw@127.0.0.1:9/orders"
    runner = CliRunner(env={"ORCHESTRATOR_DATABASE_URL": url, "VTEX_BASE_URL": "http://127.0.0.1:9"})
    shown = runner.invoke(app, ["config", "--json"])
    assert shown.exit_code == 0, shown.output
    assert "Sup3rS3cretPw" not in shown.output
    assert json.loads(shown.output)["database_url"]["value"] == (
        "postgresql+psycopg://orchestrator:********@127.0.0.1:9/orders"
    )
    checked = runner.invoke(app, ["check"])
    assert checked.exit_code == 1 and "Sup3rS3cretPw" not in checked.output
    assert "refused the connection" in checked.output


def test_a_failed_import_shows_no_customer_data(tmp_path: Path) -> None:
    """PostgreSQL refuses the write (a read-only database): one line, and no name, e-mail or CPF
    from the orders (SQLAlchemy would print every parameter of the INSERT)."""
    name, url = backends.create_database()
    try:
        backends.make_read_only(name)
        orders = tmp_path / "orders.jsonl"
        orders.write_text("\n".join(lines_of(3)))
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", "import", str(orders)],
            env={"ORCHESTRATOR_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        backends.drop_database(name)
    assert result.returncode == 1, result.stderr
    assert "read-only" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for private in ("ana.silva@example.com", "12345678909", "Praia de Botafogo", "Silva"):
        assert private not in result.stderr + result.stdout
