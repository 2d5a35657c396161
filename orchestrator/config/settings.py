"""Configuration, read once: environment variables, then an optional TOML file, then defaults.

Secrets (`VTEX_APP_KEY`, `VTEX_APP_TOKEN`) are `SecretStr`: their repr, str and JSON dump are
masked, so printing or logging a Settings object cannot leak them. Their value is taken out
(`get_secret_value()`) only where it must be: to check it, to build the VTEX client's headers
(again after a rotation), to compare two accounts' app keys, to hand it to the redaction point
and to say whether one is set (`config`). They are checked here, once: a credential with a
trailing newline (a secret file, `$(cat token.txt)` with CRLF) would otherwise reach the HTTP
layer, whose error message quotes the header value. Once loaded, they and the database password
are registered with the redaction point, so no log line or message can show them even if some
library quotes them.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from orchestrator.config.account_tables import (
    DEFAULT_ACCOUNT,
    SINGLE_ACCOUNT_CREDENTIALS,
    AccountError,
    AccountSettings,
    AccountTable,
    resolve,
)
from orchestrator.config.checks import (
    HOOK_NEEDS_URL,
    ConfigurationError,
    check_base_url,
    check_credential,
    check_currency,
    check_invoice_timing,
    check_status_source,
)
from orchestrator.config.stuck_rules import StuckRules, StuckRulesError
from orchestrator.durations import format_duration, parse_duration
from orchestrator.redaction import mask_url, register_secret

DEFAULT_DATABASE_URL = "sqlite:///orchestrator.db"
_WORKER_ID = re.compile(r"[\x21-\x7e]{1,80}")


def _env(name: str, *more: str) -> Any:
    return AliasChoices(name, *more)


class Settings(BaseSettings):
    """Every setting, with the environment variable that sets it as its alias."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias=_env("ORCHESTRATOR_DATABASE_URL"))

    vtex_account: str | None = Field(None, validation_alias=_env("VTEX_ACCOUNT"))
    vtex_environment: str = Field("vtexcommercestable", validation_alias=_env("VTEX_ENVIRONMENT"))
    vtex_base_url: str | None = Field(None, validation_alias=_env("VTEX_BASE_URL"))
    vtex_app_key: SecretStr | None = Field(None, validation_alias=_env("VTEX_APP_KEY"))
    vtex_app_token: SecretStr | None = Field(None, validation_alias=_env("VTEX_APP_TOKEN"))
    vtex_timeout: timedelta = Field(timedelta(seconds=20), validation_alias=_env("VTEX_TIMEOUT"))
    vtex_max_rpm: int = Field(3000, ge=1, validation_alias=_env("VTEX_MAX_RPM"))
    vtex_http_transport: str = Field("aiohttp", validation_alias=_env("VTEX_HTTP_TRANSPORT"))

    grace_period: timedelta = Field(timedelta(minutes=30), validation_alias=_env("ORCHESTRATOR_GRACE_PERIOD"))
    invoice_timing: str = Field("after-grace", validation_alias=_env("ORCHESTRATOR_INVOICE_TIMING"))
    # Where orders learn VTEX's status (`config.checks.STATUS_SOURCES`): VTEX's Orders Feed v3 when the
    # app key may read it ("Feed v3 and Hook Admin"; one feed per app key means a key of its own),
    # VTEX's Hook (pushed to `serve` at `hook_url`), or Get order alone (`poll`).
    status_source: str = Field("auto", validation_alias=_env("ORCHESTRATOR_STATUS_SOURCE"))
    # `serve`'s public URL, where VTEX's Hook reaches it (https; `/vtex/hook/ACCOUNT` is added).
    hook_url: str | None = Field(None, validation_alias=_env("ORCHESTRATOR_HOOK_URL"))
    # How amounts read to people (the console, `show`): VTEX keeps them in cents of the store's
    # currency and says which only inside each order; an account table may set its own.
    currency: str = Field("BRL", validation_alias=_env("ORCHESTRATOR_CURRENCY"))
    concurrency: int = Field(64, ge=1, le=4096, validation_alias=_env("ORCHESTRATOR_CONCURRENCY"))
    tick_interval: timedelta = Field(timedelta(seconds=1), validation_alias=_env("ORCHESTRATOR_TICK"))
    # How often a listening account's Orders Feed is read while it has nothing (a full batch is
    # followed by another read at once): the most an event waits, against one request each time.
    feed_interval: timedelta = Field(
        timedelta(seconds=2), validation_alias=_env("ORCHESTRATOR_FEED_INTERVAL")
    )
    lease: timedelta = Field(timedelta(minutes=2), validation_alias=_env("ORCHESTRATOR_LEASE"))
    shutdown_timeout: timedelta = Field(
        timedelta(seconds=30), validation_alias=_env("ORCHESTRATOR_SHUTDOWN_TIMEOUT")
    )
    max_attempts: int = Field(8, ge=1, validation_alias=_env("ORCHESTRATOR_MAX_ATTEMPTS"))
    max_requests_per_order_hour: int = Field(
        60, ge=10, le=10_000, validation_alias=_env("ORCHESTRATOR_MAX_REQUESTS_PER_ORDER_HOUR")
    )
    unknown_outcome_after: timedelta = Field(
        timedelta(minutes=15), validation_alias=_env("ORCHESTRATOR_UNKNOWN_OUTCOME_AFTER")
    )
    stuck_after: str = Field("", validation_alias=_env("ORCHESTRATOR_STUCK_AFTER"))
    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}",
        validation_alias=_env("ORCHESTRATOR_WORKER_ID"),
    )
    metrics_port: int | None = Field(None, ge=0, le=65535, validation_alias=_env("ORCHESTRATOR_METRICS_PORT"))
    metrics_host: str = Field("127.0.0.1", validation_alias=_env("ORCHESTRATOR_METRICS_HOST"))
    log_level: str = Field("info", validation_alias=_env("ORCHESTRATOR_LOG_LEVEL"))
    log_format: str = Field("auto", validation_alias=_env("ORCHESTRATOR_LOG_FORMAT"))
    # `[accounts.NAME]` tables (`orchestrator.config.account_tables`); without any, the VTEX_* settings above
    # are the one account, named `default`.
    accounts: dict[str, AccountTable] = Field(
        default_factory=dict, validation_alias=_env("ORCHESTRATOR_ACCOUNTS")
    )
    _resolved: dict[str, AccountSettings] = PrivateAttr(default_factory=dict)

    @field_validator(
        "vtex_timeout",
        "grace_period",
        "tick_interval",
        "feed_interval",
        "lease",
        "shutdown_timeout",
        "unknown_outcome_after",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_validator("vtex_account", "vtex_base_url", "vtex_app_key", "vtex_app_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("vtex_app_key", "vtex_app_token")
    @classmethod
    def _credential(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_credential(value.get_secret_value())
        return value

    @field_validator("vtex_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)

    @field_validator("worker_id")
    @classmethod
    def _worker_id(cls, value: str) -> str:
        if not _WORKER_ID.fullmatch(value):
            raise ValueError("must be 1 to 80 printable characters without spaces")
        return value

    @field_validator("vtex_http_transport")
    @classmethod
    def _transport(cls, value: str) -> str:
        if value == "lean":  # the name of the hand-written transport aiohttp's replaced (0.1)
            return "aiohttp"
        if value not in {"aiohttp", "httpx"}:
            raise ValueError("must be aiohttp (default) or httpx (httpx's own transport)")
        return value

    @field_validator("status_source")
    @classmethod
    def _status_source(cls, value: str) -> str:
        return check_status_source(value)

    @field_validator("hook_url")
    @classmethod
    def _hook_url(cls, value: str | None) -> str | None:
        return check_base_url(value) if value else None

    @model_validator(mode="after")
    def _hook_has_a_url(self) -> Settings:
        if self.status_source == "hook" and not self.hook_url:
            raise ValueError(HOOK_NEEDS_URL)
        return self

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return check_currency(value)

    @field_validator("invoice_timing")
    @classmethod
    def _invoice_timing(cls, value: str) -> str:
        return check_invoice_timing(value)

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value not in {"auto", "json", "console"}:
            raise ValueError("must be one of auto, json, console")
        return value

    @property
    def stuck_rules(self) -> StuckRules:
        """Thresholds from the longest grace period any account runs with: an order of an account
        with a long one is not stuck merely for waiting it out."""
        return StuckRules.parse(self.stuck_after, self.longest_grace, self.unknown_outcome_after)

    @property
    def longest_grace(self) -> timedelta:
        """The longest grace period any account runs with (read from the tables: no credentials)."""
        graces = [table.grace_period or self.grace_period for table in self.accounts.values()]
        if self._single_is_account():
            graces.append(self.grace_period)
        return max(graces)

    def _single_is_account(self) -> bool:
        """Whether the single-account settings are an account (`default`): when they name one, or
        when there are no tables at all (today's set-ups, whose errors say what to set)."""
        return bool(self.vtex_account or self.vtex_base_url or not self.accounts)

    def single_account(self) -> AccountSettings:
        """The single-account variables as an account: `default` when they are one (see
        `all_accounts`), and the values an account table inherits where it is silent."""
        return AccountSettings(
            name=DEFAULT_ACCOUNT,
            vtex_account=self.vtex_account,
            environment=self.vtex_environment,
            vtex_base_url=self.vtex_base_url,
            app_key=self.vtex_app_key,
            app_token=self.vtex_app_token,
            grace_period=self.grace_period,
            max_rpm=self.vtex_max_rpm,
            invoice_timing=self.invoice_timing,
            credentials=SINGLE_ACCOUNT_CREDENTIALS,
            status_source=self.status_source,
            hook_url=self.hook_url,
            currency=self.currency,
        )

    @model_validator(mode="after")
    def _stuck_rules_parse(self) -> Settings:
        try:
            self.stuck_rules  # noqa: B018  (parsing is the check)
        except StuckRulesError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _lease_outlives_a_call(self) -> Settings:
        if self.lease <= self.vtex_timeout * 2:
            raise ValueError(
                "ORCHESTRATOR_LEASE must be longer than twice VTEX_TIMEOUT, or a slow call could outlive "
                "its lease and another worker would step the same order"
            )
        return self

    @model_validator(mode="after")
    def _accounts_resolve(self) -> Settings:
        # Credentials are read (and checked) once, when the settings load.
        try:
            self._resolved = resolve(
                self.accounts, self.single_account(), single_is_account=self._single_is_account()
            )
        except AccountError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def all_accounts(self) -> dict[str, AccountSettings]:
        """Every configured account by name; a set-up without tables has one, `default`."""
        return self._resolved

    @property
    def account_names(self) -> dict[str, str]:
        """Each account's name by the key its pauses and budget are stored under (`AccountSettings.key`)."""
        names = {}
        for name, account in self.all_accounts.items():
            if account.vtex_account or account.vtex_base_url:  # else it has no key yet (unset)
                names[account.key] = name
        return names

    @property
    def account_graces(self) -> dict[str, timedelta]:
        """Each account's grace period by name, for the status report."""
        return {name: a.grace_period for name, a in self.all_accounts.items()}

    def account(self, name: str = DEFAULT_ACCOUNT) -> AccountSettings:
        """The account `name`: where it is, its credentials and the values VTEX sets per account."""
        found = self.all_accounts.get(name)
        if found is None:
            known = ", ".join(self.all_accounts)
            raise ConfigurationError(f"no account {name!r} is configured (configured: {known})")
        return found

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


_CONFIG_FILE: list[Path] = []


class _TomlSource(PydanticBaseSettingsSource):
    """Values from the `--config` TOML file; keys are field names or environment variable names."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if not _CONFIG_FILE:
            return {}
        path = _CONFIG_FILE[0]
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read config file {path}: {exc}") from exc
        by_env = {
            alias.upper(): name for name, info in Settings.model_fields.items() for alias in _aliases(info)
        }
        values: dict[str, Any] = {}
        accounts = raw.pop("accounts", None)
        if accounts is not None:
            if not isinstance(accounts, dict) or not all(isinstance(t, dict) for t in accounts.values()):
                raise ConfigurationError(f"{path}: accounts must be tables, e.g. [accounts.acme-br]")
            values["ORCHESTRATOR_ACCOUNTS"] = accounts
        for key, value in _flatten(raw).items():
            name = key if key in Settings.model_fields else by_env.get(key.upper())
            if name is None:
                raise ConfigurationError(f"{path}: unknown setting {key!r}")
            # Keyed by the environment name, so the environment's value for it takes precedence.
            values[_aliases(Settings.model_fields[name])[0]] = value
        return values


def _aliases(info: FieldInfo) -> list[str]:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [a for a in alias.choices if isinstance(a, str)]
    return [alias] if isinstance(alias, str) else []


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Allow `[vtex] app_key = ...` tables as well as flat keys."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment, `config_file` and explicit overrides (highest first)."""
    _CONFIG_FILE[:] = [config_file] if config_file else []
    try:
        settings = Settings(**overrides)
    except ValueError as exc:
        raise ConfigurationError(_explain(exc)) from None
    register_secrets(settings)
    return settings


def register_secrets(settings: Settings) -> None:
    """Hand every secret of `settings` to the redaction point."""
    for account in settings.all_accounts.values():
        for secret in (account.app_key, account.app_token):
            if secret is not None:
                register_secret(secret.get_secret_value())
    register_secret(database_password(settings.database_url))


def database_password(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def _explain(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc)
    lines = []
    for err in errors():
        parts = [str(p) for p in err.get("loc", ())]
        loc = ".".join(parts)
        message = str(err.get("msg", "")).removeprefix("Value error, ")
        field = Settings.model_fields.get(loc)
        if parts[:1] in (["accounts"], ["ORCHESTRATOR_ACCOUNTS"]) and len(parts) > 1:
            key = f" {'.'.join(parts[2:])}" if len(parts) > 2 else ""
            lines.append(f"[accounts.{parts[1]}]{key}: {message}")
        elif field is not None:
            lines.append(f"{_aliases(field)[0]}: {message}")
        elif loc:  # given through its environment variable name
            lines.append(f"{loc}: {message}")
        else:  # a check across settings: its message names what it is about
            lines.append(message)
    return "invalid configuration: " + "; ".join(lines)


# What an operator sets before anything else, and why; `config --first` shows them with their state.
FIRST = {
    "vtex_account": "your VTEX account name (or VTEX_BASE_URL for another endpoint, e.g. the sandbox)",
    "vtex_app_key": "an app key whose role can create and change orders (OMS)",
    "vtex_app_token": "that app key's token",
    "database_url": "where orders live: the default SQLite file, or PostgreSQL for several daemons",
    "grace_period": "the account's cancellation window (VTEX Admin > Orders > Settings), 30m by default",
}


def first_settings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The must-set settings, each with whether it is set (VTEX_BASE_URL stands in for the account)."""
    by_name = {row["setting"]: row for row in rows}
    # `[accounts.NAME]` tables name the accounts: the single-account variables become optional.
    tables = any(row["setting"].startswith("accounts.") for row in rows)
    chosen = []
    for name, why in FIRST.items():
        row = dict(by_name[name])
        is_set = row["source"] != "default" or (name == "vtex_account" and by_name["vtex_base_url"]["value"])
        # No default can work for these, unless the account tables set them.
        required = name in ("vtex_account", "vtex_app_key", "vtex_app_token") and not tables
        said = why
        if tables and name.startswith("vtex_"):
            said = f"{why}; optional: the accounts.NAME tables of the config file set each account's"
        chosen.append({**row, "why": said, "set": bool(is_set), "required": required})
    return chosen


def describe(settings: Settings, config_file: Path | None) -> list[dict[str, Any]]:
    """Every setting with its environment variable, its value (secrets masked) and its source."""
    from_file = set(_TomlSource(Settings)()) if config_file else set()
    rows = []
    for name, info in Settings.model_fields.items():
        if name == "accounts":
            continue  # one row per account's value, below
        variable = _aliases(info)[0]
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown: Any = "********" if value.get_secret_value() else ""
        elif isinstance(value, timedelta):
            shown = format_duration(value)
        elif name == "database_url":
            shown = mask_url(value)
        else:
            shown = value
        if variable in os.environ:
            source = "environment"
        elif variable in from_file:
            source = f"file {config_file}"
        else:
            source = "default"
        rows.append({"setting": name, "variable": variable, "value": shown, "source": source})
    return rows + _account_rows(settings, config_file)


def _credential_shown(secret: SecretStr | None, source: object) -> str:
    return f"******** (from {source})" if secret is not None else f"NOT SET (expected from {source})"


def _account_rows(settings: Settings, config_file: Path | None) -> list[dict[str, Any]]:
    """What each `[accounts.NAME]` table makes of its account: the values it runs with (the
    deployment's where the table is silent) and where the credentials come from."""
    rows = []
    for name, table in settings.accounts.items():
        account = settings.account(name)
        values = {
            "base_url": account.base_url,
            "app_key": _credential_shown(account.app_key, table.app_key_env or table.app_key_file),
            "app_token": _credential_shown(account.app_token, table.app_token_env or table.app_token_file),
            "grace_period": format_duration(account.grace_period),
            "max_rpm": account.max_rpm,
            "invoice_timing": account.invoice_timing,
            "status_source": account.status_source,
            "currency": account.currency,
        }
        for key, shown in values.items():
            keys = {key, f"{key}_env", f"{key}_file"} | (
                {"account", "environment"} if key == "base_url" else set()
            )
            written = bool(keys & table.model_fields_set)
            rows.append(
                {
                    "setting": f"accounts.{name}.{key}",
                    "variable": f"accounts.{name}.{key}",  # its dotted TOML key
                    "value": shown,
                    "source": f"file {config_file}" if written else "deployment default",
                }
            )
    return rows
