"""Secrets and customer data never reach a log line, an error message or the terminal.

Credentials are checked when settings load (a trailing newline made the HTTP layer quote the
whole token in every error); every text shown passes one redaction point; database passwords are
masked everywhere; no database error carries an order's body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.redaction import forget_secrets

TOKEN = "T0KEN-never-shown-4711"


@pytest.fixture(autouse=True)
def fresh_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


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
