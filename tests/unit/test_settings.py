"""Settings: durations, the TOML file, precedence, and secrets that never print."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.config.checks import ConfigurationError
from orchestrator.config.settings import load_settings
from orchestrator.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("1h30m", 5400),
        ("45s", 45),
        ("2d", 172800),
        ("1800", 1800),
        ("0.5", 0.5),
        ("250ms", 0.25),
    ],
)
def test_durations_in_human_form(text: str, seconds: float) -> None:
    """Seconds or compact units are accepted everywhere a duration is."""
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_a_bad_duration_says_what_is_accepted() -> None:
    """The error shows the forms that work."""
    with pytest.raises(ValueError, match="30m"):
        parse_duration("half an hour")


def test_format_duration_is_short() -> None:
    """Tables show durations compactly."""
    assert [format_duration(s) for s in (3.25, 75, 3700, 200000)] == ["3.2s", "1m15s", "1h01m", "2d7h"]


def test_grace_period_defaults_to_vtex_30_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without configuration the grace period is VTEX's default."""
    monkeypatch.delenv("ORCHESTRATOR_GRACE_PERIOD", raising=False)
    assert load_settings().grace_period == timedelta(minutes=30)


def test_toml_file_then_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values come from the TOML file (by env name or field name); the environment overrides them."""
    path = tmp_path / "orchestrator.toml"
    path.write_text('ORCHESTRATOR_GRACE_PERIOD = "10m"\nconcurrency = 8\n[vtex]\naccount = "acme"\n')
    monkeypatch.setenv("ORCHESTRATOR_CONCURRENCY", "16")
    settings = load_settings(path)
    assert (settings.grace_period, settings.concurrency, settings.vtex_account) == (
        timedelta(minutes=10),
        16,
        "acme",
    )
    assert settings.account().base_url == "https://acme.vtexcommercestable.com.br"


def test_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    """A typo in the config file is reported, not ignored."""
    path = tmp_path / "orchestrator.toml"
    path.write_text('grace_priod = "10m"\n')
    with pytest.raises(ConfigurationError, match="grace_priod"):
        load_settings(path)


def test_secrets_are_masked_in_every_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    """repr, str and JSON of the settings never show the app key or token."""
    monkeypatch.setenv("VTEX_APP_KEY", "vtexappkey-acme-SECRETKEY")
    monkeypatch.setenv("VTEX_APP_TOKEN", "SECRETTOKENVALUE")
    settings = load_settings()
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "SECRETKEY" not in text and "SECRETTOKENVALUE" not in text


def test_lease_must_outlive_a_call() -> None:
    """A lease shorter than two timeouts would let two workers step one order."""
    with pytest.raises(ConfigurationError, match="ORCHESTRATOR_LEASE"):
        load_settings(lease="30s", vtex_timeout="20s")


@pytest.mark.parametrize("url", ["http://acme.vtexcommercestable.com.br", "http://10.0.0.5:8765"])
def test_plain_http_is_refused_except_on_this_machine(url: str) -> None:
    """http:// would send the app key and token in clear text: only loopback (the sandbox) may use it."""
    with pytest.raises(ConfigurationError, match="clear text"):
        load_settings(None, vtex_base_url=url)
    for local in ("http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"):
        assert load_settings(None, vtex_base_url=local).account().base_url == local


def test_the_hook_needs_serves_public_url() -> None:
    """VTEX pushes to `serve`: without its public URL the Hook cannot be set, which is said at once."""
    with pytest.raises(ConfigurationError, match="hook_url"):
        load_settings(None, vtex_base_url="http://127.0.0.1:8765", status_source="hook")
    settings = load_settings(
        None,
        vtex_base_url="http://127.0.0.1:8765",
        status_source="hook",
        hook_url="https://orders.example.com/",
    )
    assert settings.account().hook_url == "https://orders.example.com"
    assert load_settings(None).account().status_source == "auto"
