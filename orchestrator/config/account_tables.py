"""Several VTEX accounts in one deployment: each `[accounts.NAME]` table of the TOML file is one.

An account is everything that is VTEX's per account: where it is, its credentials, its
cancellation grace period, its request budget and when invoices may be sent: an
`AccountSettings`. The rest (database, concurrency, leases, logging) belongs to the deployment's
`Settings`; code that needs both (the VTEX client, the step engine) is handed both, so nothing can
read an account's value from the deployment, or the other way round.

The single-account variables (`VTEX_ACCOUNT`, `VTEX_BASE_URL`, `VTEX_APP_KEY`, ...) are the
account named `default`, so a set-up without tables runs as before and its orders (moved to
`default` by migration 0010) stay where they were.

Credentials are never written in the TOML file: a table names the environment variable
(`app_key_env`) or the file (`app_key_file`, e.g. a mounted Kubernetes secret) that holds each.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from orchestrator.config.checks import (
    HOOK_NEEDS_URL,
    ConfigurationError,
    check_base_url,
    check_credential,
    check_currency,
    check_invoice_timing,
    check_status_source,
)
from orchestrator.durations import parse_duration

DEFAULT_ACCOUNT = "default"
# A name appears in commands (`--account`), order references (`acme-br/ABC-1`) and metric labels.
ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


class AccountTable(BaseModel):
    """One `[accounts.NAME]` table, as written (credentials by reference, never by value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str | None = None
    environment: str = "vtexcommercestable"
    base_url: str | None = None
    app_key_env: str | None = None
    app_key_file: Path | None = None
    app_token_env: str | None = None
    app_token_file: Path | None = None
    grace_period: timedelta | None = None
    max_rpm: int | None = Field(None, ge=1)
    invoice_timing: str | None = None
    status_source: str | None = None
    hook_url: str | None = None
    currency: str | None = None

    @field_validator("grace_period", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta | None:
        return None if value is None else parse_duration(value)

    @model_validator(mode="before")
    @classmethod
    def _no_secret_in_the_file(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for written in ("app_key", "app_token", "vtex_app_key", "vtex_app_token"):
                if written in values:
                    short = written.removeprefix("vtex_")
                    raise ValueError(
                        f"{written} is written in the file; credentials never are: name the environment "
                        f"variable ({short}_env) or the file ({short}_file) that holds it"
                    )
        return values

    @model_validator(mode="after")
    def _complete(self) -> AccountTable:
        if not self.account and not self.base_url:
            raise ValueError("set account (the VTEX account name) or base_url")
        for what in ("app_key", "app_token"):
            by_env, by_file = getattr(self, f"{what}_env"), getattr(self, f"{what}_file")
            if (by_env is None) == (by_file is None):
                raise ValueError(f"set one of {what}_env (an environment variable) or {what}_file (a file)")
        return self


@dataclass(frozen=True)
class CredentialSource:
    """Where an account's app key and token come from, so that a running daemon can read them
    again after they were rotated. Only files can change under a running process: an
    environment variable (and the single-account settings) keep the value the process started
    with."""

    table: str | None  # None: the single-account settings (VTEX_APP_KEY, VTEX_APP_TOKEN)
    key_env: str | None = None
    key_file: Path | None = None
    token_env: str | None = None
    token_file: Path | None = None

    @property
    def rereadable(self) -> bool:
        return self.key_file is not None or self.token_file is not None

    def read(self) -> tuple[SecretStr, SecretStr]:
        """The credentials as the variables and files hold them now (AccountError when not)."""
        assert self.table is not None, "the single-account credentials are read with the settings"
        key = read_credential(self.table, "app_key", self.key_env, self.key_file)
        token = read_credential(self.table, "app_token", self.token_env, self.token_file)
        return key, token

    @property
    def files(self) -> list[Path]:
        return [f for f in (self.key_file, self.token_file) if f is not None]

    @property
    def variables(self) -> list[str]:
        if self.table is None:
            return ["VTEX_APP_KEY", "VTEX_APP_TOKEN"]
        return [v for v in (self.key_env, self.token_env) if v is not None]


SINGLE_ACCOUNT_CREDENTIALS = CredentialSource(None)


@dataclass(frozen=True)
class AccountSettings:
    """One VTEX account as the code runs it: its name in this deployment, where it is, its
    credentials (and where they come from, to read them again), and what VTEX sets per account."""

    name: str
    vtex_account: str | None
    environment: str
    vtex_base_url: str | None
    app_key: SecretStr | None
    app_token: SecretStr | None
    grace_period: timedelta
    max_rpm: int
    invoice_timing: str
    credentials: CredentialSource = SINGLE_ACCOUNT_CREDENTIALS
    status_source: str = "auto"  # `config.checks.STATUS_SOURCES` (`orchestrator.engine.feed`)
    hook_url: str | None = None  # `serve`'s public URL, for VTEX's Hook
    credentials_problem: str | None = None  # why its credentials could not be read here
    currency: str = "BRL"  # ISO 4217: how its amounts in cents read to a person (`money`)

    @property
    def base_url(self) -> str:
        """Where VTEX (or the sandbox) is: its base URL, or the account's public API host."""
        if self.vtex_base_url:
            return self.vtex_base_url.rstrip("/")
        if not self.vtex_account:
            raise ConfigurationError("set VTEX_ACCOUNT (or VTEX_BASE_URL to use the sandbox)")
        return f"https://{self.vtex_account}.{self.environment}.com.br"

    @property
    def key(self) -> str:
        """The name its request budget and pauses are kept under in `vtex_accounts`."""
        return self.vtex_account or self.base_url


class AccountError(ConfigurationError, ValueError):
    """An account table that cannot work; the message names the table and the key."""


class CredentialMissing(AccountError):
    """The variable is not set or the file cannot be read here. Like an unset VTEX_APP_KEY, that
    stops only what calls VTEX (`run`, `check`, a command that must ask VTEX), not `status` on a
    machine that has no secrets; the message says which table and key."""


def read_credential(table: str, what: str, env: str | None, file: Path | None) -> SecretStr:
    """The credential an account table points at. A file's final line break is not part of it
    (every editor and `echo` add one); any other whitespace is refused, as for the variables."""
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise CredentialMissing(
                f"[accounts.{table}] {what}_env: the environment variable {env} is not set"
            )
        where = f"{what}_env ({env})"
    else:
        assert file is not None
        try:
            value = file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise CredentialMissing(f"[accounts.{table}] {what}_file: cannot read {file}: {reason}") from None
        except UnicodeDecodeError:  # its text would quote a byte of the secret: say only what it is
            raise CredentialMissing(f"[accounts.{table}] {what}_file: {file} is not UTF-8 text") from None
        where = f"{what}_file ({file})"
    try:
        check_credential(value)
    except ValueError as exc:
        raise AccountError(f"[accounts.{table}] {where}: {exc}") from None
    return SecretStr(value)


def _credential(
    table: str, what: str, env: str | None, file: Path | None, missing: list[str]
) -> SecretStr | None:
    try:
        return read_credential(table, what, env, file)
    except CredentialMissing as exc:
        missing.append(str(exc))
        return None


def resolve(
    tables: dict[str, AccountTable], single: AccountSettings, *, single_is_account: bool
) -> dict[str, AccountSettings]:
    """Every account: `single` (the single-account variables, `default`) first when it is one,
    then the tables in the order written, each with `single`'s grace period, budget and invoice
    timing where the table is silent (those are the deployment's defaults)."""
    accounts: dict[str, AccountSettings] = {}
    if single_is_account:
        accounts[DEFAULT_ACCOUNT] = single
    for name, table in tables.items():
        if not ACCOUNT_NAME.fullmatch(name):
            raise AccountError(
                f"[accounts.{name}]: an account name is 1 to 40 lowercase letters, digits, '-' or '_'"
            )
        if name in accounts:
            raise AccountError(
                f"[accounts.{name}]: the account {name!r} is already set by VTEX_ACCOUNT / VTEX_BASE_URL; "
                "use one or the other"
            )
        accounts[name] = _from_table(name, table, single)
    _one_table_per_vtex_account(accounts)
    return accounts


def _from_table(name: str, table: AccountTable, single: AccountSettings) -> AccountSettings:
    try:
        base_url = check_base_url(table.base_url) if table.base_url else None
    except ValueError as exc:
        raise AccountError(f"[accounts.{name}] base_url: {exc}") from None
    try:
        invoice_timing = check_invoice_timing(table.invoice_timing or single.invoice_timing)
    except ValueError as exc:
        raise AccountError(f"[accounts.{name}] invoice_timing: {exc}") from None
    try:
        status_source = check_status_source(table.status_source or single.status_source)
    except ValueError as exc:
        raise AccountError(f"[accounts.{name}] status_source: {exc}") from None
    try:
        hook_url = check_base_url(table.hook_url) if table.hook_url else single.hook_url
    except ValueError as exc:
        raise AccountError(f"[accounts.{name}] hook_url: {exc}") from None
    if status_source == "hook" and not hook_url:
        raise AccountError(f"[accounts.{name}] {HOOK_NEEDS_URL}")
    try:
        currency = check_currency(table.currency) if table.currency else single.currency
    except ValueError as exc:
        raise AccountError(f"[accounts.{name}] currency: {exc}") from None
    missing: list[str] = []
    return AccountSettings(
        name=name,
        vtex_account=table.account,
        environment=table.environment,
        vtex_base_url=base_url,
        app_key=_credential(name, "app_key", table.app_key_env, table.app_key_file, missing),
        app_token=_credential(name, "app_token", table.app_token_env, table.app_token_file, missing),
        grace_period=table.grace_period or single.grace_period,
        max_rpm=table.max_rpm or single.max_rpm,
        invoice_timing=invoice_timing,
        status_source=status_source,
        hook_url=hook_url,
        credentials=CredentialSource(
            name, table.app_key_env, table.app_key_file, table.app_token_env, table.app_token_file
        ),
        credentials_problem="; ".join(missing) or None,
        currency=currency,
    )


def _one_table_per_vtex_account(accounts: dict[str, AccountSettings]) -> None:
    """Refuse two accounts that are one VTEX account under one app key. Their orders would share
    VTEX's order ids: the same order imported into both is placed once, the second Place is
    answered "already exists" and both go on as if each had placed it, with two invoices for one
    order, and budgets and pauses kept twice for one VTEX limit."""
    seen: dict[tuple[str, str], str] = {}
    for name, account in accounts.items():
        if not (account.vtex_base_url or account.vtex_account):
            continue  # refused when used ("set VTEX_ACCOUNT ...")
        source = account.credentials
        if account.app_key is not None:
            key = account.app_key.get_secret_value()
        elif source.table is not None:  # not readable here: the same variable or file is the same key
            key = f"{source.key_env or ''}|{source.key_file or ''}"
        else:
            continue
        where = (normalised_base_url(account.base_url), key)
        if where in seen:
            first = seen[where]
            raise AccountError(
                f"{_named(first)} and {_named(name)} are the same VTEX account ({where[0]}) with the same "
                "app key: keep one table per VTEX account (its orders would be placed, invoiced and "
                "budgeted twice over)"
            )
        seen[where] = name


def _named(name: str) -> str:
    return (
        "VTEX_ACCOUNT / VTEX_BASE_URL (the account default)"
        if name == DEFAULT_ACCOUNT
        else f"[accounts.{name}]"
    )


def normalised_base_url(url: str) -> str:
    """One spelling per VTEX endpoint: scheme and host in lower case, no default port, no final
    slash (`HTTPS://Acme.vtexcommercestable.com.br:443/` is `https://acme.vtexcommercestable.com.br`)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port is not None and (scheme, port) not in (("https", 443), ("http", 80)):
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}"
