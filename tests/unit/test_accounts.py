"""`[accounts.NAME]` tables: each account's settings, credentials only by reference, clear errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.config.checks import ConfigurationError
from orchestrator.config.settings import describe, load_settings
from orchestrator.redaction import redact

TWO = """
[accounts.acme-br]
account = "acmebr"
app_key_env = "ACME_BR_KEY"
app_token_file = "{token}"
grace_period = "45m"
max_rpm = 600
invoice_timing = "asap"

[accounts.acme-ar]
base_url = "http://127.0.0.1:8765/accounts/acme-ar"
app_key_env = "ACME_AR_KEY"
app_token_env = "ACME_AR_TOKEN"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("VTEX_ACCOUNT", "VTEX_BASE_URL", "VTEX_APP_KEY", "VTEX_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    token = tmp_path / "acme-br.token"
    token.write_text("br-token-value\n")  # a secret file ends with a line break: not part of it
    monkeypatch.setenv("ACME_BR_KEY", "br-key-value")
    monkeypatch.setenv("ACME_AR_KEY", "ar-key-value")
    monkeypatch.setenv("ACME_AR_TOKEN", "ar-token-value")
    path = tmp_path / "orchestrator.toml"
    path.write_text(TWO.format(token=token))
    return path


def test_each_table_is_an_account_with_its_own_settings(config: Path) -> None:
    """Each account runs with its own URL, credentials, grace period, budget and invoice timing;
    what a table leaves out is the deployment's."""
    settings = load_settings(config)
    assert list(settings.all_accounts) == ["acme-br", "acme-ar"]  # no single-account settings: no default
    br, ar = settings.account("acme-br"), settings.account("acme-ar")
    assert br.base_url == "https://acmebr.vtexcommercestable.com.br"
    assert br.app_key is not None and br.app_key.get_secret_value() == "br-key-value"
    assert br.app_token is not None and br.app_token.get_secret_value() == "br-token-value"
    assert (br.grace_period, br.max_rpm, br.invoice_timing) == (timedelta(minutes=45), 600, "asap")
    assert (ar.grace_period, ar.max_rpm, ar.invoice_timing) == (
        timedelta(minutes=30),
        3000,
        "after-grace",
    )
    assert ar.base_url == "http://127.0.0.1:8765/accounts/acme-ar"
    assert (br.name, ar.name) == ("acme-br", "acme-ar")


def test_credentials_never_show(config: Path) -> None:
    """`config` names where each credential comes from, never its value; logs redact them all."""
    settings = load_settings(config)
    shown = str(describe(settings, config))
    assert "from ACME_BR_KEY" in shown and str(config.parent / "acme-br.token") in shown
    for secret in ("br-key-value", "br-token-value", "ar-key-value", "ar-token-value"):
        assert secret not in shown
        assert secret not in redact(f"VTEX said no to {secret}")


def test_single_account_settings_are_the_default_account(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VTEX_ACCOUNT and friends keep working beside the tables, as the account named default."""
    monkeypatch.setenv("VTEX_ACCOUNT", "acme")
    settings = load_settings(config)
    assert list(settings.all_accounts) == ["default", "acme-br", "acme-ar"]
    assert settings.account("default").base_url == "https://acme.vtexcommercestable.com.br"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('app_key = "k"\napp_token_env = "T"', "app_key is written in the file; credentials never are"),
        ('app_token_env = "T"', "set one of app_key_env"),
        ('app_key_env = "T"\napp_token_env = "T"\nbase_url = "http://vtex.example.com"', "base_url: http://"),
        ('app_key_env = "SPACED"\napp_token_env = "T"', "SPACED"),
        ('app_key_env = "T"\napp_token_env = "T"\nstatus_source = "push"', "status_source must be auto"),
        ('app_key_env = "T"\napp_token_env = "T"\nstatus_source = "hook"', "hook needs hook_url"),
        (
            'app_key_env = "T"\napp_token_env = "T"\nstatus_source = "hook"\nhook_url = "http://orders.example.com"',
            "hook_url: http://",
        ),
    ],
)
def test_a_table_that_cannot_work_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, message: str
) -> None:
    """An account table that cannot work is refused naming the table and the key, never a credential's value.
    An account table that cannot work is refused naming the table and the key, never a credential's value."""
    monkeypatch.setenv("T", "token")
    monkeypatch.setenv("SPACED", "key with a space")
    path = tmp_path / "bad.toml"
    path.write_text(f'[accounts.shop]\naccount = "shop"\n{table}\n')
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)
    assert "[accounts.shop]" in str(caught.value) or "accounts.shop" in str(caught.value)
    assert message in str(caught.value)
    assert "key with a space" not in str(caught.value)


def test_an_account_name_must_fit_commands_and_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An account name that would not fit a command line, an order reference or a metric label is refused."""
    monkeypatch.setenv("T", "token")
    path = tmp_path / "bad.toml"
    path.write_text('[accounts."Acme BR"]\naccount = "x"\napp_key_env = "T"\napp_token_env = "T"\n')
    with pytest.raises(ConfigurationError, match="lowercase letters"):
        load_settings(path)


def test_an_unknown_account_is_named(config: Path) -> None:
    """Asking for an account that is not configured names it, and the configured ones."""
    with pytest.raises(ConfigurationError, match="no account 'acme-cl' is configured"):
        load_settings(config).account("acme-cl")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'app_key_env = "NOT_SET_ANYWHERE"',
            "[accounts.shop] app_key_env: the environment variable NOT_SET_ANYWHERE",
        ),
        ('app_key_file = "/nonexistent/key"', "[accounts.shop] app_key_file: cannot read /nonexistent/key"),
    ],
)
def test_credentials_missing_here_stop_only_what_calls_vtex(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, message: str
) -> None:
    """As with an unset VTEX_APP_KEY, `status` works on a machine without the secrets; building
    the account's VTEX client says which table and key lack them, and `config` shows it."""
    from orchestrator.engine.clients import build_client

    monkeypatch.setenv("T", "token")
    path = tmp_path / "partial.toml"
    path.write_text(f'[accounts.shop]\naccount = "shop"\n{table}\napp_token_env = "T"\n')
    settings = load_settings(path)
    with pytest.raises(ConfigurationError) as caught:
        build_client(settings, settings.account("shop"))
    assert message in str(caught.value)
    assert "NOT SET" in str(describe(settings, path))


def test_a_secret_file_that_is_not_text_is_named_without_its_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A credential file that is not UTF-8 text is named in the error, without quoting any of its bytes."""
    from orchestrator.engine.clients import build_client

    monkeypatch.setenv("T", "token")
    secret = tmp_path / "key.bin"
    secret.write_bytes(b"ab\xfe\xfdcd")
    path = tmp_path / "binary.toml"
    path.write_text(f'[accounts.shop]\naccount = "shop"\napp_key_file = "{secret}"\napp_token_env = "T"\n')
    with pytest.raises(ConfigurationError) as caught:
        settings = load_settings(path)
        build_client(settings, settings.account("shop"))
    assert str(caught.value) == f"[accounts.shop] app_key_file: {secret} is not UTF-8 text"


def test_two_tables_for_one_vtex_account_and_app_key_are_refused_naming_both(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same VTEX account (however its URL is spelled) with the same app key in two tables is
    refused, both tables named; the same account under another app key is allowed."""
    twice = config.read_text() + (
        '\n[accounts.acme-br-again]\nbase_url = "HTTPS://AcmeBR.vtexcommercestable.com.br:443/"\n'
        'app_key_env = "ACME_AGAIN_KEY"\napp_token_env = "ACME_AR_TOKEN"\n'
    )
    config.write_text(twice)
    monkeypatch.setenv("ACME_AGAIN_KEY", "another-key-value")
    assert "acme-br-again" in load_settings(config).all_accounts
    monkeypatch.setenv("ACME_AGAIN_KEY", "br-key-value")
    with pytest.raises(ConfigurationError) as refused:
        load_settings(config)
    assert "[accounts.acme-br] and [accounts.acme-br-again] are the same VTEX account" in str(refused.value)
    assert "https://acmebr.vtexcommercestable.com.br" in str(refused.value)
    assert "br-key-value" not in str(refused.value)


def test_a_table_repeating_the_single_account_settings_is_refused(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VTEX_BASE_URL and VTEX_APP_KEY are the account `default`: a table for the same endpoint and
    key is the same VTEX account twice."""
    monkeypatch.setenv("VTEX_BASE_URL", "http://127.0.0.1:8765/accounts/acme-ar/")
    monkeypatch.setenv("VTEX_APP_KEY", "ar-key-value")
    monkeypatch.setenv("VTEX_APP_TOKEN", "ar-token-value")
    with pytest.raises(
        ConfigurationError, match=r"VTEX_ACCOUNT / VTEX_BASE_URL \(the account default\) and "
    ):
        load_settings(config)
