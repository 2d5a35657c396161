"""Checks shared by the single-account settings and the `[accounts.NAME]` tables: the same VTEX
URL and credential rules, wherever they are written."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from orchestrator.errors import UsageError
from states import InvoiceTiming


class ConfigurationError(UsageError):
    """A setting is missing or invalid; the message says which and how to fix it."""


# VTEX app keys and tokens are printable ASCII without spaces; anything else is a copying accident.
_CREDENTIAL = re.compile(r"[\x21-\x7e]+")


def check_credential(value: str) -> str:
    # The message never quotes the value: it is a secret, even when it is a wrong one.
    if not _CREDENTIAL.fullmatch(value):
        raise ValueError(
            "contains a space, a line break or another character no VTEX credential has (a trailing "
            "newline from a secret file or `$(cat ...)`?); remove it"
        )
    return value


def check_base_url(value: str) -> str:
    """A plain http(s) base URL; plain http only on this machine (the sandbox), since the
    credentials travel in headers."""
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018  (parsed only to check it is a number in range)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{value!r} is not an http(s) URL with a host, e.g. https://myaccount.vtexcommercestable.com.br"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must be a plain base URL, without user, password, query or fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            "http:// would send the app key and token in clear text; use https:// (http is allowed "
            "only on this machine, for the sandbox: 127.0.0.1, ::1 or localhost)"
        )
    return value.strip().rstrip("/")


def check_invoice_timing(value: str) -> str:
    if value not in set(InvoiceTiming):
        raise ValueError("invoice_timing must be after-grace (default) or asap")
    return value


# Where an account's orders learn VTEX's status (`orchestrator.engine.feed`):
#   auto  the Orders Feed when the app key may read it and nobody else configured it, else Get order
#   feed  VTEX's Orders Feed v3 (taken over if configured otherwise), Get order as a safety net
#   hook  VTEX pushes to `serve` (its Hook), with the feed read as a backup
#   poll  Get order only
STATUS_SOURCES = ("auto", "feed", "hook", "poll")


HOOK_NEEDS_URL = (
    "status_source = hook needs hook_url (ORCHESTRATOR_HOOK_URL): serve's public https URL, where VTEX "
    "pushes the account's notifications"
)


def check_status_source(value: str) -> str:
    if value not in STATUS_SOURCES:
        raise ValueError("status_source must be auto (default), feed, hook or poll")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_currency(value: str) -> str:
    """An ISO 4217 code (BRL, USD, EUR): three letters, written in capitals."""
    code = value.strip().upper()
    if not (len(code) == 3 and code.isascii() and code.isalpha()):
        raise ValueError(f"{value!r} is not a currency code (three letters, ISO 4217: BRL, USD, EUR)")
    return code
