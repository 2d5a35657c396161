"""The one redaction point: every text that reaches a log line or the terminal passes through here.

Secrets should never get near an error message in the first place (settings refuse credentials
that an HTTP library would echo back, requests carry them only in headers), but libraries quote
what they were given in their exceptions, and a single leaked app token in a log shipped to a
third party is a breach. So, as a second defence, the configured secrets are registered here
when settings load, and `redact` removes them (and any password written in a database URL)
from whatever is about to be shown.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, quote_plus

MASK = "********"
# user:password@ in any URL-like text (postgresql+psycopg://user:secret@host/db)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)(?P<password>[^@/\s]+)@")
_SHORTEST_SECRET = 4  # shorter values would mask ordinary words; no real credential is that short


class _Secrets:
    """The registered secrets, longest first so that a secret containing another is masked whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: tuple[str, ...] = ()

    def add(self, forms: set[str]) -> None:
        with self._lock:
            self.values = tuple(sorted(set(self.values) | forms, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self.values = ()


_SECRETS = _Secrets()


def register_secret(value: str | None) -> None:
    """Mask `value` (and the forms a URL or a repr would give it) in everything shown from now on."""
    if not value or len(value.strip()) < _SHORTEST_SECRET:
        return
    forms = {value, value.strip(), repr(value)[1:-1], quote(value, safe=""), quote_plus(value)}
    _SECRETS.add({f for f in forms if len(f) >= _SHORTEST_SECRET})


def forget_secrets() -> None:
    """For tests that load several configurations in one process."""
    _SECRETS.clear()


def redact(text: str) -> str:
    """`text` without any registered secret and without URL passwords."""
    if not text:
        return text
    for secret in _SECRETS.values:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    return text


def mask_url(url: str) -> str:
    """A database URL as it may be shown: the password replaced, everything else kept."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", url)
