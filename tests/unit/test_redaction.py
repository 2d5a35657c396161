"""Credentials checked when settings load, and the one redaction point every shown text passes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from orchestrator import log
from orchestrator.config.checks import ConfigurationError
from orchestrator.config.settings import load_settings
from orchestrator.redaction import forget_secrets, redact, register_secret

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
